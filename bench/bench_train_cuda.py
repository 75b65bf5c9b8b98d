"""Training the PyTorch twin on a CUDA GPU, with torch alone (the lent GPU machines have no MXNet).

    python bench/bench_train_cuda.py [--models ssd_300_vgg16_atrous_voc,ssd_512_resnet50_v1_voc]
                                     [--batches 32,64] [--iterations 100] [--warmup 15] [--loss-iterations 10]
                                     [--loss-model ssd_300_vgg16_atrous_voc] [--loss-batch 8] [--device cuda]
                                     [--compile] [--trainer-iterations 200] [--trainer-batch 32]
                                     [--trainer-network vgg16_atrous] [--trainer-data-shape 300] [-j 8]
                                     [--json results.json]

Throughput: images/s of the training step of ``train_ssd.py --backend torch`` (convert.train.target.batch_targets on
the device, :func:`convert.train.loss.train_step`: forward, SSDLoss with hard negative mining, backward, MXNet's
SGD update), channels_last, for each model x batch x precision: fp32 (torch's default, which lets cuDNN
convolutions use TF32) and bf16 autocast. The batches are synthetic (filled rectangles on noise, 1-6 boxes per
image, four batches cycled), the weights the twin's random initialization; every step ends with its losses on the
host, as the trainer's does.

The whole trainer: ``train_ssd.py --backend torch --amp --channels-last`` (bf16) for about
``--trainer-iterations`` iterations (whole epochs) on the synthetic VOC-format dataset (written first,
``--trainer-images`` images), with ``-j`` data workers: the training samples/s of its metrics.jsonl epochs after
the first, data loading, augmentation and targets included. It needs what the trainer needs without MXNet:
opencv-python, tqdm, matplotlib (skipped, and said so, where they are missing).

Losses: the first ``--loss-iterations`` iterations of ``--loss-model`` at ``--loss-batch`` from the same weights and
batches on the CPU (float32) and on the device (float32 with TF32 off, and bf16 autocast): their relative
differences per iteration; and the training targets of the first batch on the device against the CPU's.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from convert.nn.ssd import get_torch_model  # noqa: E402
from convert.train.loss import SSDLoss, train_step  # noqa: E402
from convert.train.optim import MXNetSGD  # noqa: E402
from convert.train.target import batch_targets  # noqa: E402


def synthetic_batches(count: int, batch: int, size: int, seed: int = 0):
    """``count`` (images (B, 3, size, size) float32, labels (B, 6, 5)) pairs on the CPU, reproducible."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        images = rng.normal(0, 0.5, (batch, 3, size, size)).astype(np.float32)
        labels = np.full((batch, 6, 5), -1, np.float32)
        for b in range(batch):
            for k in range(int(rng.integers(1, 7))):
                w, h = rng.uniform(0.1, 0.6, 2) * size
                x1, y1 = rng.uniform(0, size - w), rng.uniform(0, size - h)
                cls = int(rng.integers(0, 20))
                labels[b, k] = (x1, y1, x1 + w, y1 + h, cls)
                images[b, :, int(y1):int(y1 + h), int(x1):int(x1 + w)] = np.linspace(-1, 1, 20)[cls]
        out.append((torch.from_numpy(images), torch.from_numpy(labels)))
    return out


