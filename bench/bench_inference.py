"""CPU inference images/s: gluon_ssd vs gluoncv, same process, same inputs, hybridized (static_alloc).

    python bench/bench_inference.py [--models ...] [--batches 1 8] [--repeat 5]

Prints a table with the ratio gluon_ssd / gluoncv per model and batch size (goal >= 1.0).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import gluon_ssd._env  # noqa: E402,F401,I001  (all cores for OpenMP, as the CLIs do; before mxnet loads)
import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402

import gluon_ssd  # noqa: E402
from tests.oracle import import_gluoncv  # noqa: E402

MODELS = ["ssd_300_vgg16_atrous_voc", "ssd_512_vgg16_atrous_voc", "ssd_512_resnet50_v1_voc",
          "ssd_512_mobilenet1.0_voc"]


def throughput(net, x, repeat):
    net(x)[0].wait_to_read()  # build and warm up
    net(x)[0].wait_to_read()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        net(x)[0].wait_to_read()
        times.append(time.perf_counter() - start)
    return x.shape[0] / float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    gcv = import_gluoncv()
    threads = os.environ.get('OMP_NUM_THREADS')
    print(f"mxnet {mx.__version__}, OMP_NUM_THREADS={threads}, {os.cpu_count()} cores")
    print(f"{'model':28s} {'batch':>5s} {'gluoncv img/s':>14s} {'gluon_ssd img/s':>16s} {'ratio':>6s}")
    for name in args.models:
        ref = gcv.model_zoo.get_model(name, pretrained_base=False)
        ref.initialize()
        size = int(name.split("_")[1])
        ref(mx.nd.zeros((1, 3, size, size)))
        path = f"/tmp/bench_{name}.params"
        ref.save_parameters(path)
        ours = gluon_ssd.get_model(name, pretrained=path)
        for net in (ref, ours):
            net.hybridize(static_alloc=True, static_shape=True)
        for batch in args.batches:
            x = mx.nd.random.uniform(-2, 2, (batch, 3, size, size))
            # Alternate to share any drift of the machine between the two.
            r1, o1 = throughput(ref, x, args.repeat), throughput(ours, x, args.repeat)
            r2, o2 = throughput(ref, x, args.repeat), throughput(ours, x, args.repeat)
            r, o = max(r1, r2), max(o1, o2)
            print(f"{name:28s} {batch:5d} {r:14.2f} {o:16.2f} {o / r:6.2f}", flush=True)
        os.remove(path)


if __name__ == "__main__":
    main()
