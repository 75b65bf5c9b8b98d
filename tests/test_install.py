"""The two ways people run the project: installed with a plain ``pip install .`` (the PyTorch stack: Python 3.12+,
numpy 2, no MXNet) and from a checkout that is not installed (clone, install the requirements, run the scripts).

Each command runs in a subprocess as a user types it, from a folder outside the checkout, and what it writes is
read back here.
"""
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import sysconfig

import numpy as np
import pytest

from tests.helpers import ROOT

SHAPES = ["--min-size", "96", "--max-size", "128", "--min-object-size", "32", "--max-object-size", "64",
          "--classes", "circle,cross"]
TRAIN = ["--network", "mobilenet0.25", "--data-shape", "128", "--dataset", "custom", "--gpus", "", "-j", "0",
         "--batch-size", "4", "--epochs", "1", "--lr", "0.01", "--pretrained-base", "False", "--no-progress",
         "--val-interval", "1", "--save-interval", "0", "--log-interval", "1"]
MODEL = "ssd_300_mobilenet0.25_custom"


def _run(command, cwd, timeout=300, env=None):
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                            env=dict(env or os.environ, PYTHONUNBUFFERED="1"))
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-4000:]}"
    return result


def _is_installed() -> bool:
    """Whether this environment's site-packages holds gluon-ssd (not: pip's build metadata in the checkout)."""
    site = [sysconfig.get_path("purelib"), sysconfig.get_path("platlib")]
    return any(d.metadata["Name"] == "gluon-ssd" for d in importlib.metadata.distributions(path=site))


@pytest.mark.torch_stack
def test_installed_package_runs_from_outside_the_checkout(tmp_path):
    """`pip install .` on the newest Python (what `make test` installs into its PyTorch-stack venv): numpy 2, no
    MXNet, the package imported from site-packages, and the console scripts run from an unrelated folder:
    gluon-ssd-convert of a file gluoncv wrote gives gluoncv's stored detections; gluon-ssd-train --backend torch
    (one short epoch on a synthetic set), gluon-ssd-eval and gluon-ssd-demo on what it wrote."""
    bin_dir = sysconfig.get_path("scripts")
    work = tmp_path / "elsewhere"
    work.mkdir()
    probe = _run([sys.executable, "-c", "import gluon_ssd, convert, numpy, importlib.util as u; "
                  "print(gluon_ssd.__file__); print(convert.__file__); print(numpy.__version__); "
                  "print(u.find_spec('mxnet') is None)"], work)
    gluon_file, convert_file, numpy_version, no_mxnet = probe.stdout.split()
    site = sysconfig.get_path("purelib")
    assert gluon_file.startswith(site) and convert_file.startswith(site), (gluon_file, site)
    assert int(numpy_version.split(".")[0]) >= 2 and no_mxnet == "True"

    # gluon-ssd-convert of a file gluoncv wrote (its own save_parameters), then the .pth on gluoncv's
    # preprocessed photos: gluoncv's stored raw outputs and detections, within convert --verify's bounds.
    import torch

    from convert import load_torch_model
    from convert.runtime.verify import compare_outputs, format_table, torch_outputs
    from tests.references import gluoncv_params, load

    network = "ssd_300_mobilenet0.25_voc"
    ref = load(f"{network}_gluoncv")
    pth = tmp_path / "gluoncv.pth"
    _run([os.path.join(bin_dir, "gluon-ssd-convert"), "--network", network, "--params",
          str(gluoncv_params(network, tmp_path)), "--out", str(pth)], work)
    model = load_torch_model(pth)
    model.set_nms(*(float(v) if i == 0 else int(v) for i, v in enumerate(ref["nms"])))
    ours = torch_outputs(model, torch.from_numpy(ref["batch"]), train=False)
    checks = compare_outputs(ours, {"input_hw": ref["batch"].shape[2:], "cls_preds": ref["cls_preds"],
                                    "box_preds": ref["box_preds"], "anchors": ref["anchors"],
                                    "detections": [ref["ids"], ref["scores"], ref["boxes"]]})
    assert len(checks) == 6 and all(c.passed for c in checks), format_table(checks, network)

    data = tmp_path / "shapes"
    _run([sys.executable, "-m", "gluon_ssd.cli.synthetic", "--out", str(data), "--train", "8", "--val", "4",
          "--seed", "3", *SHAPES], work)
    prefix = str(tmp_path / "run") + "/"
    trained = _run([os.path.join(bin_dir, "gluon-ssd-train"), "--backend", "torch", *TRAIN, "--dataset-root",
                    str(data), "--save-prefix", prefix], work)
    assert "done: 1 epoch(s)" in trained.stdout, trained.stdout
    epochs = [json.loads(line) for line in open(prefix + MODEL + "_metrics.jsonl") if '"epoch"' in line]
    validated = [h["map"] for h in epochs if h.get("kind") == "epoch"]
    assert len(validated) == 1 and 0 <= validated[0] <= 1

    # The best weights as a GluonCV file (written without MXNet) are evaluated. (That they score what the run's
    # validation scored is tests/convert/train/test_without_mxnet.py's: this one-epoch model scores its candidates
    # nearly alike, so the last bits of the convolutions, which change with the thread count, reorder them.)
    _run([os.path.join(bin_dir, "gluon-ssd-eval"), "--network", "mobilenet0.25", "--data-shape", "128", "--dataset",
          "custom", "--dataset-root", str(data), "--pretrained", prefix + MODEL + "_best.params", "--out-dir",
          str(tmp_path / "eval"), "-j", "0", "--batch-size", "4"], work)
    result = json.load(open(tmp_path / "eval" / "results.json"))
    # no --backend, no MXNet: float32 on the CPU runs in the fastest exact runtime installed (OpenVINO)
    assert result["settings"]["backend"] == "openvino" and result["images_evaluated"] == 4, result
    assert set(result["per_class_ap"]) == {"circle", "cross"} and 0 <= result["map"] <= 1

    images = sorted(str(p) for p in (data / "JPEGImages").glob("val_*.jpg"))[:2]
    _run([os.path.join(bin_dir, "gluon-ssd-demo"), "--network", MODEL, "--pretrained", prefix + MODEL + "_best.pth",
          "--classes", "circle,cross", "--data-shape", "128", "--thresh", "0", "--images", *images,
          "--out-dir", str(tmp_path / "demo")], work)
    records = [json.loads(line) for line in open(tmp_path / "demo" / "detections.jsonl")]
    assert [r["image"] for r in records] == images and all(r["detections"] for r in records)
    assert not list(work.iterdir()), list(work.iterdir())  # everything went where it was asked to


