"""Benchmark the data layer against GluonCV, measured in the same run.

Rows (ours vs gluoncv 0.10.5 on the same inputs):
1. VOC reader construction (parse the XMLs of shared/data/voc_sample, both years).
2. VOC item loading: decode every image and return its label.
3. COCO reader construction on tinycoco instances_train2017.
4. batchify of B transformed samples (3x300x300 float32 + padded labels) vs Tuple(Stack(), Pad(-1)).
5. Synthetic writer: images per second (no reference; the ratio column is empty).

Usage: python bench/bench_data.py [--repeat 5] [--batch-size 32] [--synthetic 1000]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import gluon_ssd._env  # noqa: E402,F401  (before mxnet)
from gluon_ssd.data import COCODetection, VOCDetection, batchify_detection, write_synthetic_dataset  # noqa: E402
from tests.oracle import import_gluoncv  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data")
VOC_ROOT = os.path.join(DATA, "voc_sample", "VOCdevkit")
TINYCOCO = os.path.join(DATA, "coco_sample", "tinycoco")
SPLITS = ((2007, "test"), (2012, "test"))


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def load_all(ds):
    """Decode every image of ``ds``."""
    for i in range(len(ds)):
        img, _ = ds[i]
        img.wait_to_read()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--synthetic", type=int, default=1000)
    a = p.parse_args()
    import mxnet as mx

    gcv = import_gluoncv()
    rows = []

    rows.append(("VOC reader construction (50 XMLs)",
                 best_of(lambda: VOCDetection(VOC_ROOT, SPLITS), a.repeat),
                 best_of(lambda: gcv.data.VOCDetection(VOC_ROOT, SPLITS), a.repeat)))
    ours, ref = VOCDetection(VOC_ROOT, SPLITS), gcv.data.VOCDetection(VOC_ROOT, SPLITS)
    rows.append(("VOC decode 50 images + labels", best_of(lambda: load_all(ours), a.repeat),
                 best_of(lambda: load_all(ref), a.repeat)))

    with tempfile.TemporaryDirectory() as tmp:
        os.symlink(os.path.join(TINYCOCO, "annotations"), os.path.join(tmp, "annotations"))
        os.symlink(os.path.join(TINYCOCO, "images", "train2017"), os.path.join(tmp, "val2017"))
        rows.append((
            "COCO reader construction (tinycoco, 32 images)",
            best_of(lambda: COCODetection(TINYCOCO, "instances_train2017", image_dir="images/train2017",
                                          use_crowd=True), a.repeat),
            best_of(lambda: gcv.data.COCODetection(tmp, "instances_train2017"), a.repeat),
        ))

    rng = np.random.default_rng(0)
    samples = [(mx.nd.array(rng.standard_normal((3, 300, 300)), dtype="float32"),
                rng.uniform(0, 300, (int(rng.integers(1, 20)), 6)).astype(np.float32))
               for _ in range(a.batch_size)]
    ref_batchify = gcv.data.batchify.Tuple(gcv.data.batchify.Stack(), gcv.data.batchify.Pad(pad_val=-1))

    def run(fn):
        fn(samples)
        mx.nd.waitall()

    rows.append((f"batchify {a.batch_size} x (3x300x300, labels)",
                 best_of(lambda: run(batchify_detection), a.repeat),
                 best_of(lambda: run(ref_batchify), a.repeat)))

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        write_synthetic_dataset(tmp, a.synthetic, 0, seed=0, progress=False)
        synth = time.perf_counter() - t

    print(f"# machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
          f"mxnet {mx.__version__}, gluoncv {gcv.__version__}; best of {a.repeat}")
    print(f"| {'case':<46} | {'ours (ms)':>10} | {'gluoncv (ms)':>12} | {'gluoncv/ours':>12} |")
    print(f"|{'-' * 48}|{'-' * 12}|{'-' * 14}|{'-' * 14}|")
    for name, t_ours, t_ref in rows:
        print(f"| {name:<46} | {t_ours * 1e3:>10.2f} | {t_ref * 1e3:>12.2f} | {t_ref / t_ours:>12.2f} |")
    print(f"| {'synthetic writer, %d images' % a.synthetic:<46} | {synth * 1e3:>10.0f} | {'-':>12} | "
          f"{'-':>12} |  ({a.synthetic / synth:.0f} images/s)")


if __name__ == "__main__":
    main()
