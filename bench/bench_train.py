"""Training images/s: gluon_ssd's loop vs GluonCV's own loop, same model architecture, batch and data.

GluonCV's loop (its train_ssd.py): SSDDefaultTrainTransform *with anchors* in the data workers (targets
made per image in the workers), SSDMultiBoxLoss, Trainer.step(1). Ours: our augmentation in the workers,
targets for the whole batch on the training device, our loss. Both on the real photos of shared/data.

    python bench/bench_train.py [--model ssd_512_mobilenet1.0_voc] [--data-shape 512] [--batch-size 8]
                                [--iterations 12] [--warmup 3] [--workers 2]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import gluon_ssd._env  # noqa: E402,F401,I001  (all cores for OpenMP, as the CLIs do; before mxnet loads)
import mxnet as mx  # noqa: E402
from mxnet import autograd, gluon  # noqa: E402

from tests.oracle import import_gluoncv  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data")


def timed_loop(loader, step, iterations, warmup):
    def forever():
        while True:
            yield from loader

    it = forever()
    for _ in range(warmup):
        step(next(it))
    mx.nd.waitall()
    start = time.perf_counter()
    samples = 0
    for _ in range(iterations):
        samples += step(next(it))
    mx.nd.waitall()
    return samples / (time.perf_counter() - start)


def gluoncv_loop(gcv, name, dataset, shape, batch, workers):
    from gluoncv.data.batchify import Stack, Tuple

    net = gcv.model_zoo.get_model(name, pretrained_base=False)
    net.initialize()
    with autograd.train_mode():
        _, _, anchors = net(mx.nd.zeros((1, 3, shape, shape)))
    transform = gcv.data.transforms.presets.ssd.SSDDefaultTrainTransform(shape, shape, anchors)
    loader = gluon.data.DataLoader(dataset.transform(transform), batch, shuffle=True,
                                   batchify_fn=Tuple(Stack(), Stack(), Stack()), last_batch="rollover",
                                   num_workers=workers, thread_pool=False)
    net.hybridize(static_alloc=True, static_shape=True)
    loss_fn = gcv.loss.SSDMultiBoxLoss()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.001, "wd": 5e-4, "momentum": 0.9})

    def step(b):
        # As GluonCV's script does with split_and_load: the workers' batches live in shared memory.
        x, cls_t, box_t = (a.as_in_context(mx.cpu()) for a in b)
        with autograd.record():
            cls_p, box_p, _ = net(x)
            total, _, _ = loss_fn([cls_p], [box_p], [cls_t], [box_t])
            autograd.backward(total)
        trainer.step(1)
        return b[0].shape[0]

    return loader, step


def gluon_ssd_loop(name, dataset, shape, batch, workers):
    from gluon_ssd import get_model
    from gluon_ssd.data.batchify import batchify_detection
    from gluon_ssd.data.transforms import SSDDefaultTrainTransform
    from gluon_ssd.train.config import TrainConfig
    from gluon_ssd.train.engine import MXNetEngine
    from gluon_ssd.train.loop import EpochBatchSampler, SeededAugmentation

    net = get_model(name, pretrained_base=False)
    cfg = TrainConfig(batch_size=batch, num_workers=workers, gpus="", data_shape=shape, progress=False)
    data = SeededAugmentation(dataset, SSDDefaultTrainTransform(shape, shape), seed=0)
    runner = MXNetEngine(cfg, net, net.classes)
    runner.setup()  # as train_ssd.py: optimizer, anchors, then hybridized with static_alloc
    runner.start()

    class Endless:
        """The epoch sampler, epoch after epoch."""

        def __init__(self):
            self.sampler = EpochBatchSampler(len(data), batch, seed=0)

        def __iter__(self):
            while True:
                yield from self.sampler
                self.sampler.epoch += 1

    loader = gluon.data.DataLoader(data, batch_sampler=Endless(), batchify_fn=batchify_detection,
                                   num_workers=workers, thread_pool=False)

    def step(b):
        runner.step(*b)
        return b[0].shape[0]

    return loader, step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ssd_512_mobilenet1.0_voc")
    parser.add_argument("--data-shape", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    gcv = import_gluoncv()
    from gluon_ssd.data import VOCDetection

    voc = os.path.join(DATA, "voc_sample", "VOCdevkit")
    ours_ds = VOCDetection(voc, splits=((2007, "test"), (2012, "test")))
    theirs_ds = gcv.data.VOCDetection(voc, splits=((2007, "test"), (2012, "test")))
    print(f"{args.model} at {args.data_shape}, batch {args.batch_size}, {args.workers} workers, "
          f"{len(ours_ds)} real VOC photos; {os.cpu_count()} cores")
    results = {}
    for label, build in (("gluoncv", lambda: gluoncv_loop(gcv, args.model, theirs_ds, args.data_shape,
                                                          args.batch_size, args.workers)),
                         ("gluon_ssd", lambda: gluon_ssd_loop(args.model, ours_ds, args.data_shape,
                                                              args.batch_size, args.workers))):
        loader, step = build()
        results[label] = timed_loop(loader, step, args.iterations, args.warmup)
        print(f"  {label:10s} {results[label]:7.2f} samples/s", flush=True)
    print(f"ratio gluon_ssd / gluoncv: {results['gluon_ssd'] / results['gluoncv']:.2f}")


if __name__ == "__main__":
    main()