def _checkout_copy(dest):
    """The checkout's packages and fronts as a clone holds them, without any installed metadata (no egg-info)."""
    for folder in ("gluon_ssd", "convert"):
        shutil.copytree(ROOT / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    for front in ("train_ssd.py", "eval_ssd.py", "demo_ssd.py"):
        shutil.copy2(ROOT / front, dest / front)
    return dest


def test_checkout_runs_without_installing(tmp_path):
    """Clone, install the requirements, run the scripts (GluonCV's habit): train_ssd.py --backend torch,
    eval_ssd.py --backend torch and python -m convert from a copy of the checkout's files, where no gluon-ssd
    distribution is installed. The twin is found without entry points."""
    if _is_installed():
        pytest.skip("gluon-ssd is installed in this environment (the PyTorch stack's venv): "
                    "test_installed_package_runs_from_outside_the_checkout tests that; the MXNet stack's venv runs "
                    "this one")
    checkout = _checkout_copy(tmp_path / "clone")
    data = tmp_path / "shapes"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    _run([sys.executable, "-m", "gluon_ssd.cli.synthetic", "--out", str(data), "--train", "8", "--val", "4",
          "--seed", "3", *SHAPES], checkout, env=env)
    probe = _run([sys.executable, "-c", "import importlib.metadata as m, gluon_ssd; "
                  "print(gluon_ssd.__file__); print(len(m.entry_points(group='gluon_ssd.backends')))"], checkout,
                 env=env)
    module_file, entry_points = probe.stdout.split()
    assert module_file.startswith(str(checkout)) and entry_points == "0", probe.stdout

    prefix = str(tmp_path / "run") + "/"
    _run([sys.executable, str(checkout / "train_ssd.py"), "--backend", "torch", *TRAIN, "--dataset-root", str(data),
          "--save-prefix", prefix], tmp_path, env=env)
    best = prefix + MODEL + "_best.params"
    _run([sys.executable, str(checkout / "eval_ssd.py"), "--backend", "torch", "--network", "mobilenet0.25",
          "--data-shape", "128", "--dataset", "custom", "--dataset-root", str(data), "--pretrained", best,
          "--out-dir", str(tmp_path / "eval"), "-j", "0", "--batch-size", "4"], tmp_path, env=env)
    assert json.load(open(tmp_path / "eval" / "results.json"))["settings"]["backend"] == "torch"
    _run([sys.executable, "-m", "convert", "--network", MODEL, "--classes", "circle,cross", "--params", best,
          "--out", str(tmp_path / "twin.pth")], checkout, env=env)
    from convert import convert_gluon_file, load_torch_model

    twin = load_torch_model(tmp_path / "twin.pth")
    expected, _ = convert_gluon_file(MODEL, best, classes=["circle", "cross"])
    assert twin.classes == ("circle", "cross") and twin.state_dict().keys() == expected.state_dict().keys()
    for key, value in expected.state_dict().items():
        np.testing.assert_array_equal(twin.state_dict()[key].numpy(), value.numpy(), err_msg=key)
