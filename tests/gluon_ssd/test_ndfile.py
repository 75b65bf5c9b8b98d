"""gluon_ssd.ndfile, MXNet's NDArray file format in numpy alone, against MXNet itself: what mx.nd.save writes
it reads back equal (every dtype, 0-size arrays, the np-shape layout, the legacy layouts of MXNet 0.x, real
network files of gluon_ssd and gluoncv); what it writes is byte for byte mx.nd.save's output and loads in
MXNet and gluoncv; a file that is no complete NDArray file is a ValueError naming the file."""
import os
import struct
import subprocess
import sys
import zipfile

import mxnet as mx
import numpy as np
import pytest

import gluon_ssd
from gluon_ssd import fileio, ndfile
from gluon_ssd.params import save_ssd_parameters
from tests.helpers import ROOT, WITHOUT_MXNET, build_reference

DTYPES = ["float32", "float64", "float16", "uint8", "int8", "int32", "int64", "bool"]
SHAPES = [(1,), (7,), (3, 4), (2, 3, 4, 5), (2, 1, 3, 1, 2, 1, 2), (0,), (2, 0, 3)]
NETWORK = "ssd_300_mobilenet0.25_voc"


def _random(rng, shape, dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return (rng.standard_normal(shape) * 100).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, shape).astype(bool)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


@pytest.fixture(scope="module")
def arrays():
    """One random array per (dtype, shape), named so that the names' order is not sorted."""
    rng = np.random.default_rng(7)
    out = {}
    for i, dtype in enumerate(DTYPES):
        for j, shape in enumerate(SHAPES):
            out[f"{len(DTYPES) - i}.{dtype}.{j}_weight"] = _random(rng, shape, dtype)
    return out


def _mx_save(path, arrays):
    if isinstance(arrays, dict):
        mx.nd.save(str(path), {k: mx.nd.array(v, dtype=v.dtype) for k, v in arrays.items()})
    else:
        mx.nd.save(str(path), [mx.nd.array(v, dtype=v.dtype) for v in arrays])
    return str(path)


def _mx_load(path):
    loaded = mx.nd.load(str(path))
    if isinstance(loaded, dict):
        return {k: v.asnumpy() for k, v in loaded.items()}
    return [v.asnumpy() for v in loaded]


def _assert_same(got, expected):
    assert type(got) is type(expected)
    if isinstance(expected, dict):
        assert list(got) == list(expected)
        pairs = [(got[k], expected[k], k) for k in expected]
    else:
        assert len(got) == len(expected)
        pairs = [(g, e, i) for i, (g, e) in enumerate(zip(got, expected))]
    for g, e, key in pairs:
        assert isinstance(g, np.ndarray), key
        assert g.dtype == e.dtype and g.shape == e.shape, (key, g.dtype, e.dtype, g.shape, e.shape)
        assert np.array_equal(g, e), key


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


# -- reading what MXNet writes --------------------------------------------------------------------------------


def test_load_every_dtype_and_shape(tmp_path, arrays):
    path = _mx_save(tmp_path / "all.params", arrays)
    got = ndfile.load(path)
    _assert_same(got, _mx_load(path))
    _assert_same(got, arrays)
    for array in got.values():
        assert array.flags.writeable and array.flags.c_contiguous and array.flags.aligned


def test_load_list_without_names(tmp_path, arrays):
    values = list(arrays.values())[::5]
    path = _mx_save(tmp_path / "list.params", values)
    got = ndfile.load(path)
    assert isinstance(got, list)
    _assert_same(got, _mx_load(path))
    _assert_same(got, values)
    # no arrays at all: mx.nd.save of {} or [] writes no names, and both loaders give an empty list
    for empty in ({}, []):
        path = _mx_save(tmp_path / "empty.params", empty)
        assert ndfile.load(path) == [] == mx.nd.load(path)


def test_load_np_shape_layout(tmp_path):
    """Under np-shape semantics MXNet writes array magic V3, which allows 0-d arrays."""
    arrays = {"scalar": np.array(2.5, np.float32), "int": np.array(-3, np.int64), "empty": np.zeros((0, 2)),
              "w": np.arange(6, dtype=np.float16).reshape(2, 3)}
    path = str(tmp_path / "np.params")
    with mx.util.np_shape(True):
        _mx_save(path, arrays)
        expected = _mx_load(path)
    assert struct.unpack_from("<I", _read(path), 24)[0] == ndfile.V3_MAGIC
    _assert_same(ndfile.load(path), expected)
    _assert_same(ndfile.load(path), arrays)


