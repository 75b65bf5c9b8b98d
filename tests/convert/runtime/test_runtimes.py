"""The ONNX Runtime and OpenVINO backends (convert/runtime/onnxruntime.py, openvino.py) and the OpenVINO IR of
``python -m convert --openvino``, on either stack (no MXNet needed).

The fp32 detections are held to the twin's with the bounds of ``python -m convert --verify`` (compare_detections);
bf16 and int8 to 0.02 VOC07 mAP of fp32 on the suite's trained model. OpenVINO int8 (NNCF 3.x) installs only on the
PyTorch stack (numpy >= 1.24); the MXNet stack checks that it says so.
"""
import glob
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import eval_ssd
from convert.backend import load_torch_detector
from convert.runtime.verify import compare_detections
from gluon_ssd.data.custom import read_image
from gluon_ssd.predict import Preprocessor, load_detector
from tests.helpers import ROOT
from tests.references import DATA, gluoncv_params

NETWORK = "ssd_300_mobilenet0.25_voc"
PHOTOS = sorted(glob.glob(str(DATA / "demo_images" / "darknet" / "*.jpg")))


def _have_nncf3() -> bool:
    try:
        import nncf
    except ImportError:
        return False
    return int(nncf.__version__.split(".")[0]) >= 3


NNCF3 = _have_nncf3()


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """gluoncv's file of NETWORK, the photos at 300x300, the twin's detections on them, and what python -m convert
    wrote: the fp32 ONNX, the fp32 IR and (with nncf 3) the int8 IR calibrated on the photos."""
    folder = tmp_path_factory.mktemp("runtimes")
    params = gluoncv_params(NETWORK, folder)
    cmd = [sys.executable, "-m", "convert", "--network", NETWORK, "--params", str(params), "--onnx",
           str(folder / "m.onnx"), "--openvino", str(folder / "ir")]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    if NNCF3:
        done = subprocess.run([*cmd[:7], "--openvino", str(folder / "ir8"), "--quantize", "int8", "--calib-images",
                               ",".join(PHOTOS), "--data-shape", "300"], cwd=ROOT, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    preprocess = Preprocessor(data_shape=300)
    batch = np.stack([preprocess(read_image(p)) for p in PHOTOS])
    twin = load_torch_detector(NETWORK, str(params))(batch)
    return {"folder": folder, "params": str(params), "batch": batch, "twin": twin}


def test_openvino_precision_rule():
    """What each --dtype compiles at: fp32/bf16 explicitly; int8 at OpenVINO's default (no hint) unless class heads
    were kept float32, then f32 so that they stay float32 (broken once: bf16 for kept heads fails it)."""
    from convert.runtime.openvino import precision_config

    assert precision_config("fp32", None) == {"INFERENCE_PRECISION_HINT": "f32"}
    assert precision_config("bf16", {"float_heads": [0]}) == {"INFERENCE_PRECISION_HINT": "bf16"}
    assert precision_config("int8", {"float_heads": []}) == {}
    assert precision_config("int8", {"float_heads": [0, 1]}) == {"INFERENCE_PRECISION_HINT": "f32"}


def _checks(ours, ref):
    expand = lambda d: (d[0][..., None], d[1][..., None], d[2])
    return compare_detections(expand(ours), expand(ref), 300)


@pytest.mark.parametrize("backend,source", [("onnxruntime", "params"), ("onnxruntime", "m.onnx"),
                                            ("openvino", "params"), ("openvino", "m.onnx"),
                                            ("openvino", "ir/model.xml")])
def test_fp32_detections_equal_the_twins(written, backend, source, monkeypatch):
    """gluoncv's file, its --onnx export and its IR in each runtime give the twin's detections on real photos
    (ids, scores, boxes; near-tie swaps allowed as --verify allows them)."""
    monkeypatch.setenv("GLUON_SSD_CACHE", str(written["folder"] / "cache"))
    path = written["params"] if source == "params" else str(written["folder"] / source)
    detector = load_detector(backend, network=NETWORK, pretrained=path, dtype="fp32")
    assert detector.classes[0] == "aeroplane" and len(detector.classes) == 20
    checks = _checks(detector(written["batch"]), written["twin"])
    assert all(c.passed for c in checks), checks
    if backend == "openvino":  # compiled for this input shape alone on the second call
        checks = _checks(detector(written["batch"]), written["twin"])
        assert list(detector._fixed) == [written["batch"].shape] and all(c.passed for c in checks), checks
    assert int((written["twin"][0] >= 0).sum()) > 100  # the comparison covers many detections


# Run by a python where torch and this project cannot be imported, outside the checkout, PYTHONPATH unset.
_BARE = textwrap.dedent("""
    import json, sys
    sys.modules["torch"] = None
    sys.modules["gluon_ssd"] = None
    sys.modules["convert"] = None
    import numpy as np
    kind, path, batch = sys.argv[1], sys.argv[2], np.load(sys.argv[3])
    if kind == "onnxruntime":
        import onnxruntime
        out = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"data": batch})
    else:
        import openvino
        meta = json.load(open(path[:-4] + ".json"))
        assert meta["network"] and meta["classes"], meta
        result = openvino.Core().compile_model(path, "CPU", meta["openvino_config"])(batch)
        out = [result[i] for i in range(3)]
    np.savez(sys.argv[4], ids=out[0], scores=out[1], boxes=out[2])
""")


def _run_bare(tmp_path, kind, path, batch):
    (tmp_path / "bare.py").write_text(_BARE)
    np.save(tmp_path / "batch.npy", batch)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "bare.py", kind, str(path), "batch.npy", "out.npz"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")
    return out["ids"][..., 0], out["scores"][..., 0], out["boxes"]


@pytest.mark.parametrize("kind,file", [("onnxruntime", "m.onnx"), ("openvino", "ir/model.xml"),
                                       ("openvino", "ir8/model.xml")])
def test_written_files_are_self_contained(written, tmp_path, kind, file):
    """Each written file runs in its runtime alone: the fp32 ones give the twin's detections; the int8 IR gives
    what --backend openvino gives with it (its accuracy: test_bf16_and_int8_keep_the_trained_models_map)."""
    if file.startswith("ir8") and not NNCF3:
        pytest.skip("OpenVINO int8 needs nncf 3 (the PyTorch stack)")
    out = _run_bare(tmp_path, kind, written["folder"] / file, written["batch"])
    ref = written["twin"]
    if file.startswith("ir8"):
        ref = load_detector("openvino", network=NETWORK, pretrained=str(written["folder"] / file),
                            dtype="int8")(written["batch"])
    checks = _checks(out, ref)
    assert all(c.passed for c in checks), checks


def _demo(tmp_path, *argv, env=None, prelude=""):
    """demo_ssd.py in a subprocess (``prelude`` runs first, e.g. to hide a package); (exit status, stderr)."""
    code = prelude + "import sys, demo_ssd; sys.exit(demo_ssd.main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", code, "--images", PHOTOS[0], "--out-dir", str(tmp_path / "demo"),
                           *map(str, argv)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, **(env or {})))
    return done.returncode, done.stderr


