"""The PyTorch twin serves: eval_ssd.py and demo_ssd.py with --backend torch agree with --backend mxnet."""
import json
import subprocess
import sys

import numpy as np
import pytest

from gluon_ssd.boxes import box_iou
from tests.helpers import DATA, ROOT, build_reference, photo_batch, randomize

NAME = "ssd_512_mobilenet1.0_voc"  # anchors over the whole image; 300 px inputs keep it quick


@pytest.fixture(scope="module")
def weights(gcv, photo_paths, tmp_path_factory):
    """A gluoncv-written file with seeded random weights whose scores are spread (no near ties)."""
    net = build_reference(gcv, NAME)
    randomize(net, seed=4, probe=photo_batch(gcv, photo_paths, 300, 300))
    folder = tmp_path_factory.mktemp("backend_model")
    params = folder / "model.params"
    net.save_parameters(str(params))
    pth = folder / "model.pth"
    conv = subprocess.run([sys.executable, "-m", "convert", "--network", NAME, "--params", str(params), "--out",
                           str(pth)], cwd=str(ROOT), capture_output=True, text=True, timeout=300)
    assert conv.returncode == 0, conv.stderr
    return params, pth


def _main(args):
    """(exit code, stdout, stderr) of ``[script.py | -m convert] ARGS...`` run in this process (the CLIs' main;
    a subprocess would pay for the imports of mxnet and torch each time)."""
    import contextlib
    import io
    import pathlib

    import demo_ssd
    import eval_ssd
    from convert.cli import main as convert_main

    args = [str(a) for a in args]
    if args[:2] == ["-m", "convert"]:
        main, argv = convert_main, args[2:]
    else:
        main, argv = {"eval_ssd.py": eval_ssd.main, "demo_ssd.py": demo_ssd.main}[pathlib.Path(args[0]).name], args[1:]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code
    return code, out.getvalue(), err.getvalue()


def _run(script, *args):
    code, out, err = _main([script, *args])
    assert code == 0, out[-2000:] + err[-2000:]
    return out


def test_eval_backend_torch_gives_the_same_map(weights, tmp_path):
    params, pth = weights
    voc = DATA / "voc_sample" / "VOCdevkit"
    common = ["--network", "mobilenet1.0", "--data-shape", "300", "--dataset", "voc", "--dataset-root", voc,
              "--splits", "2012_test", "--batch-size", "8", "--no-plots", "--no-progress"]
    maps = {}
    for backend, weights_file in (("mxnet", params), ("torch", params), ("torch-pth", pth)):
        out = tmp_path / backend
        _run("eval_ssd.py", *common, "--pretrained", weights_file, "--backend", backend.split("-")[0],
             "--out-dir", out)
        maps[backend] = json.load(open(out / "results.json"))["map"]
    assert maps["mxnet"] > 0
    assert abs(maps["torch"] - maps["mxnet"]) <= 1e-4 and abs(maps["torch-pth"] - maps["mxnet"]) <= 1e-4, maps


def _demo_records(params, out, *flags):
    """detections.jsonl records of demo_ssd.py on two photos with ``flags``."""
    images = [DATA / "demo_images" / "darknet" / "dog.jpg", DATA / "demo_images" / "darknet" / "horses.jpg"]
    _run("demo_ssd.py", "--network", NAME, "--pretrained", params, *flags, "--thresh", "0.3", "--short", "300",
         "--out-dir", out, "--images", *images)
    return [json.loads(line) for line in open(out / "detections.jsonl")]


def test_demo_backend_torch_gives_the_same_detections(weights, tmp_path):
    params, _ = weights
    records = {backend: _demo_records(params, tmp_path / backend, "--backend", backend)
               for backend in ("mxnet", "torch")}
    for a, b in zip(records["mxnet"], records["torch"]):
        assert a["image"] == b["image"]
        assert [d["class_id"] for d in a["detections"]] == [d["class_id"] for d in b["detections"]]
        assert len(a["detections"]) > 0
        np.testing.assert_allclose([d["score"] for d in b["detections"]], [d["score"] for d in a["detections"]],
                                   atol=2e-4)
        np.testing.assert_allclose([d["box"] for d in b["detections"]], [d["box"] for d in a["detections"]],
                                   atol=0.05)


def _top(record):
    best = max(record["detections"], key=lambda d: d["score"])
    return best["class_id"], best["score"], np.array(best["box"])


def _iou(a, b) -> float:
    return float(box_iou(np.asarray(a)[None], np.asarray(b)[None])[0, 0])


def test_demo_backend_torch_bf16_close_to_fp32(weights, tmp_path):
    """--dtype bf16 (CPU autocast) finds the same best detection as float32 on each image."""
    params, _ = weights
    records = {dtype: _demo_records(params, tmp_path / dtype, "--backend", "torch", "--dtype", dtype)
               for dtype in ("fp32", "bf16")}
    for a, b in zip(records["fp32"], records["bf16"]):
        (cls_a, score_a, box_a), (cls_b, score_b, box_b) = _top(a), _top(b)
        assert cls_a == cls_b and abs(score_a - score_b) < 0.05, (a["image"], _top(a), _top(b))
        assert _iou(box_a, box_b) > 0.9, (a["image"], box_a, box_b)


def _fails(args, *needles):
    code, out, err = _main(args)
    assert code == 2, out[-1000:] + err[-1000:]
    for needle in needles:
        assert needle in err, err[-1000:]


def test_device_and_dtype_flags_are_checked(weights, tmp_path):
    params, _ = weights
    image = DATA / "demo_images" / "darknet" / "dog.jpg"
    demo = [ROOT / "demo_ssd.py", "--network", NAME, "--pretrained", params, "--out-dir", tmp_path / "d",
            "--images", image]
    _fails([*demo, "--dtype", "fp16"], "--backend torch", "--gpus")  # mxnet backend: no --dtype
    import torch

    if not torch.cuda.is_available():
        _fails([*demo, "--backend", "torch", "--device", "cuda"], "cuda", "no CUDA GPU")
        _fails(["-m", "convert", "--network", NAME, "--params", params, "--verify", "--device", "cuda"],
               "--device cuda", "no CUDA GPU")
