"""Training data throughput: augmentation plus targets, ours vs GluonCV's, same images, same run.

GluonCV computes SSD targets inside the DataLoader workers (``SSDDefaultTrainTransform`` with anchors).
Ours augments in the workers and computes the targets for the whole batch on the training device
(``gluon_ssd.train.batch_targets``; the CPU here). Both loaders cycle the real photos of
../shared/data/voc_sample (VOC2007 + VOC2012, with their boxes), decoded once up front, so the numbers
are augmentation + targets + batching, not JPEG decoding.

Both run with one OpenMP thread per process and one OpenCV thread (``--threads``): with two workers and
the trainer on two cores, more threads only oversubscribe the cores.

Run: ``.venv/bin/python bench/bench_train_data.py [--workers 2] [--batch-size 32] [--batches 12]``
"""
from __future__ import annotations

import argparse
import functools
import importlib.metadata
import os
import pathlib
import platform
import sys
import time
import xml.etree.ElementTree as ET

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _threads_from_argv(default=1):
    if "--threads" in sys.argv:
        return int(sys.argv[sys.argv.index("--threads") + 1])
    return default


# Before mxnet is imported (gluon_ssd._env would otherwise default it to all cores).
os.environ["OMP_NUM_THREADS"] = str(_threads_from_argv())

import cv2  # noqa: E402
import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402

import gluon_ssd._env  # noqa: E402,F401  (OpenMP threads before mxnet)
from gluon_ssd.data.batchify import batchify_detection  # noqa: E402
from gluon_ssd.data.transforms import SSDDefaultTrainTransform  # noqa: E402
from gluon_ssd.train.target import batch_targets  # noqa: E402
from tests.oracle import import_gluoncv  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "voc_sample" / "VOCdevkit"
CLASSES = ("aeroplane bicycle bird boat bottle bus car cat chair cow diningtable dog horse motorbike person "
           "pottedplant sheep sofa train tvmonitor").split()


def load_voc_sample():
    """Decoded RGB images and (N, 6) labels [x1, y1, x2, y2, class, difficult] of the VOC sample."""
    samples = []
    for year in ("VOC2007", "VOC2012"):
        folder = DATA / year
        for line in (folder / "ImageSets" / "Main" / "test.txt").read_text().split():
            img = cv2.cvtColor(cv2.imread(str(folder / "JPEGImages" / f"{line}.jpg")), cv2.COLOR_BGR2RGB)
            rows = []
            for obj in ET.parse(folder / "Annotations" / f"{line}.xml").findall("object"):
                box = obj.find("bndbox")
                coords = [float(box.find(k).text) - 1 for k in ("xmin", "ymin", "xmax", "ymax")]
                difficult = obj.find("difficult")
                rows.append(coords + [CLASSES.index(obj.find("name").text.strip()),
                                      float(difficult.text) if difficult is not None else 0.0])
            samples.append((img, np.array(rows, dtype=np.float32)))
    return samples


class CycledImages(mx.gluon.data.Dataset):
    """``length`` samples cycling through the decoded images; NDArray images for GluonCV."""

    def __init__(self, samples, length, transform, as_ndarray):
        self._samples, self._length = samples, length
        self._transform, self._as_ndarray = transform, as_ndarray

    def __len__(self):
        return self._length

    def __getitem__(self, idx):
        img, label = self._samples[idx % len(self._samples)]
        if self._as_ndarray:
            img = mx.nd.array(img, dtype=np.uint8)
        return self._transform(img, label)


def anchors_of(gcv, name, size):
    net = gcv.model_zoo.get_model(name, pretrained_base=False)
    net.initialize()
    with mx.autograd.train_mode():
        _, _, anchors = net(mx.nd.zeros((1, 3, size, size)))
    return anchors


