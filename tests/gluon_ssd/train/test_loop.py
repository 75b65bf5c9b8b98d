"""train_ssd.py and the training loop: multi-device equality, resume after SIGKILL, atomic checkpoints,
NaN handling, bad arguments, GluonCV's output files."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import mxnet as mx
import numpy as np
import pytest

from gluon_ssd.train import checkpoint as ckpt
from gluon_ssd.train.loop import TrainingError
from gluon_ssd.train.run import resolve_model_name
from gluon_ssd.train.schedule import learning_rate
from tests.helpers import ROOT, assert_same_steps, running_beside, sigkill_in_epoch, vgg_train_config

TRAIN = str(ROOT / "train_ssd.py")


@pytest.fixture(scope="module")
def tiny_dataset(tiny_train_dataset):
    """A small synthetic VOC-format dataset (12 train, 4 val images; tests/conftest.py)."""
    return tiny_train_dataset


def _run(args, timeout=300, **kwargs):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, TRAIN, *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=kwargs.get("cwd"))


def _common(dataset, prefix, *extra):
    return ["--dataset", "custom", "--dataset-root", dataset, "--gpus", "", "--pretrained-base", "False",
            "--save-prefix", prefix, "-j", "0", "--no-progress", "--log-interval", "1", *extra]


# -- schedule, hand-worked ----------------------------------------------------------------------------
def test_learning_rate_schedules():
    assert learning_rate(0, 0.1, "step", 0.1, (2, 4)) == 0.1
    assert learning_rate(2.0, 0.1, "step", 0.1, (2, 4)) == pytest.approx(0.01)
    assert learning_rate(4.5, 0.1, "step", 0.1, (2, 4)) == pytest.approx(0.001)
    assert learning_rate(0.5, 0.1, "step", warmup_epochs=1) == pytest.approx(0.05)
    assert learning_rate(6, 0.1, "cosine", warmup_epochs=2, total_epochs=10) == pytest.approx(0.05)
    assert learning_rate(10, 0.1, "cosine", total_epochs=10) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="poly"):
        learning_rate(1, 0.1, "poly")


@pytest.mark.parametrize("network, shape, dataset, name", [
    ("vgg16_atrous", 512, "voc", "ssd_512_vgg16_atrous_voc"),         # GluonCV's own naming
    ("resnet50_v1", 384, "coco", "ssd_512_resnet50_v1_coco"),        # no 384 row: the nearest base size
    ("mobilenet1.0", 256, "synthetic", "ssd_512_mobilenet1.0_custom"),  # the 512 architecture at 256
    ("resnet101_v2", 512, "custom", "ssd_512_resnet101_v2_voc"),      # no custom row: a VOC architecture
])
def test_model_names(network, shape, dataset, name):
    assert resolve_model_name(network, shape, dataset) == name


def test_model_names_refused():
    with pytest.raises(TrainingError, match="unknown --network 'vgg19'"):
        resolve_model_name("vgg19", 300, "voc")
    with pytest.raises(TrainingError, match="no mobilenet1.0_lite SSD for the voc dataset"):
        resolve_model_name("mobilenet1.0_lite", 300, "voc")


# -- checkpoints ------------------------------------------------------------------------------------
_WRITER = """
import sys, mxnet as mx
from gluon_ssd import get_model
from gluon_ssd.train import checkpoint as ckpt
net = get_model('ssd_300_mobilenet0.25_voc', pretrained_base=False)
trainer = mx.gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1, 'momentum': 0.9})
w = list(net.collect_params('.*mobilenet0_conv0_weight').values())[0]
i = 0
print('ready', flush=True)
while True:
    w.set_data(mx.nd.full(w.shape, i))  # each write's weights name its epoch: a torn file cannot agree with both
    ckpt.save_checkpoint(sys.argv[1], net, trainer, {'epoch': i, 'batch_in_epoch': 0})
    i += 1