class Run:
    """One model on one device: the twin in training mode, its anchors, loss and optimizer."""

    def __init__(self, name, device, state=None, amp_dtype=None, compile_=False):
        self.model = get_torch_model(name)
        if state is not None:
            self.model.load_state_dict(state)
        self.device, self.amp_dtype = torch.device(device), amp_dtype
        self.model = self.model.to(self.device, memory_format=torch.channels_last).eval()
        self.size = self.model.spec.base_size
        with torch.no_grad():  # the anchors depend on the input size only
            self.anchors = self.model.raw(torch.zeros(1, 3, self.size, self.size, device=self.device))[2]
        self.model.train()
        self.loss = SSDLoss()
        self.optimizer = MXNetSGD(self.model.parameters(), lr=0.001, momentum=0.9, wd=0.0005)
        self.network = torch.compile(self.model) if compile_ else self.model

    def step(self, images, labels):
        x = images.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        cls_t, box_t = batch_targets(self.anchors, labels.to(self.device, non_blocking=True))
        num_pos = float((cls_t > 0).sum().item())
        losses = train_step(self.network, self.loss, self.optimizer, x, cls_t, box_t, num_pos, self.amp_dtype)
        return losses.double().cpu().tolist()


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def throughput(args):
    rows = []
    for name in args.models.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            for label, dtype in (("fp32 (TF32 convs)", None), ("bf16 autocast", torch.bfloat16)):
                torch.manual_seed(0)
                run = Run(name, args.device, amp_dtype=dtype, compile_=args.compile)
                data = synthetic_batches(4, batch, run.size)
                if torch.device(args.device).type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                for i in range(args.warmup):
                    run.step(*data[i % 4])
                _sync(args.device)
                start = time.perf_counter()
                first = last = None
                for i in range(args.iterations):
                    losses = run.step(*data[i % 4])
                    first = first or losses
                    last = losses
                _sync(args.device)
                seconds = time.perf_counter() - start
                peak = (torch.cuda.max_memory_allocated() / 2**30 if torch.device(args.device).type == "cuda"
                        else float("nan"))
                rows.append({"model": name, "batch": batch, "precision": label, "images_per_s":
                             args.iterations * batch / seconds, "peak_gib": peak, "first_loss": first[0],
                             "last_loss": last[0], "iterations": args.warmup + args.iterations})
                print(f"{name} batch {batch} {label}: {rows[-1]['images_per_s']:.1f} images/s, peak {peak:.1f} GiB, "
                      f"loss {first[0]:.3f} -> {last[0]:.3f}", flush=True)
                del run
                if torch.device(args.device).type == "cuda":
                    torch.cuda.empty_cache()
    return rows


def trainer_throughput(args) -> dict:
    """samples/s of the whole ``--backend torch`` trainer on the synthetic dataset (see the module docstring)."""
    import tempfile

    try:
        import cv2  # noqa: F401
        import matplotlib  # noqa: F401
        import tqdm  # noqa: F401
    except ImportError as err:
        print(f"trainer: skipped ({err})", flush=True)
        return {"skipped": str(err)}
    from gluon_ssd.train.config import TrainConfig
    from gluon_ssd.train.run import train

    device = torch.device(args.device)
    gpus = "" if device.type == "cpu" else str(device.index or 0)
    per_epoch = args.trainer_images // args.trainer_batch
    epochs = max(1, round(args.trainer_iterations / per_epoch))  # whole epochs (metrics.jsonl times epochs)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(network=args.trainer_network, data_shape=args.trainer_data_shape,
                          batch_size=args.trainer_batch, dataset="synthetic", dataset_root=os.path.join(tmp, "data"),
                          synthetic_train=args.trainer_images, synthetic_val=4, num_workers=args.workers, gpus=gpus,
                          epochs=epochs, lr=0.001, val_interval=0, save_interval=0, log_interval=0,
                          save_prefix=os.path.join(tmp, "run") + "/", pretrained_base="False", progress=False,
                          backend="torch", amp=True, channels_last=True)
        start = time.perf_counter()
        history = train(cfg)
        seconds = time.perf_counter() - start
    speeds = [h["samples_per_sec"] for h in history[1:]] or [h["samples_per_sec"] for h in history]
    result = {"model": cfg.model_name, "batch": args.trainer_batch, "workers": args.workers,
              "iterations": epochs * per_epoch, "epochs": len(history), "seconds_with_dataset": seconds,
              "samples_per_s": float(np.median(speeds)), "epoch_samples_per_s": [h["samples_per_sec"] for h in history],
              "last_loss": history[-1]["loss"]}
    print(f"trainer {cfg.model_name} batch {args.trainer_batch}, -j {args.workers}, bf16: "
          f"{result['samples_per_s']:.1f} samples/s (median of epochs after the first)", flush=True)
    return result


