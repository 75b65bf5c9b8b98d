"""The command-line layer (gluon_ssd.cli): one dataset opening for training and evaluation (the three VOC
layouts), the expected failures of every tool (exit status, one message naming the value, no traceback),
logging beside progress bars, the console entry points.

References: the split files of the VOC sample (how many images a split lists), the values handed to the tools,
and tqdm's own bar output.
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import subprocess
import sys

import pytest
import tomllib

import gluon_ssd
from convert.cli import main as convert_main
from gluon_ssd.cli import common
from gluon_ssd.cli.check import main as check_main
from gluon_ssd.cli.demo import main as demo_main
from gluon_ssd.cli.eval import main as eval_main
from gluon_ssd.cli.train import main as train_main
from gluon_ssd.data import open_dataset
from gluon_ssd.data.open import find_dataset_root
from tests.helpers import DATA, ROOT, randomize

DEVKIT = DATA / "voc_sample" / "VOCdevkit"
NAME = "ssd_300_mobilenet0.25_voc"
PHOTO = DATA / "demo_images" / "darknet" / "dog.jpg"


def _listed(split_file) -> int:
    return sum(1 for line in split_file.read_text().splitlines() if line.strip())


@pytest.fixture(scope="module")
def voc_params(tmp_path_factory):
    """A parameter file of ssd_300_mobilenet0.25_voc (seeded random weights)."""
    path = tmp_path_factory.mktemp("cli_model") / "mobilenet025_voc.params"
    randomize(gluon_ssd.get_model(NAME, pretrained_base=False), seed=1).save_parameters(str(path))
    return path


@pytest.fixture(scope="module")
def voc_layouts(tmp_path_factory):
    """The VOC sample laid out three ways: GluonCV's ~/.mxnet/datasets/voc (VOC2007/ directly in the root), a
    folder holding VOCdevkit/, and the VOCdevkit folder itself."""
    base = tmp_path_factory.mktemp("layouts")
    gluoncv = base / "voc"
    gluoncv.mkdir()
    for year in ("VOC2007", "VOC2012"):
        (gluoncv / year).symlink_to(DEVKIT / year)
    parent = base / "parent"
    parent.mkdir()
    (parent / "VOCdevkit").symlink_to(DEVKIT)
    (base / "VOCdevkit").symlink_to(DEVKIT)
    return {"gluoncv": gluoncv, "parent": parent, "devkit": base / "VOCdevkit"}


def _call(capsys, main, *argv):
    """main(argv) in this process: (exit status, stdout, stderr)."""
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


# ------------------------------------------------------------------------------------- dataset opening
@pytest.mark.parametrize("layout", ["gluoncv", "parent", "devkit"])
def test_library_opens_every_voc_layout_for_train_and_eval(voc_layouts, layout):
    root = voc_layouts[layout]
    found = find_dataset_root("voc", root)
    assert os.path.realpath(os.path.join(found, "VOC2007")) == os.path.realpath(DEVKIT / "VOC2007")
    listed = _listed(DEVKIT / "VOC2007/ImageSets/Main/test.txt")
    for purpose in ("train", "eval"):
        dataset = open_dataset("voc", root, "2007_test", purpose=purpose)
        assert len(dataset) == listed == 5


@pytest.mark.parametrize("layout", ["gluoncv", "parent", "devkit"])
def test_train_finds_every_voc_layout(voc_layouts, layout, tmp_path, capsys):
    """train_ssd.py reads 2007_trainval, which the sample lacks: in every layout the root is found and the
    error is the missing split file, not a missing dataset."""
    status, _, err = _call(capsys, train_main, "--dataset", "voc", "--dataset-root", voc_layouts[layout],
                           "--network", "mobilenet0.25", "--data-shape", 300, "--gpus", "", "--pretrained-base",
                           "False", "--save-prefix", f"{tmp_path}/", "--no-progress")
    assert status == 2
    assert "VOC2007/ImageSets/Main/trainval.txt not found" in err and "no VOC dataset" not in err, err
    assert err.splitlines()[-1].startswith("train_ssd.py: error: ") and "Traceback" not in err
    log_text = (tmp_path / "ssd_300_mobilenet0.25_voc_train.log").read_text()
    assert "arguments:" in log_text and "'dataset': 'voc'" in log_text


def test_eval_scores_every_voc_layout_alike(voc_layouts, voc_params, tmp_path, capsys):
    listed = _listed(DEVKIT / "VOC2007/ImageSets/Main/test.txt")
    results = {}
    for layout, root in voc_layouts.items():
        out = tmp_path / layout
        status, _, err = _call(capsys, eval_main, "--network", "mobilenet0.25", "--data-shape", 300,
                               "--dataset-root", root, "--splits", "2007_test", "--pretrained", voc_params,
                               "--batch-size", 4, "-j", 0, "--out-dir", out, "--no-progress", "--no-plots")
        assert status == 0, err
        results[layout] = json.loads((out / "results.json").read_text())
        assert results[layout]["images_evaluated"] == listed
    aps = [r["per_class_ap"] for r in results.values()]
    assert aps[0] == aps[1] == aps[2]


# --------------------------------------------------------------------------------- expected failures
@pytest.fixture(scope="module")
def places(tmp_path_factory, voc_params):
    """Paths for the failure cases: a missing file, a file and an empty folder as dataset roots, a small
    custom dataset and the VOC parameter file (of another network than the ResNet-18 SSDs)."""
    from gluon_ssd.data import write_synthetic_dataset

    base = tmp_path_factory.mktemp("failures")
    (base / "empty").mkdir()
    (base / "notes.txt").write_text("not a dataset\n")
    write_synthetic_dataset(str(base / "shapes"), 2, 1, seed=0, min_size=96, max_size=128, progress=False)
    return {"missing": base / "missing.params", "file": base / "notes.txt", "empty": base / "empty",
            "shapes": base / "shapes", "params": voc_params, "out": base / "out"}


def _cases(p):
    """(name, main, argv, exit status, words the message must hold)."""
    voc = ["--dataset-root", DEVKIT, "--splits", "2007_test", "--network", "mobilenet0.25", "--out-dir", p["out"],
           "--no-progress"]
    demo = ["--out-dir", p["out"], "--images", PHOTO]
    train = ["--gpus", "", "--pretrained-base", "False", "--save-prefix", f"{p['out']}/", "--no-progress",
             "--network", "mobilenet0.25", "--data-shape", 300]
    custom = ["--dataset", "custom", "--dataset-root", p["shapes"]]
    convert = ["--network", NAME, "--out", p["out"] / "x.pth"]
    return [
        ("eval: flag value", eval_main, [*voc, "--batch-size", "zero"], 2, ["--batch-size", "'zero'"]),
        ("eval: missing file", eval_main, [*voc, "--pretrained", p["missing"]], 2, [str(p["missing"])]),
        ("eval: dataset root", eval_main, [*voc, "--dataset-root", p["empty"]], 2,
         ["no VOC dataset under --dataset-root", str(p["empty"])]),
        ("eval: wrong model", eval_main, [*voc, "--network", "resnet18_v1", "--pretrained", p["params"]], 2,
         [str(p["params"]), "does not hold a ssd_512_resnet18_v1_voc network"]),
        ("demo: flag value", demo_main, [*demo, "--thresh", "2"], 2, ["--thresh must be in [0, 1], got 2.0"]),
        ("demo: missing file", demo_main, [*demo, "--network", NAME, "--pretrained", p["missing"]], 2,
         ["parameter file not found", str(p["missing"])]),
        ("demo: wrong model", demo_main, [*demo, "--network", "ssd_300_resnet34_v1b_voc", "--pretrained",
                                          p["params"]], 2, ["cannot load ssd_300_resnet34_v1b_voc", str(p["params"])]),
        ("demo: nothing readable", demo_main, ["--out-dir", p["out"], "--network", NAME, "--pretrained", p["params"],
                                               "--images", p["file"]], 1, ["no image or frame could be read"]),
        ("train: flag value", train_main, [*train, *custom, "--lr-mode", "poly"], 2, ["--lr-mode", "'poly'"]),
        ("train: missing file", train_main, [*train, *custom, "--resume", p["missing"]], 2,
         ["--resume", str(p["missing"])]),
        ("train: dataset root", train_main, [*train, "--dataset", "custom", "--dataset-root", p["file"]], 2,
         ["no custom dataset at --dataset-root", str(p["file"]), "it is a file"]),
        ("train: wrong model", train_main, [*train, *custom, "--network", "resnet18_v1", "--transfer", p["params"]],
         2, ["--transfer", str(p["params"]), "does not hold a ssd_512_resnet18_v1_custom network"]),
        ("convert: flag value", convert_main,
         [*convert, "--params", p["params"], "--num-calib-images", "many"], 2, ["--num-calib-images", "'many'"]),
        ("convert: missing file", convert_main, [*convert, "--params", p["missing"]],
         2, ["--params", str(p["missing"]), "no such file"]),
        ("convert: wrong model", convert_main,
         ["--network", "ssd_300_resnet34_v1b_voc", "--params", p["params"], "--out", p["out"] / "x.pth"], 2,
         ["missing in file"]),
        ("check: flag value", check_main, ["--dataset", "voc", "--dataset-root", DEVKIT, "--data-shape", "0"], 2,
         ["--data-shape must be at least 1, got 0"]),
        ("check: missing root", check_main, ["--dataset", "coco", "--dataset-root", p["missing"]], 2,
         [str(p["missing"]), "is not a folder (it does not exist)"]),
        ("check: dataset root", check_main, ["--dataset", "voc", "--dataset-root", p["file"]], 2,
         [str(p["file"]), "is not a folder (it is a file)"]),
    ]


def test_expected_failures_of_every_tool(places, capsys):
    """Each case: its exit status, one line on stderr naming the value, no traceback, nothing half-written."""
    failed = []
    for name, main, argv, status, words in _cases(places):
        got, _, err = _call(capsys, main, *argv)
        lines = [line for line in err.splitlines() if line.strip()]
        errors = [line for line in lines if ": error: " in line]
        if got != status or "Traceback" in err or len(errors) != 1 or not all(w in errors[0] for w in words):
            failed.append(f"{name}: exit {got} (expected {status}), stderr:\n{err}")
    assert not failed, "\n\n".join(failed)
    assert not (places["out"] / "x.pth").exists()
    root = logging.getLogger()
    assert not [h for h in root.handlers if isinstance(h, common.TqdmHandler)], "a tool left its log handler"


def test_root_scripts_fail_cleanly_as_users_run_them(tmp_path):
    """The fronts, run by name: a bad flag value of eval_ssd.py and a missing file of python -m convert."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MXNET_HOME": str(tmp_path)}
    runs = [([str(ROOT / "eval_ssd.py"), "--dataset", "pascal"], "eval_ssd.py: error: argument --dataset: "
             "invalid choice: 'pascal'"),
            (["-m", "convert", "--network", NAME, "--params", str(tmp_path / "nope.params"), "--out",
              str(tmp_path / "x.pth")], f"python -m convert: error: --params {tmp_path / 'nope.params'}: no such file")]
    for argv, message in runs:
        proc = subprocess.run([sys.executable, *argv], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                              env=env)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, proc.stderr
        assert len(lines) == 1 and lines[0].startswith(message), proc.stderr


