"""train_ssd.py --backend torch: the twin trained by the loop of MXNet's engine, compared against it.

What can be equal and what cannot, measured (see BENCHMARKS.md, 'Training the twin'):
- VGG16-atrous has no BatchNorm and its float32 gradients are well conditioned: the first steps of the two
  backends agree as closely as two MXNet runs that only sum in another order (tests below).
- With BatchNorm at random init (channels of near-zero batch variance), float32 gradients are ill
  conditioned: MXNet's own float32 gradient of the first batch is far from its float64 gradient. So the
  BatchNorm models are compared where the arithmetic is exact enough to tell a bug from rounding: in
  float64, MXNet and the twin give the same gradient.
"""
import json
import os
import re
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
import torch

from convert.nn.ssd import get_torch_model
from convert.train.engine import load_checkpoint
from convert.weights.mapping import gluon_to_torch, key_map
from gluon_ssd.train.loop import SeededAugmentation
from tests.helpers import (
    ROOT,
    WITHOUT_MXNET,
    assert_same_steps,
    free_port,
    running_beside,
    sigkill_in_epoch,
    train_in_process,
    vgg_train_config,
)

TRAIN = str(ROOT / "train_ssd.py")


@pytest.fixture(scope="module")
def tiny_dataset(tiny_train_dataset):
    return tiny_train_dataset  # 12 train, 4 val synthetic images (tests/conftest.py)


@pytest.mark.parametrize("backend, overrides, message", [
    ("torch", {"gpus": "0,1"}, "one GPU per process: run torchrun"),
    ("torch", {"kvstore": "dist_sync"}, "launch one process per GPU (or CPU worker) with torchrun"),
    ("torch", {"cpu_contexts": 2}, "torchrun --nproc-per-node N"),
    ("torch", {"amp": True, "amp_dtype": "fp16"}, "fp16 needs a CUDA GPU"),
    ("torch", {"amp_dtype": "bf16"}, "needs --amp"),
    ("mxnet", {"channels_last": True}, "options of --backend torch"),
    ("mxnet", {"amp": True, "amp_dtype": "bf16", "gpus": ""}, "--amp"),
])
def test_backend_options_are_checked_before_any_work(tiny_dataset, backend, overrides, message):
    """(train_ssd.py maps TrainingError to one line on stderr and exit 2: tests/gluon_ssd/train/test_loop.py walks
    that.)"""
    from gluon_ssd.train.loop import TrainingError
    from gluon_ssd.train.run import prepare

    with pytest.raises(TrainingError, match=re.escape(message)):
        prepare(vgg_train_config(tiny_dataset, "/nonexistent/prefix", backend, **overrides))


def _torch_as_gluon(loop):
    """The twin's weights under gluon keys (fix_gamma gammas, which MXNet ignores, left out)."""
    table = key_map(loop.engine.model)
    state = loop.engine.model.state_dict()
    return {g: state[t].detach().cpu().numpy() for t, g in table.items() if not t.endswith("running_mean")
            and not t.endswith("running_var")}


@pytest.fixture(scope="module")
def vgg_two_steps(vgg_mxnet_two_steps, tiny_dataset, tmp_path_factory):
    """Two SGD steps of the BN-free VGG16-atrous SSD on each backend, same seed and data."""
    folder = tmp_path_factory.mktemp("vgg_two_steps")
    return {"mxnet": vgg_mxnet_two_steps,
            "torch": train_in_process(vgg_train_config(tiny_dataset, folder / "torch", "torch", max_iterations=2))}


@pytest.mark.slow
def test_torch_backend_starts_from_the_mxnet_weights_and_takes_the_same_steps(vgg_two_steps):
    mx_trainer, mx_net, initial, mx_losses = vgg_two_steps["mxnet"]
    torch_trainer, _, torch_initial, torch_losses = vgg_two_steps["torch"]
    # Same start: the same --seed initializes the same gluon net, which the torch backend converts.
    for key, value in initial.items():
        np.testing.assert_array_equal(torch_initial[key], value, err_msg=key)
    # Same steps: per-iteration losses (each the sum of ~1e5 float32 terms, measured 1.2e-7 and 8.4e-7
    # relative) and the weights after the two steps (momentum enters the second), held to the bound of two
    # MXNet runs that differ only in summation order (tests/helpers.assert_same_steps).
    assert len(mx_losses) == len(torch_losses) == 2
    np.testing.assert_allclose(torch_losses, mx_losses, rtol=1e-5)
    after_mx = {k: p.data().asnumpy() for k, p in mx_net._collect_params_with_prefix().items()}
    after_torch = _torch_as_gluon(torch_trainer)
    keys = sorted(after_torch)
    assert len(keys) > 30 and set(keys) <= set(after_mx)
    assert_same_steps({k: after_torch[k] for k in keys}, {k: after_mx[k] for k in keys},
                      {k: initial[k] for k in keys})


