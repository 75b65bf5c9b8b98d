"""MXNet's NDArray file format (``.params`` files) read and written with numpy alone.

``mx.nd.save``, ``mx.nd.load`` and ``Block.save_parameters`` use one binary layout, little-endian throughout::

    uint64 0x112, uint64 0                     list magic, reserved
    uint64 n, then n arrays                    each as below
    uint64 m (0 or n), then m names            each a uint64 byte count and UTF-8 bytes

    array (V2, magic 0xF993FAC9; V3, 0xF993FACA, written under np-shape semantics):
    uint32 magic, int32 storage type (0 dense, 1 row_sparse, 2 csr)
    [sparse only: storage shape]
    shape: int32 ndim, ndim x int64            (V2: ndim 0 marks an array with no data; V3: a 0-d array)
    int32 device type, int32 device id         where it was saved from (1 cpu, 2 gpu, 3 cpu_pinned, 5 cpu_shared)
    int32 type flag                            0 float32, 1 float64, 2 float16, 3 uint8, 4 int32, 5 int8,
                                               6 int64, 7 bool (12 bfloat16 has no numpy dtype)
    [sparse only: per aux array, int32 type flag and shape]
    the elements, C order                      [sparse only: then each aux array's elements]

Files of MXNet before 1.0 have no array magic: the array's first field is a uint32 ndim followed by ndim
uint32 sizes (the "pre-V1" layout), or the magic 0xF993FAC8 followed by the int32/int64 shape (V1); neither
has a storage type. MXNet 1.9 still loads both (``NDArray::LegacyLoad``), and so does :func:`load`.

This module exists because the GPU machines the torch twin (``convert/``) runs on have torch and numpy but no
MXNet: it lets them read GluonCV's parameter files and write files that MXNet and gluoncv load, byte for byte
what ``mx.nd.save`` writes for dense CPU arrays. It never imports mxnet.
"""
from __future__ import annotations

import logging
import os
import struct
from collections.abc import Mapping, Sequence

import numpy as np

from .fileio import atomic_path

__all__ = ["load", "save", "LIST_MAGIC", "V1_MAGIC", "V2_MAGIC", "V3_MAGIC"]

log = logging.getLogger(__name__)

LIST_MAGIC = 0x112
V1_MAGIC = 0xF993FAC8
V2_MAGIC = 0xF993FAC9
V3_MAGIC = 0xF993FACA

_EXPECTED = "an MXNet .params file (an NDArray list written by mx.nd.save or Block.save_parameters)"

# mshadow type flags <-> numpy dtypes (those MXNet 1.9's Python API maps to numpy).
_DTYPE_OF_FLAG = {0: np.dtype("<f4"), 1: np.dtype("<f8"), 2: np.dtype("<f2"), 3: np.dtype("u1"),
                  4: np.dtype("<i4"), 5: np.dtype("i1"), 6: np.dtype("<i8"), 7: np.dtype("?")}
_FLAG_OF_KIND = {(d.kind, d.itemsize): flag for flag, d in _DTYPE_OF_FLAG.items()}
_BFLOAT16 = 12
_STORAGE_NAMES = {0: "default (dense)", 1: "row_sparse", 2: "csr"}
_AUX_COUNT = {0: 0, 1: 1, 2: 2}      # aux arrays per storage type: row indices; indptr and indices
_DEVICE_TYPES = {1: "cpu", 2: "gpu", 3: "cpu_pinned", 5: "cpu_shared"}
_MAX_LEGACY_NDIM = 32                 # a first word above this is no pre-V1 ndim but a foreign file
_CPU_CONTEXT = struct.pack("<ii", 1, 0)

_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_U64 = struct.Struct("<Q")


def _describe_start(data: bytes) -> str:
    """What a file that is no NDArray list looks like, from its first bytes."""
    head = data[:8]
    if head.startswith(b"PK\x03\x04"):
        return "it is a zip archive (a NumPy .npz or a PyTorch checkpoint?)"
    if head.startswith(b"\x80") and len(head) > 1 and head[1] <= 5:
        return "it is a Python pickle (a torch.save or pickle file?)"
    if head.startswith(b"\x93NUMPY"):
        return "it is a NumPy .npy file"
    if head.startswith(b"\x89HDF"):
        return "it is an HDF5 file"
    sample = data[:512]
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\r\n\t" for c in text):
        kind = "JSON (an MXNet -symbol.json?)" if text.lstrip().startswith(("{", "[")) else "text"
        return f"it is {kind}, starting {text[:40]!r}"
    return f"it starts with bytes {head.hex()}"