# ------------------------------------------------------------------------------------ logging, entry points
def test_log_lines_are_written_above_the_progress_bar(capsys):
    """A record logged while a tqdm bar runs stands on a line of its own (tqdm.write clears the bar first);
    written straight to stderr it would be glued to the bar's text."""
    from tqdm import tqdm

    common.setup_logging(verbose=False)
    try:
        bar = tqdm(total=10, file=sys.stderr, ascii=True, mininterval=0, miniters=1)
        bar.update(3)
        logging.getLogger("gluon_ssd.test").warning("a message")
        bar.update(1)
        bar.close()
        logging.getLogger("gluon_ssd.test").info("not shown below WARNING")
    finally:
        common.reset_logging()
    err = capsys.readouterr().err
    pieces = [s.strip() for s in err.replace("\r", "\n").split("\n")]
    assert "WARNING gluon_ssd.test: a message" in pieces, repr(err)
    assert any(s.startswith("30%") for s in pieces) and any(s.startswith("40%") for s in pieces), repr(err)
    assert "not shown" not in err


def test_console_entry_points_name_the_mains():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {"gluon-ssd-train", "gluon-ssd-eval", "gluon-ssd-demo", "gluon-ssd-convert",
                            "gluon-ssd-check"}
    expected = {"gluon-ssd-train": train_main, "gluon-ssd-eval": eval_main, "gluon-ssd-demo": demo_main,
                "gluon-ssd-convert": convert_main, "gluon-ssd-check": check_main}
    for script, target in scripts.items():
        module, func = target.split(":")
        assert getattr(importlib.import_module(module), func) is expected[script], script
    for front, main in (("eval_ssd", eval_main), ("demo_ssd", demo_main), ("train_ssd", train_main)):
        sys.path.insert(0, str(ROOT))
        try:
            assert importlib.import_module(front).main is main
        finally:
            sys.path.remove(str(ROOT))


def test_help_exits_0_in_process(capsys):
    for main in (eval_main, demo_main, train_main):
        status, out, _ = _call(capsys, main, "--help")
        assert status == 0 and out.startswith("usage: ")


def test_train_offline_without_the_imagenet_backbone_says_what_to_do(tmp_path, capsys, monkeypatch):
    """The default --pretrained-base True needs the ImageNet backbone; offline (a model store on a closed
    local port, an empty cache) that is one message with the way out, not a traceback."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    monkeypatch.setenv("MXNET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MXNET_GLUON_REPO", f"http://127.0.0.1:{port}/")
    from gluon_ssd.data import write_synthetic_dataset

    write_synthetic_dataset(str(tmp_path / "data"), 4, 2, seed=0, progress=False, min_size=96, max_size=128)
    rc, _, err = _call(capsys, train_main, "--network", "mobilenet0.25", "--data-shape", "300", "--dataset", "custom",
                    "--dataset-root", tmp_path / "data", "--gpus", "", "--epochs", "1", "--save-prefix",
                    f"{tmp_path}/run/", "--no-progress")
    assert rc == 2 and "Traceback" not in err
    assert "mobilenet0.25" in err and "--pretrained-base False" in err
