"""Download-and-verify against a real HTTP server on localhost (with Range support), and the
offline error. Checksums are computed here with hashlib, independently of the module."""

from __future__ import annotations

import hashlib
import http.server
import tarfile
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

from assignsolve import cli
from assignsolve.data import load_splits
from assignsolve.datasets import download
from assignsolve.datasets.download import Resource, fetch
from assignsolve.core.errors import DataError, DownloadError

PAYLOAD = bytes(np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8))


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD at /file, honouring ``Range: bytes=N-`` with 206 unless ``no_range``."""

    requests: list = []
    no_range = False
    body = PAYLOAD

    def do_GET(self):  # noqa: N802 - the http.server API
        rng = self.headers.get("Range")
        type(self).requests.append((self.path, rng))
        if self.path != "/file":
            self.send_error(404)
            return
        body, status = self.body, 200
        if rng and not self.no_range:
            start = int(rng.removeprefix("bytes=").rstrip("-"))
            if start >= len(body):
                self.send_error(416)
                return
            body, status = body[start:], 206
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Handler.requests, _Handler.no_range, _Handler.body = [], False, PAYLOAD
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler
    httpd.shutdown()
    httpd.server_close()


def resource(base, **kw):
    sums = {"sha256": hashlib.sha256(PAYLOAD).hexdigest(), "md5": hashlib.md5(PAYLOAD).hexdigest()}
    sums.update(kw)
    return Resource("data.bin", (f"{base}/file",), md5=sums["md5"], sha256=sums["sha256"])


def test_download_verifies_and_renames(tmp_path, server):
    base, handler = server
    path = fetch(resource(base), tmp_path / "d", progress=None)
    assert path == tmp_path / "d" / "data.bin" and path.read_bytes() == PAYLOAD
    assert not (tmp_path / "d" / "data.bin.part").exists()
    assert handler.requests == [("/file", None)]
    fetch(resource(base), tmp_path / "d", progress=None)  # already there and verified: no request
    assert len(handler.requests) == 1


def test_resume_with_range(tmp_path, server):
    base, handler = server
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:123_456])  # an interrupted download
    seen = []
    fetch(resource(base), tmp_path, progress=lambda done, total: seen.append((done, total)))
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD
    assert handler.requests == [("/file", "bytes=123456-")]
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))  # progress counts the resumed bytes too


def test_server_without_range_restarts(tmp_path, server):
    base, handler = server
    handler.no_range = True
    (tmp_path / "data.bin.part").write_bytes(b"junk" * 1000)
    fetch(resource(base), tmp_path, progress=None)
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD  # 200, not 206: written from byte 0


def test_complete_part_and_416(tmp_path, server):
    base, handler = server
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD)
    fetch(resource(base), tmp_path, progress=None)
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD and handler.requests == [("/file", f"bytes={len(PAYLOAD)}-")]


@pytest.mark.parametrize("algorithm", ["md5", "sha256"])
def test_checksum_mismatch_removes_part(tmp_path, server, algorithm):
    base, _ = server
    res = resource(base, **{algorithm: "0" * (32 if algorithm == "md5" else 64)})
    with pytest.raises(DownloadError, match=rf"could not download data.bin: {base}/file \(checksum mismatch: {algorithm} "
                                            rf"[0-9a-f]+, expected 0+; partial file removed\)"):
        fetch(res, tmp_path, progress=None)
    assert list(tmp_path.iterdir()) == []  # nothing left that could pass for the file


def test_existing_file_with_wrong_checksum_is_not_overwritten(tmp_path, server):
    base, handler = server
    (tmp_path / "data.bin").write_bytes(b"my own file")
    with pytest.raises(DownloadError, match=r"data.bin: exists but its sha256 [0-9a-f]+, expected [0-9a-f]+; delete it"):
        fetch(resource(base), tmp_path, progress=None)
    assert (tmp_path / "data.bin").read_bytes() == b"my own file" and handler.requests == []


def test_second_mirror_after_404(tmp_path, server):
    base, handler = server
    res = Resource("data.bin", (f"{base}/missing", f"{base}/file"), md5=hashlib.md5(PAYLOAD).hexdigest())
    fetch(res, tmp_path, progress=None)
    assert [p for p, _ in handler.requests] == ["/missing", "/file"] and (tmp_path / "data.bin").read_bytes() == PAYLOAD


def test_offline_error_names_url_and_folder(tmp_path, monkeypatch):
    def offline(request, timeout=None):
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DownloadError) as info:
        load_splits("mnist", data_dir=tmp_path / "data")
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("could not download train-images-idx3-ubyte.gz: "
                          "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz (")
    assert "http://yann.lecun.com/exdb/mnist/train-images-idx3-ubyte.gz (" in msg
    assert msg.endswith(f"Offline? Download it by hand and put it into {tmp_path / 'data' / 'mnist'}")


def test_offline_through_the_cli_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: (_ for _ in ()).throw(urllib.error.URLError("offline")))
    monkeypatch.setenv("ASSIGNSOLVE_DATA_DIR", str(tmp_path))
    assert cli.main(["run", "--data", "cifar10", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (offline)" in err and str(tmp_path) in err


def test_named_dataset_downloaded_and_extracted(tmp_path, server):
    """The whole path: fetch a .tar.gz from the server, verify its MD5, extract safely, load."""
    base, handler = server
    from test_datasets_formats import write_cifar10

    written = write_cifar10(tmp_path / "src" / "cifar-10-batches-py", batches=2)
    with tarfile.open(tmp_path / "c.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    handler.body = (tmp_path / "c.tar.gz").read_bytes()
    fake = Resource("cifar-10-python.tar.gz", (f"{base}/file",), md5=hashlib.md5(handler.body).hexdigest())
    from assignsolve.datasets import cifar

    original = cifar.CIFAR10
    try:
        cifar.CIFAR10 = fake
        splits = load_splits("cifar10", data_dir=tmp_path / "data")
    finally:
        cifar.CIFAR10 = original
    assert len(splits.train) == 8 and len(splits.test) == 4 and handler.requests == [("/file", None)]
    np.testing.assert_array_equal(splits.test.labels.numpy(), written["test_batch"][1])
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]


def test_tar_with_path_traversal_is_refused(tmp_path):
    import io

    with tarfile.open(tmp_path / "evil.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(DataError, match=r"evil.tar.gz: could not extract it"):
        download.extract_tar(tmp_path / "evil.tar.gz", tmp_path / "out", "x")
    assert not (tmp_path / "escaped.txt").exists()
