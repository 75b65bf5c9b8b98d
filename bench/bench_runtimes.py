"""CPU runtimes: images/s of whole detections (network + decode + NMS, numpy on the host) of every backend and
precision the project ships, beside the runtimes' own recipes (the anchors), same run, same inputs.

    python bench/bench_runtimes.py [--models ...] [--batches 1 8] [--repeat 3] [--json PATH]
                                   [--mxnet-python PATH]

Run it with the PyTorch stack's Python (torch, onnxruntime, openvino, nncf). Rows per model and batch size:
  shipped (each built by the loader or quantizer its CLI flag calls):
    torch fp32 / bf16      load_torch_detector (--backend torch)
    torch|ort int8         quantize_torch_detector: the twin's ONNX Runtime int8 network + the twin's decode + NMS in
                           torch. --backend onnxruntime --dtype int8 loads the same file into the same detector
                           (load_int8_detector), so the two are one row.
    onnxruntime fp32       load_onnxruntime_detector (the detection graph, NMS inside it)
    openvino fp32 / bf16   load_openvino_detector
    openvino int8          quantize_openvino_detector (NNCF, the class heads quantize_heads='auto' keeps float32)
  anchors, made as the runtimes' documentation shows, none of our runtime code: the twin's network ONNX alone
  (no NMS; exported as convert.runtime.quantization exports what it quantizes) in
    anchor ORT fp32        onnxruntime.InferenceSession(onnx)
    anchor OV fp32 / bf16  openvino.Core().compile_model(read_model(onnx), "CPU", {"INFERENCE_PRECISION_HINT": ...})
    anchor OV int8         nncf.quantize(read_model(onnx), nncf.Dataset(photos)) with default parameters, compiled
                           with no config (OpenVINO's CPU default: what is not int8 runs in bf16 where the CPU has it)
  each followed by OUR decode + NMS (the twin's postprocess in torch, as --backend torch runs it), so that whole
  detections are compared. The fp32 anchor is the faster of ORT / OV fp32.
  gluon_ssd fp32           MXNet, hybridized static: MXNet does not install beside nncf, so it runs in a child process
                           (--mxnet-python) before the others, on the same inputs; its calls are not interleaved.
The child process also makes the weights: seeded random (tests.helpers: He-scaled, heads spread as in the parity
tests, so the NMS sees realistic candidate counts), saved as .params and converted for the twin; and the inputs:
the 8 photos of ../shared/data/demo_images that bench_lowp.py uses, preprocessed by GluonCV's transform; every int8
variant calibrates on them. Calls are interleaved (round after round, median of --repeat after a warm-up), so a
slow spell of a shared machine hits every variant alike.

For the VGG and ResNet rows: int8 operations per second achieved (2 x the network's multiply-adds per image, counted
from the twin's Conv2d output shapes: every convolution, including those left float32) against the CPU's int8 peak,
measured in the same run as the best of int8 products: an n^3 matrix product in ONNX Runtime (MatMulInteger, MLAS's
VNNI kernels), torch._int_mm and OpenVINO (its u8 x i8 MatMul and 1x1 Convolution, the kernels its int8 networks
run).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import gluon_ssd._env  # noqa: E402,F401,I001  (all cores for OpenMP, as the CLIs do; before mxnet loads)
import numpy as np  # noqa: E402

from gluon_ssd import cpu  # noqa: E402

MODELS = ["ssd_300_vgg16_atrous_voc", "ssd_512_vgg16_atrous_voc", "ssd_512_resnet50_v1_voc",
          "ssd_512_mobilenet1.0_voc"]
PHOTOS = sorted(glob.glob(os.path.join(os.path.dirname(ROOT), "shared", "data", "demo_images", "*", "*.jpg")))[:8]
SEED = 7  # of the random weights (bench_lowp.py's)
PEAK_SIZE = 4096  # n of the n^3 int8 matrix product that gives the CPU's int8 peak
SHIPPED_FP32 = ("torch fp32", "onnxruntime fp32", "openvino fp32")  # the candidates for the fp32 default
SHIPPED_BF16 = ("torch bf16", "openvino bf16")
SHIPPED_INT8 = ("torch|ort int8", "openvino int8")
ANCHOR_FP32 = ("anchor ORT fp32", "anchor OV fp32")
MXNET = "gluon_ssd fp32"
# Untimed pause before each timed call: a runtime's worker threads keep spinning for a while after its call
# returns (ONNX Runtime's intra-op pool, OpenMP's), and on 2 cores the next variant's threads then wait for them.
# Measured on the 2-core machine (busy with other jobs): the twin's MobileNet-512 image took 0.2 s alone and
# 0.6-1.7 s right after an ONNX Runtime call; after a 0.2 s pause, as alone.
SETTLE = 0.2

Detector = Callable[[np.ndarray], tuple]


def images_per_second(variants: dict[str, Detector], x: np.ndarray, repeat: int) -> dict[str, float]:
    """{label: len(x) / median seconds per call}: two warm-up calls each (the OpenVINO backend compiles for an input
    size the second time it sees it, as a served stream of one size does), then ``repeat`` rounds in which every
    variant is called once, :data:`SETTLE` seconds after the previous call."""
    for fn in variants.values():
        fn(x)
        fn(x)
    seconds: dict[str, list[float]] = {label: [] for label in variants}
    for _ in range(repeat):
        for label, fn in variants.items():
            time.sleep(SETTLE)
            start = time.perf_counter()
            fn(x)
            seconds[label].append(time.perf_counter() - start)
    return {label: len(x) / float(np.median(s)) for label, s in seconds.items()}


def batch_of(photos: np.ndarray, size: int) -> np.ndarray:
    """(size, 3, H, W) float32: the photos repeated to ``size`` images."""
    return np.ascontiguousarray(np.concatenate([photos] * (size // len(photos) + 1))[:size], dtype=np.float32)


# ------------------------------------------------------------------ the MXNet child process
def mxnet_child(args) -> None:
    """In the MXNet process: write ``{model}.params`` (seeded random weights) and ``{model}-photos.npy`` (the
    preprocessed photos, (8, 3, S, S)) into ``args.mxnet_child``, then time gluon_ssd fp32 on them (mxnet.json)."""
    import mxnet as mx  # the MXNet stack only: this runs in the child process

    import gluon_ssd
    from tests.helpers import build_reference, photo_batch, randomize  # need MXNet (the child's stack)
    from tests.oracle import import_gluoncv  # needs MXNet (the child's stack)

    gcv = import_gluoncv()
    speeds = {}
    for name in args.models:
        size = int(name.split("_")[1])
        photos = photo_batch(gcv, PHOTOS, size, size)
        params = os.path.join(args.mxnet_child, f"{name}.params")
        randomize(build_reference(gcv, name), seed=SEED, probe=photos[:2]).save_parameters(params)
        np.save(os.path.join(args.mxnet_child, f"{name}-photos.npy"), photos.asnumpy())
        net = gluon_ssd.get_model(name, pretrained=params)
        net.hybridize(static_alloc=True, static_shape=True)

        def detect(x, net=net):
            return [o.asnumpy() for o in net(mx.nd.array(x))]

        speeds[name] = {str(b): images_per_second({MXNET: detect}, batch_of(photos.asnumpy(), b), args.repeat)[MXNET]
                        for b in args.batches}
    with open(os.path.join(args.mxnet_child, "mxnet.json"), "w", encoding="utf-8") as f:
        json.dump({"mxnet": mx.__version__, "python": platform.python_version(), "speeds": speeds}, f)


def run_mxnet_child(args, folder: str) -> dict:
    """Run :func:`mxnet_child` with ``args.mxnet_python``; its mxnet.json."""
    python = args.mxnet_python or os.path.join(ROOT, ".venv", "bin", "python")
    if not os.path.isfile(python):
        sys.exit(f"no MXNet Python at {python}: pass --mxnet-python (a Python with mxnet 1.9.1 and gluoncv; it makes "
                 "the weights and times gluon_ssd fp32)")
    command = [python, os.path.abspath(__file__), "--mxnet-child", folder, "--models", *args.models,
               "--batches", *map(str, args.batches), "--repeat", str(args.repeat)]
    print(f"gluon_ssd fp32: weights, photos and timing in a child process ({python})", flush=True)
    subprocess.run(command, check=True, cwd=ROOT)
    with open(os.path.join(folder, "mxnet.json"), encoding="utf-8") as f:
        return json.load(f)


# ------------------------------------------------------------------ the PyTorch stack
class TwinPostprocess:
    """The twin's decode + NMS in torch on a runtime's raw (cls_preds, box_preds), as the int8 twin runs it:
    numpy in, numpy ``(ids (B, K), scores (B, K), boxes (B, K, 4))`` out."""

    def __init__(self, model, height: int, width: int):
        import torch  # the PyTorch stack: the MXNet child process never builds this

        self.torch, self.model = torch, model
        with torch.inference_mode():
            self.anchors = model.raw(torch.zeros(1, 3, height, width))[2].float()

    def __call__(self, cls_preds: np.ndarray, box_preds: np.ndarray):
        with self.torch.inference_mode():
            ids, scores, boxes = self.model.postprocess(self.torch.from_numpy(np.asarray(cls_preds)),
                                                        self.torch.from_numpy(np.asarray(box_preds)), self.anchors)
        return ids[..., 0].numpy(), scores[..., 0].numpy(), boxes.numpy()


def shipped(name: str, params: str, photos: np.ndarray, folder: str) -> tuple[dict[str, Detector], str]:
    """The project's detectors of ``params``, each built as its --backend/--dtype builds it; and a line saying which
    class heads the int8 variants kept float32."""
    from convert.backend import load_torch_detector, quantize_torch_detector  # PyTorch stack (see TwinPostprocess)
    from convert.runtime.onnxruntime import load_onnxruntime_detector  # PyTorch stack
    from convert.runtime.openvino import load_openvino_detector, quantize_openvino_detector  # PyTorch stack

    twin32 = load_torch_detector(name, params, dtype="fp32")
    ov32 = load_openvino_detector(name, params, dtype="fp32")
    twin8 = quantize_torch_detector(twin32, [photos], os.path.join(folder, f"{name}-int8.onnx"))
    ov8 = quantize_openvino_detector(ov32, [photos], os.path.join(folder, f"{name}-openvino-int8.onnx"))
    detectors = {"torch fp32": twin32, "onnxruntime fp32": load_onnxruntime_detector(name, params, dtype="fp32"),
                 "openvino fp32": ov32, "torch bf16": load_torch_detector(name, params, dtype="bf16"),
                 "openvino bf16": load_openvino_detector(name, params, dtype="bf16"), "torch|ort int8": twin8,
                 "openvino int8": ov8}
    heads = (f"class heads kept float32: {twin8.meta['float_heads'] or 'none'} (ORT int8), "
             f"{ov8.meta['float_heads'] or 'none'} (OpenVINO int8)")
    return detectors, heads


def anchors(name: str, params: str, photos: np.ndarray, folder: str) -> tuple[dict[str, Detector], int]:
    """The runtimes' documented recipes on the twin's network ONNX, each followed by the twin's decode + NMS; and
    the network's multiply-adds per image (Conv2d only)."""
    import nncf  # optional runtimes: the PyTorch stack has them
    import onnxruntime as ort
    import openvino as ov

    from convert.runtime.quantization import _export_network  # the network without NMS, as the int8 twin's
    from convert.weights.mapping import convert_gluon_file  # PyTorch stack (see TwinPostprocess)

    height, width = photos.shape[-2:]
    model = convert_gluon_file(name, params)[0].eval()
    network = os.path.join(folder, f"{name}-network.onnx")
    _export_network(model, network, height, width)
    post = TwinPostprocess(model, height, width)
    core = ov.Core()
    session = ort.InferenceSession(network, providers=["CPUExecutionProvider"])
    ov32 = core.compile_model(core.read_model(network), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    ov16 = core.compile_model(core.read_model(network), "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})
    quantized = nncf.quantize(core.read_model(network), nncf.Dataset([p[None] for p in photos]))
    ov8 = core.compile_model(quantized, "CPU")

    def in_ov(compiled):
        def detect(x):
            out = compiled(x)
            return post(out[0], out[1])
        return detect

    detectors = {"anchor ORT fp32": lambda x: post(*session.run(None, {"data": x})), "anchor OV fp32": in_ov(ov32),
                 "anchor OV bf16": in_ov(ov16), "anchor OV int8": in_ov(ov8)}
    return detectors, conv_macs(model, height, width)


def conv_macs(model, height: int, width: int) -> int:
    """Multiply-adds of one (1, 3, height, width) image through every Conv2d of the twin ``model``:
    output elements x input channels per group x kernel area (hooks on the modules, one forward pass)."""
    import torch  # PyTorch stack (see TwinPostprocess)

    total = [0]

    def count(module, _inputs, output):
        kh, kw = module.kernel_size
        total[0] += output.numel() * (module.in_channels // module.groups) * kh * kw

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    try:
        with torch.inference_mode():
            model.raw(torch.zeros(1, 3, height, width))
    finally:
        for hook in hooks:
            hook.remove()
    return total[0]


def _openvino_int8(n: int) -> dict[str, tuple[Callable[[], object], int]]:
    """OpenVINO's int8 kernels, built as its low-precision transformations expect them: FakeQuantize (u8 activations,
    i8 weights) in front of a float MatMul (an n x n x n product) and of a 1x1 Convolution (n/4 channels in and out
    over 64 x 64 pixels, the shape of a network's layer); the plugin runs both in u8 x i8 (checked: the compiled
    model's runtime precision). {label: (call, int8 operations per call)}."""
    import openvino as ov  # optional runtimes: the PyTorch stack has them
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)

    def fq(node, lo, hi):
        c = lambda v: ops.constant(np.array(v, dtype=np.float32))  # noqa: E731
        return ops.fake_quantize(node, c(lo), c(hi), c(lo), c(hi), 256)

    channels, pixels = n // 4, 64
    x = ops.parameter([n, n], np.float32, name="x")
    w = ops.constant(rng.integers(-127, 127, (n, n)).astype(np.float32))
    matmul = ov.Model([ops.matmul(fq(x, 0.0, 255.0), fq(w, -128.0, 127.0), False, False)], [x], "matmul")
    image = ops.parameter([1, channels, pixels, pixels], np.float32, name="image")
    kernel = ops.constant(rng.integers(-127, 127, (channels, channels, 1, 1)).astype(np.float32))
    conv = ov.Model([ops.convolution(fq(image, 0.0, 255.0), fq(kernel, -128.0, 127.0), [1, 1], [0, 0], [0, 0],
                                     [1, 1])], [image], "conv1x1")
    calls = {}
    for label, model, shape, ops_per_call in (
            ("openvino int8 MatMul", matmul, (n, n), 2 * n ** 3),
            ("openvino int8 1x1 Convolution", conv, (1, channels, pixels, pixels), 2 * channels ** 2 * pixels ** 2)):
        compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": cpu.runtime_threads(),
                                                          "PERFORMANCE_HINT": "LATENCY"})
        infos = [op.get_rt_info() for op in compiled.get_runtime_model().get_ordered_ops()]
        kinds = {info["runtimePrecision"].astype(str) for info in infos
                 if info["layerType"].astype(str) in ("FullyConnected", "MatMul", "Convolution")}
        if kinds != {"u8"}:
            print(f"int8 peak: {label} did not run in int8 here ({kinds})")
            continue
        request, data = compiled.create_infer_request(), rng.integers(0, 255, shape).astype(np.float32)
        calls[label] = ((lambda request=request, data=data: request.infer({0: data})), ops_per_call)
    return calls


