"""Training with --backend torch against --backend mxnet: samples/s, and how closely the losses follow.

    python bench/bench_train_twin.py speed [--network mobilenet1.0] [--data-shape 512] [--batch-size 8]
                                           [--iterations 3] [--rounds 5] [--warmup 2]
    python bench/bench_train_twin.py parity [--network vgg16_atrous] [--data-shape 300] [--iterations 20]
                                            [--float64]

speed: the training step of each backend's engine (targets, forward, loss, backward, SGD update), same model,
batch and synthetic images (read once by the data loader), each variant in its own process, taking turns round
by round (median of the rounds): gluon_ssd fp32 (hybridized static, the reference of the ratio column), twin
fp32, twin channels_last with torch's kernels only and with convert._cpu.kernels (fused BatchNorm + ReLU,
one-pass SGD), twin bf16 autocast + channels_last. Prints the CPU's vector features (bf16 gains need AVX512-BF16
or AMX).

parity: the per-iteration training loss of the first N iterations (batch 2, lr 0.001, seed 5) of the torch
backend against the MXNet backend, beside the same comparison for the MXNet backend with the batch split over
two CPU contexts (same arithmetic, another summation order): how far two float32 runs of one recipe drift; then
the weights after the steps. With --float64 the networks, the losses, the gradients and the SGD updates run in float64
(the same float32 targets): what is left of the drift when the arithmetic rounds to 1e-16 instead of 6e-8.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import gluon_ssd._env  # noqa: E402,F401,I001  (all cores for OpenMP, as the CLIs do; before mxnet loads)
import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402

import convert  # noqa: E402,F401  (registers the torch backend)
from gluon_ssd import cpu  # noqa: E402
from gluon_ssd.data.transforms import SSDDefaultTrainTransform  # noqa: E402
from gluon_ssd.train.config import TrainConfig  # noqa: E402
from gluon_ssd.train.loop import EpochBatchSampler, SeededAugmentation  # noqa: E402
from gluon_ssd.train.run import prepare, training_loop  # noqa: E402


def _dataset(folder, count):
    from gluon_ssd.data.synthetic import write_synthetic_dataset

    write_synthetic_dataset(folder, count, 0, seed=0, progress=False)
    return folder


def _trainer(root, prefix, backend, **kw):
    cfg = TrainConfig(dataset="custom", dataset_root=root, gpus="", epochs=1000, wd=0.0005, pretrained_base="False",
                      save_prefix=prefix + "/", progress=False, log_interval=0, val_interval=0, backend=backend,
                      **kw)
    net, train_ds, _, classes, _, _ = prepare(cfg)
    data = SeededAugmentation(train_ds, SSDDefaultTrainTransform(cfg.data_shape, cfg.data_shape), cfg.seed)
    return training_loop(cfg, net, data, None, classes, None)


# (label, backend, trainer options, environment): "torch's kernels" switches convert._cpu.kernels off
VARIANTS = [("gluon_ssd fp32", "mxnet", {}, {}), ("twin fp32", "torch", {}, {}),
            ("twin channels_last, torch's kernels", "torch", {"channels_last": True}, {"GLUON_SSD_CPU_KERNELS": "0"}),
            ("twin channels_last", "torch", {"channels_last": True}, {}),
            ("twin bf16 + channels_last", "torch", {"amp": True, "channels_last": True}, {})]


def _worker(args, root, tmp, index):
    """One variant in this process: set up, warm up, then time the batches each time the parent writes a line."""
    label, backend, extra, _ = VARIANTS[index]
    trainer = _trainer(root, os.path.join(tmp, label.replace(" ", "_")), backend, network=args.network,
                       data_shape=args.data_shape, batch_size=args.batch_size, num_workers=0, **extra)
    trainer.setup()
    engine = trainer.engine
    sampler = EpochBatchSampler(len(trainer.train_data), args.batch_size, 0)
    batches = []  # the same batches in every variant: seeded augmentation, the same sampler
    for images, labels in engine.loader(trainer.train_data, sampler):
        batches.append((images, labels))
        if len(batches) == args.iterations:
            break
    for images, labels in batches[:args.warmup]:  # first-call allocations, oneDNN primitive creation
        engine.step(images, labels)
    mx.nd.waitall()
    print("ready", flush=True)
    for _ in sys.stdin:
        start = time.perf_counter()
        for images, labels in batches:
            engine.step(images, labels)  # returns python floats: each step is complete when it returns
        mx.nd.waitall()
        print(len(batches) * args.batch_size / (time.perf_counter() - start), flush=True)


def speed(args, root, tmp):
    # One process per variant, as users run one backend per process (MXNet and torch in one process slowed
    # the torch steps by 5-40% here), taking turns round by round: this VM's speed drifts by 10-20% over
    # minutes, which one-variant-after-the-other timing would put into the ratios. Each worker is set up and
    # warmed up alone; an idle worker waits on its pipe.
    workers = []
    try:
        for index in range(len(VARIANTS)):
            cmd = [sys.executable, os.path.abspath(__file__), "speed", "--worker", str(index), "--root", root,
                   "--tmp", tmp, "--network", args.network, "--data-shape", str(args.data_shape), "--batch-size",
                   str(args.batch_size), "--iterations", str(args.iterations), "--warmup", str(args.warmup)]
            worker = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                      env=dict(os.environ, **VARIANTS[index][3]))
            if worker.stdout.readline().strip() != "ready":
                raise SystemExit(f"the {VARIANTS[index][0]} worker failed (its error is above)")
            workers.append(worker)
        rates = [[] for _ in VARIANTS]
        for round_ in range(args.rounds):
            for k, worker in enumerate(workers):
                worker.stdin.write("run\n")
                worker.stdin.flush()
                rates[k].append(float(worker.stdout.readline()))
            print(f"round {round_ + 1}/{args.rounds}: " + ", ".join(
                f"{label} {r[-1]:.2f}" for (label, *_), r in zip(VARIANTS, rates)), flush=True)
    finally:
        for worker in workers:
            worker.stdin.close()
            worker.wait()
    medians = [float(np.median(r)) for r in rates]
    print(f"\n{args.network} at {args.data_shape}, batch {args.batch_size}, {args.iterations} steps x {args.rounds} "
          f"rounds (median round), one process per variant; CPU: {cpu.describe()}")
    print("| variant | samples/s | ratio to gluon_ssd fp32 | ratio, round by round (min-max) |\n|---|---|---|---|")
    for (label, *_), rate, r in zip(VARIANTS, medians, rates):
        per_round = np.array(r) / np.array(rates[0])
        print(f"| {label} | {rate:.2f} | {rate / medians[0]:.2f} | {per_round.min():.2f}-{per_round.max():.2f} |")


class _Float64Input(mx.gluon.HybridBlock):
    """The gluon SSD in float64, fed the loader's float32 images."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def hybrid_forward(self, F, x):
        return self.net(F.cast(x, "float64"))