def loss_parity(args):
    name = args.loss_model
    torch.manual_seed(0)
    model = get_torch_model(name)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    data = synthetic_batches(args.loss_iterations, args.loss_batch, model.spec.base_size, seed=1)
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        series = {}
        for label, device, dtype in (("cpu fp32", "cpu", None), ("device fp32", args.device, None),
                                     ("device bf16", args.device, torch.bfloat16)):
            run = Run(name, device, state=state, amp_dtype=dtype)
            series[label] = [run.step(images, labels)[0] for images, labels in data]
        # The targets of the first batch computed on the device against the CPU's.
        cpu_anchors = Run(name, "cpu", state=state).anchors
        cls_c, box_c = batch_targets(cpu_anchors, data[0][1])
        cls_d, box_d = batch_targets(cpu_anchors.to(args.device), data[0][1])
        series["targets"] = {"positives": int((cls_c > 0).sum()), "cls_equal": bool(torch.equal(cls_c, cls_d.cpu())),
                             "box_max_abs_diff": float((box_c - box_d.cpu()).abs().max())}
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    return series


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="ssd_300_vgg16_atrous_voc,ssd_512_resnet50_v1_voc")
    parser.add_argument("--batches", default="32,64")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=15)
    parser.add_argument("--loss-iterations", type=int, default=10)
    parser.add_argument("--loss-model", default="ssd_300_vgg16_atrous_voc")
    parser.add_argument("--loss-batch", type=int, default=8)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network")
    parser.add_argument("--trainer-iterations", type=int, default=200, help="0 skips the whole-trainer run")
    parser.add_argument("--trainer-batch", type=int, default=32)
    parser.add_argument("--trainer-images", type=int, default=640, help="synthetic training images (an epoch)")
    parser.add_argument("--trainer-network", default="vgg16_atrous")
    parser.add_argument("--trainer-data-shape", type=int, default=300)
    parser.add_argument("-j", "--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--json", default="", help="also write the results to this file")
    args = parser.parse_args(argv)
    if torch.device(args.device).type == "cuda":
        if not torch.cuda.is_available():
            sys.exit("bench_train_cuda.py: this torch sees no CUDA GPU (--device cpu runs it on the CPU)")
        torch.backends.cudnn.benchmark = True
        where = f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()})"
    else:
        where = f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__} on {where}", flush=True)
    rows = throughput(args)
    series = loss_parity(args) if args.loss_iterations else {}
    trainer = trainer_throughput(args) if args.trainer_iterations else {}
    print(f"\n{where}, torch {torch.__version__}, channels_last, {args.iterations} timed steps after {args.warmup}")
    print("| model | batch | precision | images/s | peak GiB |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['batch']} | {r['precision']} | {r['images_per_s']:.1f} | {r['peak_gib']:.1f} |")
    if series:
        print(f"\ntargets of the first loss batch, {args.device} vs cpu: {series['targets']}")
        ref = np.array(series["cpu fp32"])
        print("\n| iteration | " + " | ".join(str(i) for i in range(len(ref))) + " |\n" + "|---" * (len(ref) + 1) + "|")
        print("| cpu fp32 loss | " + " | ".join(f"{v:.4f}" for v in ref) + " |")
        for label, values in series.items():
            if label.startswith("device"):
                rel = np.abs(np.array(values) - ref) / np.abs(ref)
                print(f"| {label.replace('device', args.device)}: relative difference | "
                      + " | ".join(f"{v:.1e}" for v in rel) + " |")
    if trainer.get("samples_per_s"):
        print(f"\nwhole trainer ({trainer['model']}, bf16, channels_last, batch {trainer['batch']}, -j "
              f"{trainer['workers']}): {trainer['samples_per_s']:.1f} samples/s over {trainer['iterations']} "
              f"iterations; per epoch {', '.join(f'{v:.0f}' for v in trainer['epoch_samples_per_s'])}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"where": where, "torch": torch.__version__, "throughput": rows, "losses": series,
                       "trainer": trainer}, f, indent=1)


if __name__ == "__main__":
    main()