def int8_peak(n: int = PEAK_SIZE, repeat: int = 3) -> dict[str, float]:
    """int8 operations per second (the best of ``repeat`` calls) of int8 products: an n x n x n matrix product in
    ONNX Runtime (MatMulInteger, uint8 x int8 -> int32), torch._int_mm (int8 x int8 -> int32) and OpenVINO (u8 x i8,
    with its 1x1 convolution: :func:`_openvino_int8`)."""
    import onnxruntime as ort  # optional runtimes: the PyTorch stack has them
    import torch  # PyTorch stack (see TwinPostprocess)
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 255, (n, n), dtype=np.uint8), rng.integers(-128, 127, (n, n), dtype=np.int8)
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "matmul",
                              [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n]),
                               helper.make_tensor_value_info("b", TensorProto.INT8, [n, n])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, [n, n])])
    session = ort.InferenceSession(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
                                   .SerializeToString(), providers=["CPUExecutionProvider"])
    ta, tb = torch.from_numpy(a.view(np.int8) // 2), torch.from_numpy(b)
    calls = {"onnxruntime MatMulInteger": (lambda: session.run(None, {"a": a, "b": b}), 2 * n ** 3),
             "torch._int_mm": (lambda: torch._int_mm(ta, tb), 2 * n ** 3), **_openvino_int8(n)}
    peak = {}
    for label, (call, ops_per_call) in calls.items():
        try:
            call()
        except RuntimeError as err:  # torch._int_mm has no CPU kernel in some builds
            print(f"int8 peak: {label} does not run here ({err})")
            continue
        best = min(_seconds(call) for _ in range(repeat))
        peak[label] = ops_per_call / best
    return peak


def _seconds(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def goals(name: str, speeds: dict[str, float], macs: int, peak: float) -> dict[str, float | str]:
    """The goals of issue 27 for one (model, batch) from its images/s: the best shipped int8 / bf16 over the
    OpenVINO anchor, each fp32 default candidate over the faster fp32 anchor (named); for the VGG and ResNet rows
    the int8 op/s of the best shipped int8 and of the anchor (2 x ``macs`` per image), and their share of ``peak``."""
    fp32_anchor = max(ANCHOR_FP32, key=speeds.get)
    out: dict[str, float | str] = {
        "best int8 / anchor OV int8": max(speeds[k] for k in SHIPPED_INT8) / speeds["anchor OV int8"],
        "best bf16 / anchor OV bf16": max(speeds[k] for k in SHIPPED_BF16) / speeds["anchor OV bf16"]}
    out.update({f"{k} / anchor fp32": speeds[k] / speeds[fp32_anchor] for k in SHIPPED_FP32})
    out["fp32 anchor"] = fp32_anchor
    if "mobilenet" not in name:  # the issue asks it of the VGG and ResNet rows (MobileNet is not compute-bound)
        for label in (max(SHIPPED_INT8, key=speeds.get), "anchor OV int8"):
            out[f"{label} Gop/s"] = 2 * macs * speeds[label] / 1e9
            out[f"{label} / int8 peak"] = 2 * macs * speeds[label] / peak
    return out


def anchor_of(label: str) -> str | None:
    """The anchor a row is compared with (None for the anchors themselves and gluon_ssd)."""
    if label in SHIPPED_INT8:
        return "anchor OV int8"
    if label in SHIPPED_BF16:
        return "anchor OV bf16"
    return "anchor fp32" if label in SHIPPED_FP32 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--mxnet-python", help="a Python with MXNet and gluoncv (default: .venv/bin/python of this "
                                               "checkout): makes the weights and times gluon_ssd fp32")
    parser.add_argument("--mxnet-child", help=argparse.SUPPRESS)  # the child process's mode: its output folder
    args = parser.parse_args()
    if args.mxnet_child:
        mxnet_child(args)
        return
    import nncf  # optional runtimes: the PyTorch stack has them
    import onnxruntime as ort
    import openvino as ov
    import torch  # PyTorch stack (see TwinPostprocess)

    with tempfile.TemporaryDirectory() as folder:
        os.environ["GLUON_SSD_CACHE"] = folder  # the runtimes' exported graphs: fresh, and not left in ~/.cache
        child = run_mxnet_child(args, folder)
        versions = {"python": platform.python_version(), "torch": torch.__version__, "onnxruntime": ort.__version__,
                    "openvino": ov.__version__.split("-")[0], "nncf": nncf.__version__, "numpy": np.__version__,
                    "mxnet (child)": f"{child['mxnet']} on Python {child['python']}"}
        print(f"CPU: {cpu.describe()}; {os.cpu_count()} cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; "
              + ", ".join(f"{k} {v}" for k, v in versions.items()) + f"; {len(PHOTOS)} photos (inputs, calibration)")
        peak = int8_peak()
        print("int8 peak: " + ", ".join(f"{k} {v / 1e9:.0f} Gop/s" for k, v in peak.items()), flush=True)
        print(f"{'model':26s} {'batch':>5s} {'variant':18s} {'img/s':>8s} {'x gluon':>7s} {'x anchor':>8s}")
        rows, summary = [], []
        for name in args.models:
            params = os.path.join(folder, f"{name}.params")
            photos = np.load(os.path.join(folder, f"{name}-photos.npy"))
            variants, heads = shipped(name, params, photos, folder)
            anchor_variants, macs = anchors(name, params, photos, folder)
            variants.update(anchor_variants)
            print(f"{name}: {heads}; {2 * macs / 1e9:.2f} GOP per image (2 x Conv2d multiply-adds)", flush=True)
            for batch in args.batches:
                speeds = images_per_second(variants, batch_of(photos, batch), args.repeat)
                speeds[MXNET] = child["speeds"][name][str(batch)]
                speeds["anchor fp32"] = max(speeds[k] for k in ANCHOR_FP32)
                for label, value in speeds.items():
                    if label == "anchor fp32":
                        continue
                    versus = anchor_of(label)
                    print(f"{name:26s} {batch:5d} {label:18s} {value:8.2f} {value / speeds[MXNET]:7.2f} "
                          + (f"{value / speeds[versus]:8.2f}" if versus else f"{'':8s}")
                          + (" (MXNet, child process, not interleaved)" if label == MXNET else ""), flush=True)
                    rows.append({"model": name, "batch": batch, "variant": label, "images_per_s": value,
                                 "x_gluon_ssd_fp32": value / speeds[MXNET],
                                 "x_anchor": value / speeds[versus] if versus else None})
                summary.append({"model": name, "batch": batch, **goals(name, speeds, macs, max(peak.values()))})
        print("goals (>= 1.0; fp32 anchor = the faster of ORT / OV fp32; op/s against the int8 peak above):")
        for entry in summary:
            print(f"{entry['model']:26s} {entry['batch']:5d} " + ", ".join(
                f"{k} {v:.2f}" if isinstance(v, float) else f"{k}: {v}" for k, v in entry.items()
                if k not in ("model", "batch")), flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"cpu": cpu.describe(), "cores": os.cpu_count(), "versions": versions, "photos": PHOTOS,
                       "int8_peak_ops_per_s": peak, "gluon_ssd_fp32": "MXNet, in a child process, not interleaved",
                       "rows": rows, "goals": summary}, f, indent=1)


if __name__ == "__main__":
    main()