"""


def test_kill_during_checkpoint_write_keeps_the_previous_one(tmp_path):
    path = tmp_path / "run_last.ckpt"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                            cwd=str(ROOT))
    assert proc.stdout.readline().strip() == "ready"
    rng = np.random.default_rng(0)
    deadline = time.time() + 60
    while not path.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the writer died before writing"
    time.sleep(float(rng.uniform(0.2, 0.6)))  # lands at a random point of some write
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = ckpt.load_checkpoint(path)  # complete and readable
    weight = state.params["features.mobilenet0_conv0_weight"].asnumpy()
    np.testing.assert_array_equal(weight, np.full(weight.shape, state.meta["epoch"], np.float32))
    leftovers = [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]
    assert len(leftovers) <= 1  # at most the half-written temp file of the killed write, never the target


def test_damaged_checkpoint_is_refused(tmp_path):
    bad = tmp_path / "x.ckpt"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="not a readable gluon_ssd checkpoint"):
        ckpt.load_checkpoint(bad)


# -- bad arguments -------------------------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["--network", "vgg99"], "unknown --network 'vgg99'"),
    (["--dataset", "voc", "--dataset-root", "/nonexistent/voc"], "no VOC dataset under --dataset-root"),
    (["--dataset", "custom", "--dataset-root", "/nonexistent/custom"], "does not exist"),
    (["--cpu-contexts", "3", "--batch-size", "4"], "does not divide evenly over 3 devices"),
    (["--amp"], "--amp"),
    (["--backend", "nope"], "available training backends are"),
    (["--backend", "torch", "--horovod"], "launch one process per GPU (or CPU worker) with torchrun"),
])
def test_bad_arguments_fail_before_work(tiny_dataset, tmp_path, capsys, args, message):
    """In this process (the exit status of the command itself: the resume and NaN tests below)."""
    import train_ssd

    base = ["--network", "mobilenet0.25", "--data-shape", "300", "--dataset", "custom", "--dataset-root",
            tiny_dataset, "--gpus", "", "--pretrained-base", "False", "--save-prefix", str(tmp_path) + "/"]
    start = time.time()
    code = train_ssd.main(base + args)  # an unexpected exception would end the test here
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err
    assert time.time() - start < 60


# -- the loop itself -----------------------------------------------------------------------------
def _trainer(dataset, tmp_path, **overrides):
    from gluon_ssd.data.transforms import SSDDefaultTrainTransform
    from gluon_ssd.train.loop import SeededAugmentation
    from gluon_ssd.train.run import prepare, training_loop

    cfg = vgg_train_config(dataset, tmp_path, **overrides)
    net, train_ds, _, classes, _, _ = prepare(cfg)
    data = SeededAugmentation(train_ds, SSDDefaultTrainTransform(300, 300), cfg.seed)
    return training_loop(cfg, net, data, None, classes, None), net


@pytest.mark.slow
def test_two_cpu_contexts_equal_one_on_a_bn_free_network(tiny_dataset, vgg_mxnet_two_steps, tmp_path):
    """VGG16-atrous has no BatchNorm: splitting a batch over devices must not change the update."""
    _, net_one, initial, _ = vgg_mxnet_two_steps  # the same configuration as _trainer's, on one context
    two, net_two = _trainer(tiny_dataset, tmp_path / "two", max_iterations=2, cpu_contexts=2)
    two.fit()
    a = {k: p.data().asnumpy() for k, p in net_one._collect_params_with_prefix().items()}
    b = {k: p.list_data()[1].asnumpy() for k, p in net_two._collect_params_with_prefix().items()}
    assert all(np.isfinite(v).all() for v in a.values())
    changed = [k for k in initial if not np.array_equal(initial[k], a[k])]
    assert len(changed) > 10, "the steps did not move the weights: the comparison would prove nothing"
    assert_same_steps(b, a, initial)


def test_loss_falls_on_two_cpu_contexts(tiny_dataset, tmp_path):
    prefix = str(tmp_path) + "/"
    result = _run(_common(tiny_dataset, prefix, "--network", "mobilenet0.25", "--data-shape", "300",
                          "--cpu-contexts", "2", "--batch-size", "4", "--epochs", "6", "--lr", "0.01",
                          "--val-interval", "3", "--save-interval", "3"), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    name = "ssd_300_mobilenet0.25_custom"
    epochs = [json.loads(line) for line in open(prefix + name + "_metrics.jsonl") if '"epoch"' in line]
    losses = [e["loss"] for e in epochs if e["kind"] == "epoch"]
    assert len(losses) == 6 and losses[-1] < 0.8 * losses[0], losses
    # GluonCV's files, plus ours
    files = set(os.listdir(tmp_path))
    assert {name + "_train.log", name + "_last.ckpt", name + "_curves.png", name + "_metrics.jsonl"} <= files
    # GluonCV's epochs (0-based): --val-interval 3 --save-interval 3 validate and save after epochs 0 and 3
    maps = {e["epoch"]: e["map"] for e in epochs if "map" in e}
    assert sorted(maps) == [0, 3], maps
    # GluonCV's best starts at 0: _best.params and _best_map.log only once a mAP is above 0 (this tiny run may
    # not get there)
    best = {name + "_best.params", name + "_best_map.log"}
    assert (best <= files) if max(maps.values()) > 0 else not (best & files), (maps, files)
    assert sorted(f[len(name) + 1:len(name) + 5] for f in files if re.fullmatch(name + r"_\d{4}_[\d.]+\.params", f)) \
        == ["0000", "0003"], files
    log_text = open(prefix + name + "_train.log").read()
    assert "[Epoch 0] Training cost:" in log_text and "[Epoch 3] Validation:" in log_text
    assert "[Epoch 2] Validation:" not in log_text
    assert "mAP=" in log_text


@pytest.mark.slow
def test_resume_after_sigkill_matches_an_uninterrupted_run(tiny_dataset, tmp_path):
    common = ["--network", "mobilenet0.25", "--data-shape", "300", "--batch-size", "4", "--epochs", "3",
              "--lr", "0.01", "--val-interval", "0", "--seed", "11"]
    full, killed = str(tmp_path / "full") + "/", str(tmp_path / "killed") + "/"
    name = "ssd_300_mobilenet0.25_custom"
    # The uninterrupted run goes beside the killed one (killed in the middle of epoch 1, the second) and its
    # resumption.
    with running_beside([sys.executable, TRAIN, *_common(tiny_dataset, full, *common)], tmp_path / "full.txt"):
        sigkill_in_epoch([sys.executable, TRAIN, *_common(tiny_dataset, killed, *common)],
                         killed + name + "_metrics.jsonl")
        ckpt_path = killed + name + "_last.ckpt"
        assert ckpt.load_checkpoint(ckpt_path).meta["epoch"] == 1
        resumed = _run(_common(tiny_dataset, killed, *common, "--resume", ckpt_path))
        assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = ckpt.load_checkpoint(full + name + "_last.ckpt")
    b = ckpt.load_checkpoint(ckpt_path)
    assert a.meta["epoch"] == b.meta["epoch"] == 3
    for key, value in a.params.items():
        np.testing.assert_allclose(b.params[key].asnumpy(), value.asnumpy(), rtol=0, atol=1e-6, err_msg=key)


def test_resume_of_another_model_is_refused(tiny_dataset, tmp_path):
    from gluon_ssd import get_model

    net = get_model("ssd_300_mobilenet0.25_voc", pretrained_base=False)
    trainer = mx.gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    path = tmp_path / "other_last.ckpt"
    meta = {"epoch": 1, "batch_in_epoch": 0, "iteration": 3, "best_map": None,
            "model_name": "ssd_300_mobilenet0.25_voc", "classes": ["a"] * 20}
    ckpt.save_checkpoint(path, net, trainer, meta)
    result = _run(_common(tiny_dataset, str(tmp_path) + "/", "--network", "mobilenet0.25", "--data-shape",
                          "300", "--batch-size", "4", "--resume", str(path)))
    assert result.returncode == 2
    assert "ssd_300_mobilenet0.25_voc" in result.stderr and "ssd_300_mobilenet0.25_custom" in result.stderr


@pytest.mark.parametrize("backend", ["mxnet", "torch"])
def test_nan_loss_stops_with_epoch_and_iteration(tiny_dataset, tmp_path, backend):
    prefix = str(tmp_path) + "/"
    result = _run(_common(tiny_dataset, prefix, "--network", "mobilenet0.25", "--data-shape", "300",
                          "--batch-size", "4", "--epochs", "5", "--lr", "1e12", "--val-interval", "0",
                          "--momentum", "0.99", "--backend", backend))
    assert result.returncode == 2, result.stderr[-2000:]
    assert "the loss became" in result.stderr and "at epoch" in result.stderr and "iteration" in result.stderr
    assert "Traceback" not in result.stderr


def test_one_registry_names_each_backends_engine(monkeypatch):
    """A backend registers its engine class beside its detector (gluon_ssd.registry; the twin from convert.backend,
    found without being installed); a backend without an engine is a TrainingError naming those that have one."""
    from gluon_ssd import registry
    from gluon_ssd.train import run
    from gluon_ssd.train.engine import MXNetEngine
    from gluon_ssd.train.loop import TrainingError

    monkeypatch.setitem(registry.BACKENDS, "elsewhere", lambda **kwargs: None)
    with pytest.raises(TrainingError, match="--backend 'elsewhere': available training backends are mxnet, torch"):
        run.engine_class("elsewhere")
    assert run.engine_class("mxnet") is MXNetEngine
    assert run.engine_class("torch").__name__ == "TorchEngine"
    assert registry.BACKENDS["torch"].__name__ == "load_torch_detector" and "torch" in registry.QUANTIZERS