@pytest.mark.torch_stack  # the same code on both stacks: off the longer MXNet leg of make test (5 subprocesses)
def test_bad_input_is_one_message(written, tmp_path):
    """A missing runtime, --dtype bf16 for ONNX Runtime, an IR (fp32, int8) of another model, a fixed-size int8 IR
    fed another size: one line each, exit 2, no traceback."""
    cache = {"GLUON_SSD_CACHE": str(written["folder"] / "cache")}
    ir = written["folder"] / "ir" / "model.xml"
    cases = [
        (("--backend", "openvino", "--network", NETWORK, "--pretrained", ir), "sys.modules['openvino'] = None\n",
         "pip install openvino==2026.4.1"),
        (("--backend", "onnxruntime", "--network", NETWORK, "--pretrained", written["folder"] / "m.onnx"),
         "sys.modules['onnxruntime'] = None\n", "pip install onnxruntime"),
        (("--backend", "onnxruntime", "--dtype", "bf16", "--network", NETWORK, "--pretrained", written["params"]), "",
         "onnxruntime runs fp32 or int8, not bf16"),
        (("--backend", "openvino", "--network", "ssd_300_vgg16_atrous_voc", "--pretrained", ir), "",
         f"holds {NETWORK}, not ssd_300_vgg16_atrous_voc"),
    ]
    if NNCF3:
        ir8 = written["folder"] / "ir8" / "model.xml"
        cases += [(("--backend", "openvino", "--dtype", "int8", "--network", NETWORK, "--data-shape", 256,
                    "--pretrained", ir8), "", "is an int8 graph of 300x300 inputs, got --data-shape 256"),
                  (("--backend", "openvino", "--dtype", "int8", "--network", "ssd_300_vgg16_atrous_voc", "--pretrained",
                    ir8), "", f"holds {NETWORK}, not ssd_300_vgg16_atrous_voc")]
    for argv, prelude, message in cases:
        rc, err = _demo(tmp_path, *argv, env=cache, prelude="import sys\n" + prelude)
        assert rc == 2 and message in err and "Traceback" not in err, (argv, rc, err[-2000:])


