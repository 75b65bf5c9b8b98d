"""python -m convert: conversion, --verify table, exports, --reverse, and clear refusals of bad input."""
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
import torch

import gluon_ssd
from convert.cli import main
from convert.weights.mapping import load_torch_model
from tests.helpers import ROOT, WITHOUT_MXNET, randomize, save_legacy

NAME = "ssd_300_mobilenet0.25_voc"   # small and fast; every architecture is covered by test_convert_models


@pytest.fixture(scope="module")
def gluon_file(tmp_path_factory):
    net = randomize(gluon_ssd.get_model(NAME, pretrained_base=False), seed=1)
    folder = tmp_path_factory.mktemp("cli")
    structural, legacy = folder / "net.params", folder / "legacy.params"
    net.save_parameters(str(structural))
    save_legacy(net, legacy)
    return structural, legacy


def _run(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_cli_convert_verify_export(gluon_file, photo_paths, tmp_path):
    """The real entry point: convert a legacy-key GluonCV file, verify on photos, write both exports."""
    _, legacy = gluon_file
    out, ts, onnx_path = tmp_path / "m.pth", tmp_path / "m.pt", tmp_path / "m.onnx"
    proc = subprocess.run(
        [sys.executable, "-m", "convert", "--network", NAME, "--params", str(legacy), "--out", str(out), "--verify",
         "--images", ",".join(photo_paths), "--torchscript", str(ts), "--onnx", str(onnx_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for row in ("cls_preds", "box_preds", "anchors", "train_cls_preds", "train_box_preds", "ids/order", "scores",
                "boxes"):
        line = next(line for line in proc.stdout.splitlines() if line.startswith(row + " "))
        assert " pass " in line, proc.stdout
    assert "verification passed" in proc.stdout
    model = load_torch_model(out)
    assert model.name == NAME and len(model.classes) == 20
    x = torch.randn(2, 3, 300, 300)
    with torch.no_grad():
        eager = model(x)
        scripted = torch.jit.load(str(ts))(x)
    for a, b in zip(eager, scripted):
        assert torch.equal(a, b)
    assert onnx_path.stat().st_size > 1_000_000


def test_cli_reverse_round_trip(gluon_file, tmp_path, capsys):
    structural, _ = gluon_file
    pth, back = tmp_path / "m.pth", tmp_path / "back.params"
    status, out, err = _run(capsys, "--network", NAME, "--params", structural, "--out", pth)
    assert status == 0, err
    status, out, err = _run(capsys, "--reverse", "--params", pth, "--out", back)
    assert status == 0, err
    assert "wrote" in out
    a, b = mx.nd.load(str(structural)), mx.nd.load(str(back))
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(b[key].asnumpy(), a[key].asnumpy(), err_msg=key)
    # A bare state dict converts back too, given the network.
    bare = tmp_path / "bare.pth"
    torch.save(load_torch_model(pth).state_dict(), bare)
    status, out, err = _run(capsys, "--reverse", "--params", bare, "--out", tmp_path / "bare.params")
    assert status == 2 and "pass --network" in err
    status, out, err = _run(capsys, "--reverse", "--network", NAME, "--params", bare, "--out",
                            tmp_path / "bare.params")
    assert status == 0, err
    net = gluon_ssd.get_model(NAME, pretrained=str(tmp_path / "bare.params"))
    assert net.num_classes == 20


def test_cli_refuses_bad_input(gluon_file, tmp_path, capsys):
    structural, _ = gluon_file
    out = tmp_path / "x.pth"
    cases = [
        (["--network", "ssd_300_nope_voc", "--params", structural, "--out", out], "is not a zoo model"),
        (["--network", NAME, "--params", tmp_path / "missing.params", "--out", out], "no such file"),
        (["--network", "ssd_300_mobilenet0.25_custom", "--params", structural, "--out", out], "--classes"),
        (["--network", NAME, "--params", structural, "--classes", " , ", "--out", out], "names no class"),
        (["--reverse", "--params", structural, "--out", out], "not a PyTorch file"),
    ]
    text = tmp_path / "notes.txt"
    text.write_text("not parameters")
    cases.append((["--network", NAME, "--params", text, "--out", out], "not an MXNet parameter file"))
    for argv, message in cases:
        status, _, err = _run(capsys, *argv)
        assert status == 2 and message in err, (argv, err)
        assert "Traceback" not in err
    assert not out.exists()


def test_refuses_files_that_do_not_fit(gluon_file, tmp_path, capsys):
    structural, _ = gluon_file
    # VOC weights (20 classes) read as the COCO model: every class head has the wrong shape.
    status, _, err = _run(capsys, "--network", "ssd_300_mobilenet0.25_coco", "--params", structural, "--out",
                          tmp_path / "x.pth")
    assert status == 2
    assert "class_predictors.0.predictor.weight: (84, 128, 3, 3) vs (324, 128, 3, 3)" in err, err
    assert "20 classes" in err
    # Another backbone: keys missing and unexpected, named.
    status, _, err = _run(capsys, "--network", "ssd_300_resnet34_v1b_voc", "--params", structural, "--out",
                          tmp_path / "x.pth")
    assert status == 2 and "missing in file: features.stage1.0.weight" in err and "not in model" in err, err
    # Anchors edited in the file: the twin computes them from the formula, so it refuses.
    arrays = mx.nd.load(str(structural))
    arrays["anchor_generators.2.anchors"] = arrays["anchor_generators.2.anchors"] * 1.5
    edited = tmp_path / "edited.params"
    mx.nd.save(str(edited), arrays)
    status, _, err = _run(capsys, "--network", NAME, "--params", edited, "--out", tmp_path / "x.pth")
    assert status == 2 and "stored anchors of layer 2 differ" in err, err
    # A shape changed inside the backbone.
    arrays = mx.nd.load(str(structural))
    arrays["features.mobilenet0_conv3_weight"] = mx.nd.zeros((16, 2, 3, 3))
    bad = tmp_path / "bad.params"
    mx.nd.save(str(bad), arrays)
    status, _, err = _run(capsys, "--network", NAME, "--params", bad, "--out", tmp_path / "x.pth")
    assert status == 2 and "features.mobilenet0_conv3_weight: (16, 2, 3, 3) vs (16, 1, 3, 3)" in err, err


def test_custom_classes(tmp_path, capsys):
    name = "ssd_300_mobilenet0.25_custom"
    net = randomize(gluon_ssd.get_model(name, pretrained_base=False, classes=["cat", "dog"]), seed=2)
    path = tmp_path / "custom.params"
    net.save_parameters(str(path))
    status, _, err = _run(capsys, "--network", name, "--params", path, "--classes", "cat,dog,person", "--out",
                          tmp_path / "x.pth")
    assert status == 2 and "2 classes" in err and "cat,dog" not in err
    status, out, err = _run(capsys, "--network", name, "--params", path, "--classes", "cat,dog", "--out",
                            tmp_path / "c.pth")
    assert status == 0, err
    assert load_torch_model(tmp_path / "c.pth").classes == ("cat", "dog")


def test_training_checkpoint(gluon_file, photo_paths, tmp_path, capsys):
    """gluon_ssd training checkpoints (zip with the network's parameters) convert and verify too."""
    from gluon_ssd.train.checkpoint import save_checkpoint

    structural, _ = gluon_file
    net = gluon_ssd.get_model(NAME, pretrained=str(structural))
    ckpt = tmp_path / "run_last.ckpt"
    save_checkpoint(ckpt, net, mx.gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.01}), {"epoch": 3})
    status, out, err = _run(capsys, "--network", NAME, "--params", ckpt, "--out", tmp_path / "c.pth", "--verify",
                            "--images", photo_paths[0])
    assert status == 0, out + err
    assert "verification passed" in out
    reference = load_torch_model(tmp_path / "c.pth").state_dict()
    status, _, err = _run(capsys, "--network", NAME, "--params", structural, "--out", tmp_path / "s.pth")
    assert status == 0, err
    for key, value in load_torch_model(tmp_path / "s.pth").state_dict().items():
        assert torch.equal(reference[key], value), key


def test_twin_needs_no_mxnet(tmp_path):
    """A host with torch and numpy only (the lent GPU machines have no MXNet): `import convert` registers the
    torch backend, its training engine included, without importing MXNet, and a .pth written here loads, runs and
    detects as it does beside MXNet."""
    from convert import get_torch_model, save_torch_model

    model = get_torch_model("ssd_300_mobilenet0.25_voc").eval()
    path = save_torch_model(model, tmp_path / "twin.pth")
    x = torch.from_numpy(np.random.default_rng(0).normal(0, 1, (1, 3, 300, 300)).astype(np.float32))
    np.save(tmp_path / "x.npy", x.numpy())
    with torch.no_grad():
        np.save(tmp_path / "scores.npy", model(x)[1].numpy())
    code = WITHOUT_MXNET + f"""
import numpy as np, torch
import convert
from gluon_ssd.registry import BACKENDS, ENGINES
assert "torch" in BACKENDS and ENGINES["torch"].__name__ == "TorchEngine"
twin = convert.load_torch_model({str(path)!r})
with torch.no_grad():
    scores = twin(torch.from_numpy(np.load({str(tmp_path / "x.npy")!r})))[1].numpy()
np.testing.assert_array_equal(scores, np.load({str(tmp_path / "scores.npy")!r}))
assert "mxnet" not in sys.modules
print("no mxnet needed")
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "no mxnet needed" in result.stdout, result.stderr[-3000:]