def _cpu_seconds(pids):
    """User + system CPU seconds of the given processes so far (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def run(loader, per_batch, batches, warmup):
    """Throughput over ``batches`` batches after ``warmup``; ``per_batch`` runs in the trainer process.

    Returns (samples per second, CPU milliseconds per sample over the trainer and its workers).
    """
    seen, start, cpu0 = 0, None, None
    workers = [p.pid for p in getattr(getattr(loader, "_worker_pool", None), "_pool", [])]
    for i, batch in enumerate(loader):
        if i == warmup:
            start, seen = time.perf_counter(), 0
            cpu0 = time.process_time() + _cpu_seconds(workers)
        per_batch(batch)
        seen += batch[0].shape[0]
        if i + 1 == warmup + batches:
            break
    elapsed = time.perf_counter() - start
    cpu = time.process_time() + _cpu_seconds(workers) - cpu0
    return seen / elapsed, 1000.0 * cpu / seen


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="ssd_512_mobilenet1.0_voc")
    parser.add_argument("--data-shape", type=int, default=512)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each")
    parser.add_argument("--threads", type=int, default=1, help="OpenMP and OpenCV threads per process")
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)  # inherited by the forked workers

    gcv = import_gluoncv()
    from gluoncv.data.batchify import Stack, Tuple
    from gluoncv.data.transforms.presets.ssd import SSDDefaultTrainTransform as GluonCVTrainTransform

    size = args.data_shape
    anchors = anchors_of(gcv, args.network, size)
    samples = load_voc_sample()
    length = (args.batches + args.warmup) * args.batch_size

    def gluoncv_loader():
        dataset = CycledImages(samples, length, GluonCVTrainTransform(size, size, anchors), as_ndarray=True)
        return mx.gluon.data.DataLoader(dataset, args.batch_size, num_workers=args.workers,
                                        batchify_fn=Tuple(Stack(), Stack(), Stack()))

    def our_loader():
        dataset = CycledImages(samples, length, SSDDefaultTrainTransform(size, size, seed=0), as_ndarray=False)
        return mx.gluon.data.DataLoader(dataset, args.batch_size, num_workers=args.workers,
                                        batchify_fn=functools.partial(batchify_detection, shared_memory=True))

    def gluoncv_step(batch):
        batch[1].wait_to_read()
        batch[2].wait_to_read()

    def our_step(batch):
        cls_targets, box_targets = batch_targets(anchors, batch[1])
        cls_targets.wait_to_read()
        box_targets.wait_to_read()

    load_before = os.getloadavg()[0]
    results = {"gluoncv": [], "gluon_ssd": []}
    for _ in range(args.repeats):
        results["gluoncv"].append(run(gluoncv_loader(), gluoncv_step, args.batches, args.warmup))
        results["gluon_ssd"].append(run(our_loader(), our_step, args.batches, args.warmup))
    # Best and median run of each (the machine is shared: slow runs are mostly other jobs).
    best = {k: max(r[0] for r in v) for k, v in results.items()}
    median = {k: float(np.median([r[0] for r in v])) for k, v in results.items()}
    cpu = {k: min(r[1] for r in v) for k, v in results.items()}

    print(f"# SSD training data: {args.network} at {size}, batch {args.batch_size}, {args.workers} workers, "
          f"{args.batches} timed batches after {args.warmup}, {args.repeats} alternating runs each")
    print(f"# {platform.machine()}, {os.cpu_count()} cores, {args.threads} OpenMP/OpenCV thread(s) per process, "
          f"mxnet {mx.__version__}, gluoncv {importlib.metadata.version('gluoncv')}, opencv {cv2.__version__}; "
          f"1-min load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print("| pipeline | best samples/s | median samples/s | ratio (best) | ratio (median) "
          "| CPU ms/sample, trainer + workers | CPU ratio |")
    print("|---|---|---|---|---|---|---|")
    for key, label in (("gluoncv", "gluoncv: SSDDefaultTrainTransform(anchors) in workers"),
                       ("gluon_ssd", "gluon_ssd: transform in workers + batch_targets in trainer")):
        print(f"| {label} | {best[key]:.1f} | {median[key]:.1f} | {best[key] / best['gluoncv']:.2f}x "
              f"| {median[key] / median['gluoncv']:.2f}x | {cpu[key]:.1f} | {cpu['gluoncv'] / cpu[key]:.2f}x |")
    print("all runs (samples/s):", {k: [round(r[0], 1) for r in v] for k, v in results.items()})

if __name__ == "__main__":
    main()