def _legacy_file(entries, v1):
    """A list file of the layouts of MXNet 0.x, which MXNet 1.9 still loads: no storage type, and either the
    V1 magic with an int32 ndim and int64 sizes or, before V1, no magic, a uint32 ndim and uint32 sizes."""
    out = [struct.pack("<QQQ", ndfile.LIST_MAGIC, 0, len(entries))]
    flags = {"float32": 0, "float64": 1, "float16": 2, "uint8": 3, "int32": 4, "int8": 5, "int64": 6}
    for array in entries.values():
        if v1:
            out.append(struct.pack(f"<Ii{array.ndim}q", ndfile.V1_MAGIC, array.ndim, *array.shape))
        else:
            out.append(struct.pack(f"<I{array.ndim}I", array.ndim, *array.shape))
        out.append(struct.pack("<iii", 1, 0, flags[array.dtype.name]))
        out.append(array.tobytes())
    out.append(struct.pack("<Q", len(entries)))
    for name in entries:
        out.append(struct.pack("<Q", len(name)) + name.encode())
    return b"".join(out)


@pytest.mark.parametrize("v1", [True, False], ids=["v1", "pre_v1"])
def test_load_legacy_layouts(tmp_path, v1):
    rng = np.random.default_rng(3)
    entries = {"a": _random(rng, (3, 4), "float32"), "b": _random(rng, (5,), "int64"),
               "c": _random(rng, (2, 2, 2), "uint8"), "d": _random(rng, (0, 3), "float16")}
    if not v1:
        entries["scalar"] = np.array(4.0, np.float64)   # pre-V1 ndim 0: MXNet 1.9 reads a 0-d array
    path = _write(tmp_path / "legacy.params", _legacy_file(entries, v1))
    expected = _mx_load(path)     # the oracle: MXNet's own reading of the hand-made file
    _assert_same(expected, entries)
    _assert_same(ndfile.load(path), expected)


def test_load_duplicate_names_as_mxnet(tmp_path, caplog):
    path = str(tmp_path / "dup.params")
    ndfile.save(path, {"a": np.ones(2, np.float32), "b": np.zeros(3, np.int32), "c": np.arange(2.0)})
    data = _read(path)
    _write(path, data[:-10] + data[-10:].replace(b"\x01\x00\x00\x00\x00\x00\x00\x00c", b"\x01" + b"\x00" * 7 + b"a"))
    expected = _mx_load(path)
    assert list(expected) == ["a", "b"]
    _assert_same(ndfile.load(path), expected)
    assert "more than once" in caplog.text


def test_load_ignores_trailing_bytes_as_mxnet(tmp_path, caplog):
    path = _mx_save(tmp_path / "tail.params", {"a": np.arange(3, dtype=np.int8)})
    _write(path, _read(path) + b"tail")
    _assert_same(ndfile.load(path), _mx_load(path))
    assert "4 bytes after the NDArray list ignored" in caplog.text


# -- writing what MXNet writes --------------------------------------------------------------------------------


def test_save_is_byte_identical(tmp_path, arrays):
    ours, theirs = str(tmp_path / "ours.params"), str(tmp_path / "theirs.params")
    ndfile.save(ours, arrays)
    _mx_save(theirs, arrays)
    assert _read(ours) == _read(theirs)
    _assert_same(_mx_load(ours), arrays)
    # a list: no names
    values = list(arrays.values())[3::4]
    ndfile.save(ours, values)
    _mx_save(theirs, values)
    assert _read(ours) == _read(theirs)
    _assert_same(_mx_load(ours), values)
    assert not [f for f in os.listdir(tmp_path) if f.startswith(fileio.TEMP_PREFIX)]


def test_save_converts_layout_and_byte_order(tmp_path):
    base = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    odd = {"transposed": base.transpose(2, 0, 1), "strided": base[:, ::2, 1:], "big_endian": base.astype(">f4"),
           "big_int": np.arange(5).astype(">i8"), "longlong": np.arange(4, dtype=np.longlong),
           "from_list": [[1.5, 2.5]]}
    ours, theirs = str(tmp_path / "ours.params"), str(tmp_path / "theirs.params")
    ndfile.save(ours, odd)
    # what mx.nd.array takes: little-endian, C order, numpy's canonical int64 (it has no key for longlong)
    expected = {k: np.asarray(v).astype(np.asarray(v).dtype.str.replace(">", "<"), order="C") for k, v in odd.items()}
    _mx_save(theirs, expected)
    assert _read(ours) == _read(theirs)
    _assert_same(ndfile.load(ours), expected)


