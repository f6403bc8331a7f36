"""A restricted unpickler for data pickles (the CIFAR-10/100 "python version" batches).

A pickle can name any importable callable and have the unpickler call it (``os.system`` is the
classic example), so a plain ``pickle.load`` of a downloaded or user-supplied file runs whatever
the file says. :func:`safe_load` only resolves the globals a numpy-array data pickle needs:

- the builtins ``dict``, ``list``, ``str``, ``bytes``, ``int`` (Python 2 names them
  ``__builtin__``), and ``_codecs.encode(text, "latin1")``, which protocol-2 pickles written by
  Python 3 use to spell ``bytes``;
- numpy array reconstruction: ``numpy.ndarray``, ``numpy.dtype`` and
  ``numpy[._]core.multiarray._reconstruct`` / ``numpy[._]core.numeric._frombuffer``, each
  wrapped so that only a plain ``ndarray`` of a non-object dtype can come out.

Any other global (``posix.system``, ``builtins.eval``, ``numpy.load``...) raises
:class:`~assignsolve.errors.DataError` naming the file and the refused global, before anything is
called. After loading, the whole object is walked once more and anything other than dict, list,
tuple, str, bytes, int, float, bool, None or a numeric ``ndarray`` is refused. This follows the
"restricting globals" recipe of the Python ``pickle`` documentation.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from ..core.errors import DataError

__all__ = ["safe_load", "safe_loads"]


class _Refused(pickle.UnpicklingError):
    """A global or object that the restricted unpickler refuses (as opposed to a corrupt file)."""


def _numpy_private(module: str, name: str):
    for prefix in ("numpy._core", "numpy.core"):
        try:
            mod = __import__(f"{prefix}.{module}", fromlist=[name])
            return getattr(mod, name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"numpy has no {module}.{name}")  # pragma: no cover - every numpy has one


def _check_dtype(dtype: np.dtype, what: str) -> np.dtype:
    if dtype.hasobject:
        raise _Refused(f"refused {what} with the object dtype {dtype} (it would unpickle arbitrary objects)")
    return dtype


def _safe_dtype(obj, align=False, copy=False):
    return _check_dtype(np.dtype(obj, align, copy), "numpy.dtype")


def _safe_reconstruct(subtype, shape, dtype):
    if subtype is not np.ndarray:
        raise _Refused(f"refused numpy _reconstruct of {subtype!r} (only numpy.ndarray)")
    return _numpy_private("multiarray", "_reconstruct")(subtype, shape, dtype)


def _safe_frombuffer(buf, dtype, shape, order):
    _check_dtype(np.dtype(dtype), "numpy _frombuffer")
    return _numpy_private("numeric", "_frombuffer")(buf, dtype, shape, order)


def _latin1_encode(text, encoding="latin1"):
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused(f"refused _codecs.encode({type(text).__name__}, {encoding!r}) (only latin1 text)")
    return text.encode("latin1")


def _allowed() -> dict[tuple[str, str], object]:
    table: dict[tuple[str, str], object] = {}
    for mod in ("builtins", "__builtin__"):
        for typ in (dict, list, str, bytes, int):
            table[(mod, typ.__name__)] = typ
    table[("_codecs", "encode")] = _latin1_encode
    table[("numpy", "ndarray")] = np.ndarray
    table[("numpy", "dtype")] = _safe_dtype
    for core in ("numpy.core", "numpy._core"):
        table[(f"{core}.multiarray", "_reconstruct")] = _safe_reconstruct
        table[(f"{core}.numeric", "_frombuffer")] = _safe_frombuffer
    return table


class _RestrictedUnpickler(pickle.Unpickler):
    """``find_class`` resolves only the globals listed by :func:`_allowed`."""

    def find_class(self, module: str, name: str):
        table = _allowed()
        if (module, name) not in table:
            raise _Refused(f"refused to load the global {module}.{name} (a data pickle may hold only dicts, "
                                         f"lists, strings, bytes, numbers and numpy arrays)")
        return table[(module, name)]

    def persistent_load(self, pid):
        raise _Refused("refused a persistent id (a data pickle has none)")


_PLAIN = (str, bytes, int, float, bool, type(None))


def _check_tree(obj, depth: int = 0) -> None:
    if depth > 64:
        raise _Refused("refused: nested more than 64 levels deep")
    if type(obj) in _PLAIN:
        return
    if type(obj) is np.ndarray:
        if obj.dtype.kind not in "biuf":
            raise _Refused(f"refused a numpy array of dtype {obj.dtype} (expected numbers)")
        return
    if type(obj) is dict:
        for key, value in obj.items():
            _check_tree(key, depth + 1)
            _check_tree(value, depth + 1)
        return
    if type(obj) in (list, tuple):
        for value in obj:
            _check_tree(value, depth + 1)
        return
    raise _Refused(f"refused an object of type {type(obj).__module__}.{type(obj).__qualname__}")


def safe_loads(data: bytes, where: str = "<bytes>", encoding: str = "latin1"):
    """Unpickle ``data`` with the restricted unpickler; any refusal or corruption raises
    :class:`DataError` ``"{where}: ..."`` on one line. ``encoding`` decodes Python 2 ``str``
    (``"latin1"``, as numpy recommends for Python 2 array pickles, or ``"bytes"``)."""
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()
        _check_tree(obj)
    except _Refused as exc:
        raise DataError(f"{where}: {exc}") from None
    except Exception as exc:  # corrupt or truncated: EOFError, ValueError, TypeError, ...
        first = (str(exc).strip().splitlines() or [""])[0]
        raise DataError(f"{where}: expected a data pickle, could not read it ({type(exc).__name__}: {first})") from None
    return obj


def safe_load(path: str | Path, encoding: str = "latin1"):
    """:func:`safe_loads` on the bytes of the file at ``path`` (errors name the path)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: could not read it ({exc.strerror or exc})") from None
    if not data:
        raise DataError(f"{path}: expected a data pickle, found an empty file")
    return safe_loads(data, str(path), encoding)