class _Reader:
    """Cursor over a file's bytes whose failures are ValueErrors naming the file."""

    def __init__(self, path: str, data: bytes):
        self.path = path
        self.data = data
        self.pos = 0

    def fail(self, what: str) -> ValueError:
        return ValueError(f"{self.path}: {what}; expected {_EXPECTED}")

    def take(self, size: int, what: str) -> int:
        """Start offset of the next ``size`` bytes, which hold ``what``; the cursor moves past them."""
        start = self.pos
        if size > len(self.data) - start:
            raise self.fail(f"the file is truncated: it ends at byte {len(self.data)}, {what} needs "
                            f"{size} bytes from byte {start}")
        self.pos = start + size
        return start

    def unpack(self, fmt: struct.Struct, what: str) -> int:
        return fmt.unpack_from(self.data, self.take(fmt.size, what))[0]

    def shape(self, what: str, wide: bool = True) -> tuple[int, ...]:
        """An int32 ndim and ndim int64 sizes (``wide``), or int32 ndim and uint32 sizes."""
        ndim = self.unpack(_I32, f"the ndim of {what}")
        if ndim < 0:
            raise self.fail(f"{what} has an unknown shape (ndim {ndim}), which MXNet cannot load either")
        return self.dims(ndim, what, wide)

    def dims(self, ndim: int, what: str, wide: bool = True) -> tuple[int, ...]:
        item = 8 if wide else 4
        start = self.take(item * ndim, f"the {ndim} sizes of {what}")
        dims = tuple(int(d) for d in np.frombuffer(self.data, "<i8" if wide else "<u4", ndim, start))
        if any(d < 0 for d in dims):
            raise self.fail(f"{what} has a negative size in its shape {dims}")
        return dims


def _dtype(reader: _Reader, flag: int, what: str) -> np.dtype:
    if flag == _BFLOAT16:
        raise reader.fail(f"{what} is bfloat16, which numpy has no dtype for (only "
                          f"{', '.join(str(d) for d in _DTYPE_OF_FLAG.values())} are supported)")
    if flag not in _DTYPE_OF_FLAG:
        raise reader.fail(f"{what} has unknown type flag {flag}")
    return _DTYPE_OF_FLAG[flag]


def _context(reader: _Reader, what: str) -> None:
    dev_type = reader.unpack(_I32, f"the device type of {what}")
    dev_id = reader.unpack(_I32, f"the device id of {what}")
    if dev_type not in _DEVICE_TYPES:
        raise reader.fail(f"{what} names unknown device type {dev_type} (id {dev_id})")


def _elements(reader: _Reader, shape: tuple[int, ...], dtype: np.dtype, what: str) -> np.ndarray:
    count = 1
    for d in shape:
        count *= d
    start = reader.take(count * dtype.itemsize, f"the {count} {dtype.name} elements of {what}")
    if count == 0:
        return np.empty(shape, dtype)
    # A copy: aligned, writable, and not keeping the whole file's bytes alive.
    return np.frombuffer(reader.data, dtype, count, start).reshape(shape).copy()


