"""Download-and-verify for the standard datasets: checksums, resume, atomic rename.

:func:`fetch` puts one :class:`Resource` into a folder:

1. If the file is already there and its checksum matches, nothing is downloaded. If it is there
   and does not match, :class:`~assignsolve.errors.DownloadError` says so and the file is left
   alone (nothing a user put there is overwritten).
2. Otherwise the bytes go to ``<name>.part``. A ``.part`` left by an interrupted download is
   resumed with an HTTP ``Range: bytes=<size>-`` request; a server that answers 200 instead of 206
   (no range support) restarts it from byte 0.
3. The ``.part`` is checked against the SHA-256 and/or MD5 of the resource; on a mismatch it is
   deleted and the next mirror is tried. Only a verified file is renamed into place, with
   ``os.replace`` (atomic on one file system), so a reader never sees half a file.
4. When every mirror fails (offline, HTTP error, wrong checksum) the error is one line that names
   each URL with its reason and the folder where the file can be put by hand.

The standard library's ``urllib`` does the HTTP; ``opener`` is injectable for tests.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import attrs

from ..core.errors import DataError, DownloadError

__all__ = ["Resource", "extract_tar", "fetch", "file_digest", "verify"]

_CHUNK = 1 << 20


@attrs.frozen
class Resource:
    """One downloadable file: its name in the folder, its mirrors (tried in order) and checksums.

    At least one of ``sha256`` / ``md5`` (lower-case hex) must be given.
    """

    filename: str
    urls: tuple[str, ...] = attrs.field(converter=tuple)
    md5: str | None = None
    sha256: str | None = None

    def __attrs_post_init__(self) -> None:
        if not self.urls:
            raise ValueError(f"Resource {self.filename!r}: expected at least one URL")
        if self.md5 is None and self.sha256 is None:
            raise ValueError(f"Resource {self.filename!r}: expected a sha256 or md5 checksum")

    @property
    def checksums(self) -> dict[str, str]:
        """``{"sha256": hex, "md5": hex}`` for the checksums given (SHA-256 first)."""
        return {k: v.lower() for k, v in (("sha256", self.sha256), ("md5", self.md5)) if v is not None}


def file_digest(path: str | Path, algorithm: str) -> str:
    """Hex digest of a file, read in 1 MiB chunks (constant memory)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(path: str | Path, resource: Resource) -> str | None:
    """None when every checksum of ``resource`` matches the file, else a one-line mismatch."""
    for algorithm, expected in resource.checksums.items():
        found = file_digest(path, algorithm)
        if found != expected:
            return f"{algorithm} {found}, expected {expected}"
    return None


def _one_line(exc: BaseException) -> str:
    text = getattr(exc, "reason", None) or exc
    return (str(text).strip().splitlines() or [type(exc).__name__])[0][:200]


def _download_part(url: str, part: Path, opener: Callable, timeout: float, progress) -> None:
    """Append ``url``'s remaining bytes to ``part`` (resuming from its size when it exists)."""
    start = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "assignsolve"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    try:
        response = opener(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:  # the .part already holds every byte; verification decides
            return
        raise
    with response:
        status = getattr(response, "status", None) or response.getcode()
        mode = "ab" if (start and status == 206) else "wb"  # 200: no range support, start again
        done = start if mode == "ab" else 0
        total = response.headers.get("Content-Length")
        total = done + int(total) if total and total.isdigit() else None
        with open(part, mode) as fh:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                fh.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
            fh.flush()
            os.fsync(fh.fileno())


def _stderr_progress(name: str):
    state = {"last": -1}

    def report(done: int, total: int | None) -> None:
        pct = int(100 * done / total) if total else -1
        if pct != state["last"] and (pct % 10 == 0 or pct < 0):
            state["last"] = pct
            shown = f"{pct}%" if total else f"{done >> 20} MiB"
            print(f"assignsolve: downloading {name}: {shown}", file=sys.stderr)

    return report


def fetch(resource: Resource, folder: str | Path, *, opener: Callable | None = None, timeout: float = 60.0,
          progress: Callable[[int, int | None], None] | None | bool = True) -> Path:
    """Return ``folder / resource.filename``, downloading and verifying it first if needed.

    ``opener(request, timeout=...)`` defaults to ``urllib.request.urlopen``; ``progress`` is a
    callback ``(bytes_done, bytes_total_or_None)``, True for a line on stderr every 10 %, or None.
    Raises :class:`DownloadError` (one line: each URL and why it failed, and the folder to fill
    by hand) when no mirror gives a file with the right checksum.
    """
    folder = Path(folder).expanduser()
    final = folder / resource.filename
    if final.exists():
        bad = verify(final, resource)
        if bad is None:
            return final
        raise DownloadError(f"{final}: exists but its {bad}; delete it to download again, or replace it "
                            f"with the official file from {resource.urls[0]}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{folder}: cannot create the data folder ({exc.strerror or exc})") from None
    part = folder / (resource.filename + ".part")
    opener = opener or urllib.request.urlopen
    report = _stderr_progress(resource.filename) if progress is True else (progress or None)
    failures = []
    for url in resource.urls:
        try:
            _download_part(url, part, opener, timeout, report)
        except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError/HTTPError are OSErrors
            failures.append(f"{url} ({_one_line(exc)})")
            continue
        bad = verify(part, resource)
        if bad is None:
            os.replace(part, final)
            return final
        part.unlink()
        failures.append(f"{url} (checksum mismatch: {bad}; partial file removed)")
    raise DownloadError(f"could not download {resource.filename}: {'; '.join(failures)}. Offline? Download it by "
                        f"hand and put it into {folder}")


def extract_tar(archive: Path, folder: Path, member_dir: str) -> Path:
    """Extract ``member_dir/`` of a ``.tar.gz`` into ``folder`` atomically; return its path.

    The archive is unpacked into a temporary sibling folder with tarfile's ``"data"`` filter (no
    absolute paths, no ``..``, no links out of the folder, no device files), then the finished
    ``member_dir`` is renamed into place, so an interrupted extraction leaves nothing half-done.
    """
    target = folder / member_dir
    if target.exists():
        return target
    tmp = folder / f".{member_dir}.extracting"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(tmp, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"{archive}: could not extract it ({_one_line(exc)}); delete it to download again") from None
    inner = tmp / member_dir
    if not inner.is_dir():
        found = sorted(p.name for p in tmp.iterdir())
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"{archive}: expected a folder {member_dir}/ inside, found {found}")
    os.replace(inner, target)
    shutil.rmtree(tmp, ignore_errors=True)
    return target