def test_openvino_int8_without_nncf3_says_where_it_runs(written, tmp_path):
    """python -m convert --openvino --quantize int8 where nncf 3 is missing (the MXNet stack): one line naming
    nncf 3.4.0 and the PyTorch stack, exit 2."""
    prelude = "" if not NNCF3 else "import sys; sys.modules['nncf'] = None\n"
    code = prelude + "import sys; from convert.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", code, "--network", NETWORK, "--params", written["params"],
                           "--openvino", str(tmp_path / "ir8"), "--quantize", "int8", "--calib-images", PHOTOS[0]],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "nncf" in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "ir8").exists()


def _eval(trained, out_dir, *extra):
    rc = eval_ssd.main([str(a) for a in ("--network", trained.network, "--data-shape", trained.data_shape, "--dataset",
                                         "custom", "--dataset-root", trained.data, "--splits", "val", "--pretrained",
                                         trained.params, "--batch-size", 8, "-j", 0, "--no-progress", "--no-plots",
                                         "--out-dir", out_dir, *extra)])
    assert rc == 0
    return json.loads((out_dir / "results.json").read_text())["map"]


# On the PyTorch stack only, where OpenVINO int8 (nncf 3) runs too: the same runtimes' code serves both stacks, and the
# MXNet stack's suite is the longer leg of make test.
@pytest.mark.torch_stack
def test_bf16_and_int8_keep_the_trained_models_map(small_trained_model, tmp_path, monkeypatch):
    """On the ResNet-18 SSD trained in the suite: both runtimes' fp32 score the twin's mAP; OpenVINO bf16 and the
    int8 that eval_ssd.py --dtype int8 calibrates on the PyTorch stack (no MXNet) for ONNX Runtime and OpenVINO (NNCF)
    from the same validation batches with the same class-head rule, within 0.02. (python -m convert --quantize int8
    writes the same ONNX Runtime graph: tests/convert/runtime/test_quantization.py.)"""
    monkeypatch.setenv("GLUON_SSD_CACHE", str(tmp_path / "cache"))
    trained = small_trained_model
    fp32 = _eval(trained, tmp_path / "fp32", "--backend", "torch")
    assert fp32 > 0.5, "the trained model does not detect: the comparison would prove little"
    maps = {"ort fp32": _eval(trained, tmp_path / "ort", "--backend", "onnxruntime"),
            "openvino fp32": _eval(trained, tmp_path / "ov", "--backend", "openvino"),
            "openvino bf16": _eval(trained, tmp_path / "ovbf16", "--backend", "openvino", "--dtype", "bf16")}
    calibrate = ("--dtype", "int8", "--num-calib-batches", 2)
    maps["ort int8 (eval_ssd.py)"] = _eval(trained, tmp_path / "ort8e", "--backend", "onnxruntime", *calibrate)
    if NNCF3:
        maps["openvino int8 (eval_ssd.py)"] = _eval(trained, tmp_path / "ov8", "--backend", "openvino", *calibrate)
        written = tmp_path / "ov8" / "model" / f"{trained.network}-int8-naive"
        meta = json.loads((written / "model.json").read_text())
        # The same class-head rule as ONNX Runtime's int8 of the same model and images (which heads it keeps depends
        # on the trained weights, which change with the thread count: [0, 1] under make test's one thread).
        from convert.runtime.graphfile import read_onnx_meta

        ort_heads = read_onnx_meta(str(tmp_path / "ort8e" / "model" / f"{trained.network}-int8-naive.onnx"))
        assert meta["dtype"] == "int8" and meta["float_heads"] == ort_heads["float_heads"], (meta, ort_heads)
        assert (written / "model.xml").is_file() and (written / "model.bin").is_file()
    for what in ("ort fp32", "openvino fp32"):
        assert maps[what] == pytest.approx(fp32, abs=1e-3), (what, maps[what], fp32)
    for what, value in maps.items():
        assert abs(value - fp32) <= 0.02, f"{what} mAP {value:.4f} vs float32 {fp32:.4f}"
    print("VOC07 mAP", {"twin fp32": round(fp32, 4), **{k: round(v, 4) for k, v in maps.items()}})