def _read_array(reader: _Reader, index: int, total: int):
    """The next array: an ndarray, or for a sparse array the name of its storage type (its bytes skipped)."""
    what = f"array {index} of {total}"
    magic = reader.unpack(_U32, f"the magic number of {what}")
    if magic in (V2_MAGIC, V3_MAGIC):
        stype = reader.unpack(_I32, f"the storage type of {what}")
        if stype not in _AUX_COUNT:
            raise reader.fail(f"{what} has unknown storage type {stype}")
        if stype != 0 and magic == V3_MAGIC:
            raise reader.fail(f"{what} is a sparse array in the np-shape layout, which MXNet never writes")
        naux = _AUX_COUNT[stype]
        storage_shape = reader.shape(f"the storage shape of {what}") if naux else None
        shape = reader.shape(f"the shape of {what}")
        if magic == V2_MAGIC and not shape:
            raise reader.fail(f"{what} is an array with no data (shape ndim 0), which mx.nd.load cannot "
                              "return either")
        _context(reader, what)
        dtype = _dtype(reader, reader.unpack(_I32, f"the type flag of {what}"), what)
        if not naux:
            return _elements(reader, shape, dtype, what)
        aux = []
        for i in range(naux):
            aux_dtype = _dtype(reader, reader.unpack(_I32, f"the type flag of aux array {i} of {what}"), what)
            aux.append((reader.shape(f"the shape of aux array {i} of {what}"), aux_dtype))
        _elements(reader, storage_shape, dtype, what)
        for i, (aux_shape, aux_dtype) in enumerate(aux):
            _elements(reader, aux_shape, aux_dtype, f"aux array {i} of {what}")
        return _STORAGE_NAMES[stype]
    if magic == V1_MAGIC:
        shape = reader.shape(f"the shape of {what}")
    elif magic <= _MAX_LEGACY_NDIM:
        # pre-V1: the word is the ndim itself, the sizes are uint32
        shape = reader.dims(magic, f"the shape of {what}", wide=False)
    else:
        raise reader.fail(f"{what} starts with 0x{magic:08X}, no NDArray magic (V2 0x{V2_MAGIC:08X}, "
                          f"V3 0x{V3_MAGIC:08X}, V1 0x{V1_MAGIC:08X}) nor the ndim of a pre-V1 array")
    _context(reader, what)
    dtype = _dtype(reader, reader.unpack(_I32, f"the type flag of {what}"), what)
    return _elements(reader, shape, dtype, what)