def test_batchnorm_trains_as_mxnet():
    """Training-mode BatchNorm of the twin vs MXNet's: outputs, gradients and the running statistics MXNet
    moves with the biased batch variance (torch's own BatchNorm would use the unbiased one)."""
    from convert.nn.layers import BatchNorm2d, FixedGammaBatchNorm2d

    rng = np.random.RandomState(0)
    x = (rng.randn(2, 8, 5, 5) * 3 + 2).astype("float32")
    head = rng.randn(2, 8, 5, 5).astype("float32")
    gamma, beta = (rng.rand(8) + 0.5).astype("float32"), rng.randn(8).astype("float32")
    for fixed in (False, True):
        eps = 1e-3 if fixed else 1e-5
        xm = mx.nd.array(x)
        xm.attach_grad()
        params = [mx.nd.array(gamma), mx.nd.array(beta)]
        for p in params:
            p.attach_grad()
        mean, var = mx.nd.zeros(8), mx.nd.ones(8)
        with mx.autograd.record():
            y = mx.nd.BatchNorm(xm, *params, mean, var, eps=eps, momentum=0.9, fix_gamma=fixed)
        y.backward(mx.nd.array(head))
        layer = FixedGammaBatchNorm2d(8, eps=eps) if fixed else BatchNorm2d(8, eps=eps)
        if not fixed:
            layer.weight.data = torch.from_numpy(gamma)
        layer.bias.data = torch.from_numpy(beta)
        xt = torch.from_numpy(x).requires_grad_()
        layer.train()
        yt = layer(xt)
        yt.backward(torch.from_numpy(head))
        # float32 sums over 50 values per channel: a few ulps of outputs of size ~3
        np.testing.assert_allclose(yt.detach().numpy(), y.asnumpy(), atol=2e-6)
        np.testing.assert_allclose(xt.grad.numpy(), xm.grad.asnumpy(), atol=2e-6)
        np.testing.assert_allclose(layer.bias.grad.numpy(), params[1].grad.asnumpy(), rtol=1e-5, atol=1e-5)
        if not fixed:
            np.testing.assert_allclose(layer.weight.grad.numpy(), params[0].grad.asnumpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(layer.running_mean.numpy(), mean.asnumpy(), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(layer.running_var.numpy(), var.asnumpy(), rtol=1e-6)
        biased = 0.9 + 0.1 * x.transpose(1, 0, 2, 3).reshape(8, -1).var(1)
        np.testing.assert_allclose(var.asnumpy(), biased, rtol=1e-6)  # the oracle's own rule, by hand


@pytest.mark.slow
def test_batchnorm_model_gradient_equals_mxnet_in_float64(tiny_dataset):
    """MobileNet SSD with BatchNorm, one real training batch (data pipeline, targets, loss): the gradient of
    every weight in float64 agrees between MXNet and the twin (measured 1.1e-6 of each tensor's largest
    gradient at most; the float32 gradients of this random-init network are too ill conditioned to compare:
    MXNet's own float32 gradient is 0.83 (median over tensors) of that scale away from its float64 one, the
    twin's 0.02)."""
    from convert.train.loss import SSDLoss
    from gluon_ssd.data.batchify import batchify_detection
    from gluon_ssd.data.transforms import SSDDefaultTrainTransform
    from gluon_ssd.train.loss import SSDMultiBoxLoss
    from gluon_ssd.train.run import prepare
    from gluon_ssd.train.target import batch_targets

    cfg = vgg_train_config(tiny_dataset, "/nonexistent-unused", "mxnet", network="mobilenet0.25")
    net, train_ds, _, classes, _, _ = prepare(cfg)
    data = SeededAugmentation(train_ds, SSDDefaultTrainTransform(300, 300), cfg.seed)
    images, labels = batchify_detection([data[(0, 0)], data[(0, 1)]])
    with mx.autograd.train_mode():
        anchors = net(mx.nd.zeros((1, 3, 300, 300)))[2]
    cls_t, box_t = batch_targets(anchors, labels)
    num_pos = float((cls_t > 0).sum().asscalar())
    model = get_torch_model(cfg.model_name, classes=classes)
    state, _ = gluon_to_torch(model, {k: p.data().asnumpy() for k, p in net._collect_params_with_prefix().items()})
    model.load_state_dict(state)

    net.cast("float64")
    with mx.autograd.record():
        cls_p, box_p, _ = net(images.astype("float64"))
        # the MXNet loss is float32-only; the cast is differentiable and the loss itself is well conditioned
        total, _, _ = SSDMultiBoxLoss()(cls_p.astype("float32"), box_p.astype("float32"), cls_t, box_t, num_pos)
    mx.autograd.backward(total)
    mx_grads = {k: p.grad().asnumpy() for k, p in net._collect_params_with_prefix().items() if p.grad_req != "null"}

    model = model.double().train()
    cls_p, box_p, _ = model(torch.from_numpy(images.asnumpy()).double())
    total_t, _, _ = SSDLoss()(cls_p, box_p, torch.from_numpy(cls_t.asnumpy()).long(),
                              torch.from_numpy(box_t.asnumpy()).double(), num_pos)
    total_t.sum().backward()
    np.testing.assert_allclose(total_t.detach().sum().item(), float(sum(t.sum().asscalar() for t in total)), rtol=1e-6)
    table = key_map(model)
    compared = 0
    for name, param in model.named_parameters():
        ref = mx_grads[table[name]]
        scale = float(np.abs(ref).max())
        err = float(np.abs(param.grad.numpy() - ref).max())
        if scale == 0:  # a head whose anchors were all left out by the mining: no gradient on either side
            assert err < 1e-12, name
            continue
        # the float32 loss on float64 predictions: ~1e-7 relative, amplified through BatchNorm
        assert err <= 1e-5 * scale, f"{table[name]}: {err:.3g} of {scale:.3g}"
        compared += 1
    assert compared > 50


def _cli_run(args, timeout=600):
    return subprocess.run([sys.executable, TRAIN, *args], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, PYTHONUNBUFFERED="1"))


@pytest.mark.slow
def test_torch_run_writes_gluoncv_files_and_resumes_exactly_after_sigkill(tiny_dataset, tmp_path):
    from gluon_ssd import get_model

    name = "ssd_300_mobilenet0.25_custom"
    common = ["--network", "mobilenet0.25", "--data-shape", "300", "--batch-size", "4", "--epochs", "2",
              "--lr", "0.01", "--val-interval", "1", "--save-interval", "2", "--seed", "11", "--backend", "torch",
              "--dataset", "custom", "--dataset-root", tiny_dataset, "--gpus", "", "--pretrained-base", "False",
              "-j", "0", "--no-progress", "--log-interval", "1"]
    full, killed = str(tmp_path / "full") + "/", str(tmp_path / "killed") + "/"
    # The uninterrupted run goes beside the killed one and its resumption.
    with running_beside([sys.executable, TRAIN, *common, "--save-prefix", full], tmp_path / "full_output.txt"):
        sigkill_in_epoch([sys.executable, TRAIN, *common, "--save-prefix", killed], killed + name + "_metrics.jsonl")
        ckpt_path = killed + name + "_last.ckpt"
        assert load_checkpoint(ckpt_path)[1]["epoch"] == 1
        resumed = _cli_run(common + ["--save-prefix", killed, "--resume", ckpt_path])
        assert resumed.returncode == 0, resumed.stderr[-3000:]
    files = set(os.listdir(full))
    assert {name + "_best.params", name + "_best.pth", name + "_train.log", name + "_best_map.log",
            name + "_last.ckpt", name + "_curves.png", name + "_metrics.jsonl"} <= files, files
    # GluonCV's epochs (0-based): --save-interval 2 saves after epoch 0 only; --val-interval 1 validates both
    assert [f for f in files if f.startswith(name + "_0")] == [f for f in files if f.startswith(name + "_0000_")]
    assert any(f.startswith(name + "_0000_") and f.endswith(".params") for f in files)
    log_text = open(full + name + "_train.log").read()
    assert "[Epoch 1] Validation:" in log_text and "mAP=" in log_text

    # The best weights, written through the reverse mapping, load into gluon_ssd (eval_ssd.py --backend
    # mxnet reads them) and detect as the .pth twin does.
    classes = [c.strip() for c in open(os.path.join(tiny_dataset, "classes.txt")) if c.strip()]
    net = get_model(name, pretrained=full + name + "_best.params", classes=classes)
    from convert.weights.mapping import load_torch_model

    twin = load_torch_model(full + name + "_best.pth").eval()
    x = np.random.default_rng(0).normal(0, 1, (1, 3, 300, 300)).astype("float32")
    with mx.autograd.predict_mode():
        scores_mx = net(mx.nd.array(x))[1].asnumpy()
    with torch.no_grad():
        scores_t = twin(torch.from_numpy(x))[1].numpy()
    np.testing.assert_allclose(scores_t, scores_mx, atol=1e-4)

    (a, meta_a), (b, meta_b) = load_checkpoint(full + name + "_last.ckpt"), load_checkpoint(ckpt_path)
    assert meta_a["epoch"] == meta_b["epoch"] == 2
    for key, value in a["model"].items():
        np.testing.assert_allclose(b["model"][key].numpy(), value.numpy(), rtol=0, atol=1e-6, err_msg=key)
    # An MXNet checkpoint is not silently taken for a torch one
    from gluon_ssd.train.loop import TrainingError

    with pytest.raises(TrainingError, match="resume it with --backend"):
        from gluon_ssd.train import checkpoint as mx_ckpt

        mx_net = get_model("ssd_300_mobilenet0.25_voc", pretrained_base=False)
        trainer = mx.gluon.Trainer(mx_net.collect_params(), "sgd", {"learning_rate": 0.1})
        mx_ckpt.save_checkpoint(tmp_path / "mx_last.ckpt", mx_net, trainer, {"epoch": 0})
        load_checkpoint(tmp_path / "mx_last.ckpt")


def _syncbn_worker(rank, world, port, x, head, out_dir):
    import torch.distributed as dist

    from convert.nn.layers import BatchNorm2d

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        layer = BatchNorm2d(x.shape[1])
        layer.sync = True
        layer.train()
        part = slice(rank * len(x) // world, (rank + 1) * len(x) // world)
        xt = torch.from_numpy(x[part]).requires_grad_()
        y = layer(xt)
        y.backward(torch.from_numpy(head[part]))
        np.savez(os.path.join(out_dir, f"r{rank}.npz"), y=y.detach().numpy(), dx=xt.grad.numpy(),
                 dgamma=layer.weight.grad.numpy(), dbeta=layer.bias.grad.numpy(),
                 mean=layer.running_mean.numpy(), var=layer.running_var.numpy())
    finally:
        dist.destroy_process_group()


def test_syncbn_over_two_gloo_processes_equals_one_batch(tmp_path):
    """--syncbn: two processes with half the batch each normalize with the statistics of the whole batch, and
    the gradients (summed over the processes, as DDP gives them with the loss scaled by the world size) are
    those of one process holding the whole batch."""
    from convert.nn.layers import BatchNorm2d

    rng = np.random.RandomState(1)
    x = (rng.randn(4, 6, 5, 5) * 2 + 1).astype("float32")
    head = rng.randn(4, 6, 5, 5).astype("float32")
    torch.multiprocessing.spawn(_syncbn_worker, args=(2, free_port(), x, head, str(tmp_path)), nprocs=2)
    parts = [np.load(tmp_path / f"r{r}.npz") for r in range(2)]
    layer = BatchNorm2d(6)
    layer.train()
    xt = torch.from_numpy(x).requires_grad_()
    y = layer(xt)
    y.backward(torch.from_numpy(head))
    # float32, 100 values per channel, E[x^2] - E[x]^2 in the synced statistics: ~1e-6 relative
    np.testing.assert_allclose(np.concatenate([p["y"] for p in parts]), y.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(np.concatenate([p["dx"] for p in parts]), xt.grad.numpy(), atol=1e-5)
    np.testing.assert_allclose(parts[0]["dgamma"] + parts[1]["dgamma"], layer.weight.grad.numpy(), atol=1e-4)
    np.testing.assert_allclose(parts[0]["dbeta"] + parts[1]["dbeta"], layer.bias.grad.numpy(), atol=1e-4)
    for p in parts:
        np.testing.assert_allclose(p["mean"], layer.running_mean.numpy(), atol=1e-6)
        np.testing.assert_allclose(p["var"], layer.running_var.numpy(), rtol=1e-5)


@pytest.mark.slow
def test_bf16_autocast_with_channels_last_trains(tiny_dataset, tmp_path):
    """--amp (bf16 autocast on the CPU) with --channels-last: finite losses close to the float32 run's first
    loss (bf16 keeps 8 bits of mantissa: a few percent), and the steps are taken."""
    fp32 = train_in_process(vgg_train_config(tiny_dataset, tmp_path / "fp32", "torch", network="mobilenet0.25",
                                   batch_size=4, max_iterations=3))
    bf16 = train_in_process(vgg_train_config(tiny_dataset, tmp_path / "bf16", "torch", network="mobilenet0.25",
                                   batch_size=4, max_iterations=3, amp=True, channels_last=True))
    assert len(bf16[3]) == 3 and all(np.isfinite(bf16[3]))
    assert abs(bf16[3][0] - fp32[3][0]) <= 0.05 * fp32[3][0], (bf16[3], fp32[3])
    moved = sum(not np.array_equal(v, bf16[2][k]) for k, v in _torch_as_gluon(bf16[0]).items())
    assert moved > 30


def test_reuse_freed_memory_stops_the_page_faults_of_large_blocks():
    """After reuse_freed_memory(), the tensors of a training-like step (blocks of 8-128 MiB alive together, then
    freed) come from memory the previous step freed: glibc's default unmaps each and the kernel faults in fresh
    4 KiB pages every step (about 88 thousand here). The heap settles within a few steps and then stops
    growing. In a fresh process: the setting is process-wide."""
    code = """
import resource, torch
from convert.runtime.inference import reuse_freed_memory
def step():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    held = [torch.ones(n << 20) for n in (16, 8, 32, 8, 4, 16, 2)]
    del held
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
def resident_mib():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 >> 20
step()
default = step()
took = reuse_freed_memory()
settled = [(step(), resident_mib()) for _ in range(10)][-3:]
print(default, took, *[n for pair in settled for n in pair])
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    default, took, *settled = result.stdout.split()
    assert took == "True"
    faults, resident = [int(n) for n in settled[0::2]], [int(n) for n in settled[1::2]]
    # 344 MiB of fresh 4 KiB pages by default (fewer with transparent huge pages, still thousands)
    assert int(default) > 2000 and max(faults) < int(default) / 20, result.stdout
    assert resident[-1] == resident[0], result.stdout  # settled: the heap no longer grows


def test_cuda_training_bench_runs_without_mxnet(tmp_path):
    """bench/bench_train_cuda.py is what the lent GPU machines (torch only, no registries) run: here on the CPU
    with MXNet unimportable, two tiny configurations and a 4-iteration run of the whole trainer. Two CPU runs
    from the same weights and batches give the same losses (the comparison machinery pairs them), and the
    losses are finite."""
    out = tmp_path / "cuda.json"
    code = WITHOUT_MXNET + f"""
sys.path.insert(0, "bench")
import bench_train_cuda
bench_train_cuda.main(["--device", "cpu", "--models", "ssd_300_mobilenet0.25_voc", "--batches", "2",
                       "--iterations", "1", "--warmup", "1", "--loss-iterations", "2",
                       "--loss-model", "ssd_300_mobilenet0.25_voc", "--loss-batch", "2", "--trainer-iterations", "4",
                       "--trainer-batch", "2", "--trainer-images", "4", "--trainer-network", "mobilenet0.25",
                       "-j", "1", "--json", {str(out)!r}])
assert "mxnet" not in sys.modules
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = [(r["batch"], r["precision"]) for r in report["throughput"]]
    assert rows == [(2, "fp32 (TF32 convs)"), (2, "bf16 autocast")]
    assert all(r["images_per_s"] > 0 and np.isfinite(r["first_loss"]) for r in report["throughput"])
    losses = report["losses"]
    assert losses["device fp32"] == losses["cpu fp32"] and len(losses["cpu fp32"]) == 2
    np.testing.assert_allclose(losses["device bf16"], losses["cpu fp32"], rtol=0.1)
    trainer = report["trainer"]  # the whole trainer without MXNet: two epochs of 2 batches
    assert trainer["model"] == "ssd_300_mobilenet0.25_custom" and trainer["epochs"] == 2
    assert trainer["samples_per_s"] > 0 and np.isfinite(trainer["last_loss"])
    assert losses["targets"]["positives"] > 0 and losses["targets"]["cls_equal"]
    assert losses["targets"]["box_max_abs_diff"] == 0
