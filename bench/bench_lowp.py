"""CPU low precision: images/s of whole detections (network + decode + NMS), same run, same inputs.

    python bench/bench_lowp.py [--models ...] [--batches 1 8] [--repeat 5]

Rows per model and batch size:
  gluon_ssd fp32        gluon_ssd's SSD, hybridized static (the reference of the speed-up column)
  gluon_ssd int8        gluon_ssd.quantize, naive calibration, quantize_heads='auto' (the default; which class
                        heads it kept float32 is printed)
  gluon_ssd int8 fheads gluon_ssd.quantize(quantize_heads=False): every class head float32
  GluonCV int8          mxnet's quantize_net on gluoncv's own model, GluonCV's eval_ssd.py call
  twin fp32 / bf16      the PyTorch twin as --backend torch serves it (channels_last, bf16 autocast)
  twin int8             the twin's network in ONNX Runtime int8 (convert.runtime.quantization, quantize_heads='auto'),
                        post-processing in torch
All int8 variants calibrate on the same 8 photos of ../shared/data. Weights are seeded random (He-scaled,
heads spread as in the parity tests), so the NMS sees realistic candidate counts. Prints the CPU's vector
features: int8/bf16 speed-ups depend on VNNI/AMX/AVX512-BF16.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import gluon_ssd._env  # noqa: E402,F401,I001  (all cores for OpenMP, as the CLIs do; before mxnet loads)
import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import gluon_ssd  # noqa: E402
from gluon_ssd import cpu  # noqa: E402
from tests.helpers import build_reference, photo_batch, randomize  # noqa: E402
from tests.oracle import import_gluoncv  # noqa: E402

MODELS = ["ssd_300_vgg16_atrous_voc", "ssd_512_vgg16_atrous_voc", "ssd_512_resnet50_v1_voc",
          "ssd_512_mobilenet1.0_voc"]
DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data")


def _speeds(variants, x, repeat):
    """Images/s of each variant: the median of ``repeat`` calls after a warm-up, the variants' calls interleaved
    (round after round), so that a slow spell of this shared VM hits every variant alike."""
    for _, fn in variants:
        fn(x)  # build, warm up
    times = {label: [] for label, _ in variants}
    for _ in range(repeat):
        for label, fn in variants:
            start = time.perf_counter()
            fn(x)
            times[label].append(time.perf_counter() - start)
    return {label: len(x) / float(np.median(t)) for label, t in times.items()}


def _block(net):
    def run(x):
        out = net(mx.nd.array(x))
        return [o.asnumpy() for o in out]
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    from mxnet.contrib.quantization import quantize_net

    from convert.backend import TorchDetector
    from convert.runtime.quantization import load_int8_detector, quantize_twin
    from convert.weights.mapping import convert_gluon_file

    gcv = import_gluoncv()
    photos = sorted(glob.glob(os.path.join(DATA, "demo_images", "*", "*.jpg")))[:8]
    print(f"CPU: {cpu.describe()}; mxnet {mx.__version__}, torch {torch.__version__}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, {os.cpu_count()} cores; calibration on "
          f"{len(photos)} photos")
    header = f"{'model':26s} {'batch':>5s} {'variant':22s} {'img/s':>8s} {'x fp32':>7s}"
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            size = int(name.split("_")[1])
            calib = photo_batch(gcv, photos, size, size)
            ref = randomize(build_reference(gcv, name), seed=7, probe=calib[:2])
            params = os.path.join(tmp, f"{name}.params")
            ref.save_parameters(params)
            ours = gluon_ssd.get_model(name, pretrained=params)
            ours.hybridize(static_alloc=True, static_shape=True)
            ref.hybridize()
            loader = mx.gluon.data.DataLoader(mx.gluon.data.ArrayDataset(calib, mx.nd.zeros((len(photos), 1))),
                                              batch_size=len(photos))
            theirs8 = quantize_net(ref, quantized_dtype="auto", exclude_layers=[],
                                   exclude_layers_match=["flatten", "concat"], calib_data=loader, calib_mode="naive",
                                   num_calib_examples=len(photos), ctx=mx.cpu())
            ours8 = gluon_ssd.quantize(ours, [calib], calib_mode="naive")
            ours8f = gluon_ssd.quantize(ours, [calib], calib_mode="naive", quantize_heads=False)
            ours.hybridize(static_alloc=True, static_shape=True)
            for block in (theirs8, ours8, ours8f):
                block.hybridize(static_alloc=True, static_shape=True)
            twin, _ = convert_gluon_file(name, params)
            twin32, twin16 = TorchDetector(twin, "cpu", "fp32"), TorchDetector(twin, "cpu", "bf16")
            onnx_path = quantize_twin(twin, [calib.asnumpy()], os.path.join(tmp, f"{name}-int8.onnx"))
            twin8 = load_int8_detector(onnx_path)
            print(f"{name}: quantize_heads='auto' kept float32 the class heads {ours8.float_heads or 'none'} "
                  f"(MXNet; score errors {', '.join(f'{e:.3f}' for e in ours8.head_errors)}) and "
                  f"{twin8.meta['float_heads'] or 'none'} (twin; "
                  f"{', '.join(f'{e:.3f}' for e in twin8.meta['head_errors'])})", flush=True)
            variants = [("gluon_ssd fp32", _block(ours)), ("gluon_ssd int8", _block(ours8)),
                        ("gluon_ssd int8 fheads", _block(ours8f)), ("GluonCV int8", _block(theirs8)),
                        ("twin fp32", twin32), ("twin bf16", twin16), ("twin int8", twin8)]
            for batch in args.batches:
                x = np.concatenate([calib.asnumpy()] * (batch // len(photos) + 1))[:batch]
                speeds = _speeds(variants, x, args.repeat)
                base = speeds["gluon_ssd fp32"]
                for label, value in speeds.items():
                    print(f"{name:26s} {batch:5d} {label:22s} {value:8.2f} {value / base:7.2f}", flush=True)
                print(f"{name:26s} {batch:5d} {'gluon_ssd/GluonCV int8':22s} "
                      f"{speeds['gluon_ssd int8'] / speeds['GluonCV int8']:8.2f} (default) "
                      f"{speeds['gluon_ssd int8 fheads'] / speeds['GluonCV int8']:.2f} (class heads float32)",
                      flush=True)


if __name__ == "__main__":
    main()