def test_save_np_shape_layout(tmp_path):
    arrays = {"scalar": np.array(1.25, np.float32), "flag": np.array(True), "v": np.arange(4, dtype=np.int32)}
    ours, theirs = str(tmp_path / "ours.params"), str(tmp_path / "theirs.params")
    ndfile.save(ours, arrays, np_shape=True)
    with mx.util.np_shape(True):
        _mx_save(theirs, arrays)
        assert _read(ours) == _read(theirs)
        _assert_same(_mx_load(ours), arrays)
    _assert_same(ndfile.load(ours), arrays)


def test_save_refuses_what_mxnet_cannot_read(tmp_path):
    path = tmp_path / "kept.params"
    ndfile.save(path, {"old": np.ones(1, np.float32)})
    before = _read(path)
    with pytest.raises(ValueError, match="'s' is 0-d.*np_shape=True"):
        ndfile.save(path, {"a": np.ones(2), "s": np.array(1.0)})
    with pytest.raises(ValueError, match="'h' has dtype int16"):
        ndfile.save(path, {"h": np.ones(2, np.int16)})
    with pytest.raises(ValueError, match="dtype complex64"):
        ndfile.save(path, [np.ones(2, np.complex64)])
    with pytest.raises(ValueError, match="dtype <U1"):
        ndfile.save(path, {"t": np.array(["x"])})
    with pytest.raises(TypeError, match="names must be str"):
        ndfile.save(path, {1: np.ones(1)})
    with pytest.raises(TypeError, match="dict of named arrays or a list"):
        ndfile.save(path, np.ones(3))
    assert _read(path) == before
    assert sorted(os.listdir(tmp_path)) == ["kept.params"]


# -- real network files ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def network_files(tmp_path_factory, gcv):
    """Parameter files of one small SSD as gluon_ssd (structural and legacy keys) and gluoncv write them."""
    folder = tmp_path_factory.mktemp("networks")
    net = gluon_ssd.get_model(NETWORK, pretrained_base=False)
    files = {"structural": str(folder / "structural.params"), "legacy": str(folder / "legacy.params"),
             "gluoncv": str(folder / "gluoncv.params")}
    save_ssd_parameters(net, files["structural"])
    net.collect_params().save(files["legacy"], strip_prefix=net.prefix)
    build_reference(gcv, NETWORK).save_parameters(files["gluoncv"])
    return files


@pytest.mark.parametrize("kind", ["structural", "legacy", "gluoncv"])
def test_network_files(tmp_path, network_files, kind):
    path = network_files[kind]
    got = ndfile.load(path)
    expected = _mx_load(path)
    assert len(expected) > 100
    _assert_same(got, expected)
    # written back, the file is the same bytes
    copy = str(tmp_path / "copy.params")
    ndfile.save(copy, got)
    assert _read(copy) == _read(path)


def test_gluoncv_loads_written_file(tmp_path, network_files, gcv):
    rng = np.random.default_rng(0)
    arrays = {k: _random(rng, v.shape, v.dtype) for k, v in ndfile.load(network_files["gluoncv"]).items()}
    path = str(tmp_path / "random.params")
    ndfile.save(path, arrays)
    net = gcv.model_zoo.get_model(NETWORK, pretrained_base=False)
    net.load_parameters(path)
    for key, param in net._collect_params_with_prefix().items():
        assert np.array_equal(param.data().asnumpy(), arrays[key]), key


def test_works_without_mxnet(tmp_path, arrays):
    """The GPU machines have numpy and torch but no MXNet: the module must not need it."""
    source = _mx_save(tmp_path / "source.params", arrays)
    written = str(tmp_path / "written.params")
    script = WITHOUT_MXNET + (
        "from gluon_ssd import ndfile\n"
        f"arrays = ndfile.load({source!r})\n"
        f"ndfile.save({written!r}, arrays)\n"
        "assert 'mxnet' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", script], check=True, cwd=str(ROOT))
    assert _read(written) == _read(source)


# -- files that are no complete NDArray file ------------------------------------------------------------------


