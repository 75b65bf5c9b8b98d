"""Where the OpenVINO backend's time goes: OpenVINO's per-node profile (``PERF_COUNT``) and images/s of the detection
graph as ``--backend openvino`` builds it (fp32, and NNCF int8 calibrated on the photos), compiled with a free batch
(what a first call runs) and for the input's exact shape (what the backend compiles the second time it sees a shape).

Prints per variant: the milliseconds per batch that the profile gives in all, in the decode + NMS (the graph's
top-level nodes, convert.runtime.openvino.POSTPROCESS_PATTERN, and its Loop), in reorders (layout conversions) and in
stand-alone FakeQuantize nodes (int8 quantization not fused into a convolution); then images/s, median of --repeat
interleaved calls. The CPU's vector features are printed first.

Inputs: a folder of ``bench_runtimes.py --mxnet-child DIR`` ({model}.params: seeded random weights; {model}-photos.npy:
the 8 photos, preprocessed), e.g.::

    .venv/bin/python bench/bench_runtimes.py --mxnet-child /tmp/w --models ssd_512_resnet50_v1_voc --batches 1 \
        --repeat 1
    .venv-torch/bin/python bench/profile_openvino.py --folder /tmp/w --model ssd_512_resnet50_v1_voc --batch 8
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import gluon_ssd._env  # noqa: E402,F401,I001  (all cores for OpenMP, as the CLIs do)
import numpy as np  # noqa: E402

from gluon_ssd import cpu  # noqa: E402


def profile(compiled, x: np.ndarray, top: re.Pattern, rounds: int = 3) -> dict[str, float]:
    """Milliseconds per call of one compiled model by OpenVINO's per-node profile, mean of ``rounds`` calls."""
    request = compiled.create_infer_request()
    request.infer({0: x})
    totals = {"all": 0.0, "decode + NMS": 0.0, "Reorder": 0.0, "FakeQuantize": 0.0}
    for _ in range(rounds):
        request.infer({0: x})
        for node in request.get_profiling_info():
            ms = node.real_time.total_seconds() * 1e3 / rounds
            totals["all"] += ms
            if top.match(node.node_name) or node.node_type == "Loop":
                totals["decode + NMS"] += ms
            elif node.node_type in ("Reorder", "FakeQuantize"):
                totals[node.node_type] += ms
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", required=True, help="the output folder of bench_runtimes.py --mxnet-child")
    parser.add_argument("--model", default="ssd_512_resnet50_v1_voc")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    import openvino as ov  # the PyTorch stack has it

    from convert.runtime.openvino import (  # PyTorch stack: the detector is built from the weights
        POSTPROCESS_PATTERN,
        load_openvino_detector,
        quantize_openvino_detector,
    )

    photos = np.load(os.path.join(args.folder, f"{args.model}-photos.npy"))
    x = np.ascontiguousarray(np.concatenate([photos] * (args.batch // len(photos) + 1))[:args.batch])
    print(f"CPU: {cpu.describe()}; {os.cpu_count()} cores; openvino {ov.__version__.split('-')[0]}; {args.model}, "
          f"batch {args.batch}")
    with tempfile.TemporaryDirectory() as folder:
        os.environ["GLUON_SSD_CACHE"] = folder
        fp32 = load_openvino_detector(args.model, os.path.join(args.folder, f"{args.model}.params"), dtype="fp32")
        int8 = quantize_openvino_detector(fp32, [photos], os.path.join(folder, "int8.onnx"))
        core, top = ov.Core(), re.compile(POSTPROCESS_PATTERN)
        variants = {}
        for name, detector in (("fp32", fp32), ("int8", int8)):
            source = fp32.onnx_path if name == "fp32" else int8.files[0]
            for shape in ("free batch", "fixed shape"):
                model = core.read_model(source)
                if shape == "fixed shape":
                    model.reshape({model.inputs[0]: ov.PartialShape(list(x.shape))})
                config = dict(detector.config, PERF_COUNT=True)
                variants[f"{name} {shape}"] = core.compile_model(model, "CPU", config)
        for label, compiled in variants.items():
            ms = profile(compiled, x, top)
            print(f"{label:18s} profile ms per batch: " + ", ".join(f"{k} {v:.1f}" for k, v in ms.items()))
        seconds = {label: [] for label in variants}
        for _ in range(args.repeat):
            for label, compiled in variants.items():
                time.sleep(0.2)
                start = time.perf_counter()
                compiled(x)
                seconds[label].append(time.perf_counter() - start)
        for label, s in seconds.items():
            print(f"{label:18s} {args.batch / float(np.median(s)):.2f} images/s")


if __name__ == "__main__":
    main()