def load(path):
    """Read an MXNet NDArray file (``.params``) into numpy arrays, as ``mx.nd.load`` does.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by ``mx.nd.save``, ``Block.save_parameters``, ``ParameterDict.save`` or :func:`save`.

    Returns
    -------
    dict[str, numpy.ndarray] or list[numpy.ndarray]
        ``{name: array}`` in the file's order when the file has names (a name that occurs twice keeps its
        first place and its last array, as in ``mx.nd.load``), else the list of arrays. Arrays are
        writable copies, little-endian, of dtype float32, float64, float16, uint8, int8, int32, int64 or
        bool; V3 (np-shape) files may hold 0-d arrays.

    Raises
    ------
    FileNotFoundError, OSError
        The file cannot be opened.
    ValueError
        The file is no complete NDArray file (empty, truncated, a foreign format, a bad magic number or
        field), or it holds a sparse (row_sparse, csr) or bfloat16 array: the message names the file,
        the array (by name where the file has names) and what was expected.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    reader = _Reader(path, data)
    if not data:
        raise reader.fail("the file is empty")
    magic = _U64.pack(LIST_MAGIC)
    if not data.startswith(magic) and not magic.startswith(data):   # (a short start of it: truncated)
        raise reader.fail(f"no NDArray list magic 0x{LIST_MAGIC:X} at its start: {_describe_start(data)}")
    reader.take(16, "the list header")
    count = reader.unpack(_U64, "the number of arrays")
    if count * 12 > len(data) - reader.pos:      # every array takes at least 12 bytes
        raise reader.fail(f"the header counts {count} arrays, more than the file's {len(data)} bytes can hold")
    arrays = [_read_array(reader, i, count) for i in range(count)]
    nnames = reader.unpack(_U64, "the number of names")
    if nnames not in (0, count):
        raise reader.fail(f"it holds {count} arrays but {nnames} names")
    names = []
    for i in range(nnames):
        size = reader.unpack(_U64, f"the length of name {i} of {nnames}")
        start = reader.take(size, f"name {i} of {nnames}")
        try:
            names.append(data[start:start + size].decode("utf-8"))
        except UnicodeDecodeError as err:
            raise reader.fail(f"name {i} of {nnames} is not UTF-8 ({err})") from None
    for i, array in enumerate(arrays):
        if isinstance(array, str):
            which = f"array {names[i]!r}" if names else f"array {i} of {count}"
            raise ValueError(f"{path}: {which} has {array} storage; only dense arrays are supported (convert "
                             "it with .tostype('default') in MXNet before saving)")
    if reader.pos != len(data):
        log.warning("%s: %d bytes after the NDArray list ignored (as mx.nd.load does)", path, len(data) - reader.pos)
    log.debug("read %d arrays%s from %s", count, " with names" if names else "", path)
    if not names:
        return arrays
    out = {}
    for name, array in zip(names, arrays):
        if name in out:
            log.warning("%s: name %r occurs more than once; its last array is kept (as mx.nd.load does)", path, name)
        out[name] = array
    return out


def _as_array(value, what: str, np_shape: bool) -> np.ndarray:
    array = np.asarray(value)
    flag = _FLAG_OF_KIND.get((array.dtype.kind, array.dtype.itemsize))
    if flag is None or array.dtype.fields is not None:
        raise ValueError(f"{what} has dtype {array.dtype}, which an MXNet .params file cannot hold (supported: "
                         f"{', '.join(str(d) for d in _DTYPE_OF_FLAG.values())})")
    if array.ndim == 0 and not np_shape:
        raise ValueError(f"{what} is 0-d: outside np-shape semantics MXNet reads shape () as 'no data' and "
                         "fails on the rest of the file; reshape it to (1,) or pass np_shape=True")
    # astype, not ascontiguousarray, which turns a 0-d array into shape (1,)
    return array.astype(_DTYPE_OF_FLAG[flag], order="C", copy=False)


def save(path, arrays, *, np_shape: bool = False) -> None:
    """Write numpy arrays as an MXNet NDArray file, byte for byte what ``mx.nd.save`` writes.

    The file replaces ``path`` atomically (:func:`gluon_ssd.fileio.atomic_path`): a crash leaves the old
    file or the new one, never a part.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (a ``.params`` file that ``mx.nd.load`` and ``Block.load_parameters`` read).
    arrays : dict[str, array_like] or sequence of array_like
        Named arrays (in the dict's order), or a list of arrays for a file without names. Each is converted
        with ``numpy.asarray``; dtypes float32, float64, float16, uint8, int8, int32, int64 and bool are
        supported, written little-endian in C order as a dense CPU array.
    np_shape : bool
        Write the np-shape layout (array magic V3), as ``mx.nd.save`` does under ``mx.util.np_shape(True)``
        or ``mx.npx.set_np()``; such files may hold 0-d arrays but load only under np-shape semantics.
        Default: the classic layout (V2) that ``mx.nd.load`` and gluoncv read.

    Raises
    ------
    TypeError
        ``arrays`` is neither a mapping nor a sequence, or a name is not a str.
    ValueError
        An array has a dtype MXNet cannot store, or is 0-d without ``np_shape``. Nothing is written then.
    """
    path = os.fspath(path)
    if isinstance(arrays, Mapping):
        names = list(arrays.keys())
        for name in names:
            if not isinstance(name, str):
                raise TypeError(f"array names must be str, got {type(name).__name__} {name!r} (writing {path})")
        values = [_as_array(v, f"array {k!r}", np_shape) for k, v in arrays.items()]
    elif isinstance(arrays, Sequence) and not isinstance(arrays, (str, bytes)):
        names = []
        values = [_as_array(v, f"array {i}", np_shape) for i, v in enumerate(arrays)]
    else:
        raise TypeError(f"save writes a dict of named arrays or a list of arrays, got {type(arrays).__name__}")
    magic = V3_MAGIC if np_shape else V2_MAGIC
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(struct.pack("<QQQ", LIST_MAGIC, 0, len(values)))
        for array in values:
            f.write(struct.pack(f"<Iii{array.ndim}q", magic, 0, array.ndim, *array.shape))
            f.write(_CPU_CONTEXT)
            f.write(_I32.pack(_FLAG_OF_KIND[(array.dtype.kind, array.dtype.itemsize)]))
            if array.size:
                f.write(memoryview(array.reshape(-1).view(np.uint8)))
        f.write(_U64.pack(len(names)))
        for name in names:
            encoded = name.encode("utf-8")
            f.write(_U64.pack(len(encoded)))
            f.write(encoded)
    log.debug("wrote %d arrays%s to %s", len(values), " with names" if names else "", path)