def _in_float64(engine):
    """Make ``engine`` run its steps in float64 once started (the same start: the float32 weights are exact in
    float64); both losses compute in their predictions' precision, the targets are the float32 ones."""
    start = engine.start

    def start_float64():
        start()
        if hasattr(engine, "model"):  # the twin
            engine.model.double()
            engine.forward_model = lambda x: engine.model(x.double())
        else:
            engine.net.cast("float64")
            engine.net = _Float64Input(engine.net)

    engine.start = start_float64


def _weights(engine, gluon_net):
    """The trained weights by gluon key, float64 numpy (the twin's through the converter's key table)."""
    if hasattr(engine, "model"):
        from convert.weights.mapping import key_map

        state = engine.model.state_dict()
        return {g: state[t].double().numpy() for t, g in key_map(engine.model).items()
                if not t.endswith(("running_mean", "running_var"))}
    return {k: p.data().asnumpy().astype(np.float64) for k, p in gluon_net._collect_params_with_prefix().items()}


def parity(args, root, tmp):
    losses, weights = {}, {}
    for tag, backend, extra in (("mxnet", "mxnet", {}), ("mxnet, 2 contexts", "mxnet", {"cpu_contexts": 2}),
                                ("torch", "torch", {})):
        trainer = _trainer(root, os.path.join(tmp, tag.replace(" ", "_").replace(",", "")), backend,
                           network=args.network, data_shape=args.data_shape, batch_size=2, num_workers=0, lr=0.001,
                           seed=5, max_iterations=args.iterations, **extra)
        gluon_net = trainer.engine.net
        if tag == "mxnet":
            initial = _weights(trainer.engine, gluon_net)  # before the steps
        if args.float64:
            _in_float64(trainer.engine)
        trainer.fit()
        losses[tag] = np.array([json.loads(line)["loss"] for line in open(trainer.prefix + "_metrics.jsonl")
                                if json.loads(line)["kind"] == "iteration"])
        weights[tag] = _weights(trainer.engine, gluon_net)
    ref = losses["mxnet"]
    precision = "float64" if args.float64 else "float32"
    print(f"\n{args.network} at {args.data_shape}, batch 2, lr 0.001, {precision}; CPU: {cpu.describe()}")
    print("| iteration | " + " | ".join(str(i) for i in range(len(ref))) + " |")
    print("|---" * (len(ref) + 1) + "|")
    print("| mxnet loss | " + " | ".join(f"{v:.3f}" for v in ref) + " |")
    for tag in ("mxnet, 2 contexts", "torch"):
        rel = np.abs(losses[tag] - ref) / np.abs(ref)
        print(f"| {tag}: relative difference | " + " | ".join(f"{v:.1e}" for v in rel) + " |")
    for tag in ("mxnet, 2 contexts", "torch"):
        rel = np.abs(losses[tag] - ref) / np.abs(ref)
        print(f"{tag}: max relative difference {rel.max():.2e}, first 2 iterations {rel[:2].max():.1e}")
    # Weights after the steps: each tensor's largest difference from MXNet's, relative to the tensor's largest
    # weight and to its largest update.
    for tag in ("mxnet, 2 contexts", "torch"):
        of_weight, of_update = [], []
        for key, theirs in weights[tag].items():
            mine = weights["mxnet"][key]
            err = float(np.abs(theirs - mine).max())
            of_weight.append(err / max(float(np.abs(mine).max()), 1e-30))
            of_update.append(err / max(float(np.abs(mine - initial[key]).max()), 1e-30))
        print(f"{tag}: weights after {len(ref)} steps, {len(of_weight)} tensors: largest difference "
              f"{max(of_weight):.1e} of the tensor's largest weight, {max(of_update):.1e} of its largest update "
              f"(median tensor {np.median(of_update):.1e})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["speed", "parity"])
    parser.add_argument("--network", default=None)
    parser.add_argument("--data-shape", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="speed: rounds of --iterations steps per variant")
    parser.add_argument("--float64", action="store_true",
                        help="parity: networks, losses, gradients and updates in float64")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        return _worker(args, args.root, args.tmp, args.worker)
    is_speed = args.mode == "speed"
    args.network = args.network or ("mobilenet1.0" if is_speed else "vgg16_atrous")
    args.data_shape = args.data_shape or (512 if is_speed else 300)
    args.iterations = args.iterations or (3 if is_speed else 20)
    tmp = tempfile.mkdtemp(prefix="bench_train_twin_")
    try:
        root = _dataset(os.path.join(tmp, "data"), 64 if is_speed else 12)
        (speed if is_speed else parity)(args, root, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