def test_truncated_at_every_offset(tmp_path):
    arrays = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([1, 2], np.int64),
              "z": np.zeros((0, 4), np.uint8)}
    full = _read(_mx_save(tmp_path / "full.params", arrays))
    path = str(tmp_path / "cut.params")
    for size in range(len(full)):
        _write(path, full[:size])
        with pytest.raises(ValueError) as err:
            ndfile.load(path)
        message = str(err.value)
        assert path in message and "expected an MXNet .params file" in message, (size, message)
        assert ("empty" if size == 0 else "truncated") in message, (size, message)


def test_foreign_files(tmp_path):
    cases = {"empty.params": b"", "text.params": b"conv0_weight 1.0 2.0\n", "json.params": b'{"nodes": []}',
             "short.params": b"\x00\x01"}
    with zipfile.ZipFile(tmp_path / "archive.params", "w") as z:
        z.writestr("a.npy", b"x")
    np.savez(tmp_path / "arrays.npz", a=np.ones(2))
    np.save(tmp_path / "array.npy", np.ones(2))
    expected = {"empty.params": "the file is empty", "text.params": "it is text", "json.params": "it is JSON",
                "short.params": "starts with bytes 0001", "archive.params": "zip archive",
                "arrays.npz": "zip archive", "array.npy": "NumPy .npy"}
    for name, data in cases.items():
        _write(tmp_path / name, data)
    for name, reason in expected.items():
        path = str(tmp_path / name)
        with pytest.raises(ValueError, match="expected an MXNet .params file") as err:
            ndfile.load(path)
        assert path in str(err.value) and reason in str(err.value), str(err.value)


def _patched(tmp_path, data, offset, fmt, value):
    data = bytearray(data)
    struct.pack_into(fmt, data, offset, value)
    return _write(tmp_path / "patched.params", bytes(data))


def test_bad_fields(tmp_path):
    full = _read(_mx_save(tmp_path / "one.params", {"a": np.ones((2, 2), np.float32)}))
    # header 24 bytes; array: magic 24, stype 28, ndim 32, sizes 36..52, device 52, type flag 60, data 64..80;
    # names count 80, name length 88, name 96
    cases = [(0, "<Q", 0x113, "no NDArray list magic 0x112"),
             (16, "<Q", 10 ** 12, "counts 1000000000000 arrays"),
             (24, "<I", 0xDEADBEEF, "starts with 0xDEADBEEF, no NDArray magic"),
             (28, "<i", 7, "unknown storage type 7"),
             (32, "<i", -1, "unknown shape"),
             (32, "<i", 0, "no data (shape ndim 0)"),
             (32, "<i", 1 << 30, "truncated"),
             (36, "<q", -2, "negative size"),
             (52, "<i", 9, "unknown device type 9"),
             (60, "<i", 12, "bfloat16"),
             (60, "<i", 42, "unknown type flag 42"),
             (80, "<Q", 2, "1 arrays but 2 names"),
             (88, "<Q", 1 << 40, "truncated")]
    for offset, fmt, value, reason in cases:
        path = _patched(tmp_path, full, offset, fmt, value)
        with pytest.raises(ValueError, match="expected an MXNet .params file") as err:
            ndfile.load(path)
        assert path in str(err.value) and reason in str(err.value), (offset, str(err.value))
    path = _write(tmp_path / "latin1.params", full[:-1] + b"\xe9")
    with pytest.raises(ValueError, match="name 0 of 1 is not UTF-8"):
        ndfile.load(path)


@pytest.mark.parametrize("stype", ["row_sparse", "csr"])
def test_sparse_arrays_are_refused(tmp_path, stype):
    dense = np.array([[0, 1, 0], [0, 0, 0], [2, 0, 3]], np.float32)
    path = str(tmp_path / f"{stype}.params")
    if stype == "row_sparse":
        sparse = mx.nd.sparse.row_sparse_array((dense[[0, 2]], np.array([0, 2])), shape=dense.shape)
    else:
        sparse = mx.nd.array(dense).tostype("csr")
    mx.nd.save(path, {"dense_before": mx.nd.ones(2), "emb_weight": sparse, "dense_after": mx.nd.zeros(1)})
    with pytest.raises(ValueError, match=f"array 'emb_weight' has {stype} storage; only dense arrays") as err:
        ndfile.load(path)
    assert path in str(err.value)
    mx.nd.save(path, [mx.nd.ones(2), sparse])
    with pytest.raises(ValueError, match=f"array 1 of 2 has {stype} storage"):
        ndfile.load(path)
