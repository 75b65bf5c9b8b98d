"""Inference throughput of the PyTorch twin against gluon_ssd, and CUDA-vs-CPU parity.

CPU comparison (needs mxnet; same run, interleaved, same weights and inputs):

    python bench/bench_torch_inference.py                       # 4 models, batch 1 and 8
    python bench/bench_torch_inference.py --models ssd_300_vgg16_atrous_voc --batches 1 --repeat 5

It times gluon_ssd hybridized with static_alloc/static_shape and PyTorch variants: ``backend`` (exactly
what ``eval_ssd.py/demo_ssd.py --backend torch`` run: ``convert.runtime.inference.predict`` on the ``prepare``d
model), ``torch`` (eval, inference_mode), ``torch-cl-fused`` (channels_last memory and BatchNorm folded
into the convs), ``torchscript-opt`` (``torch.jit.optimize_for_inference`` of the scripted model: frozen,
oneDNN conv+ReLU fusion) and ``torch-compile`` (``torch.compile``, inductor with freezing; compiled during
the warm-up calls, about 30 s per model and input shape on two cores). On CPU the PyTorch variants take a
batch ``--micro-batch`` images per call (default ``convert.runtime.inference.CPU_MICRO_BATCH``, as ``predict``
does; 0: the whole batch in one call), except ``backend``, which splits as the detector does (the whole
batch, since it reuses freed memory). Images/s counts whole detections (network + decode + NMS) on random
inputs; the ratio column is PyTorch images/s over gluon_ssd images/s.

For a machine without mxnet (a GPU box with torch only), first write model descriptions with seeded
weights (rebuilt bit for bit from the seed there, so no large files travel) and gluon_ssd's outputs
for those weights here, then run there (a folder of ``python -m convert`` .pth files works too):

    python bench/bench_torch_inference.py --export-dir /tmp/bench_models          # here (mxnet)
    python bench/bench_torch_inference.py --pth-dir /tmp/bench_models --device cuda --dtype fp16 \\
        --batches 1,32,64                                                           # there (torch only)
    python bench/bench_torch_inference.py --pth-dir /tmp/bench_models --device cuda --parity

``--parity`` runs each model on the reference batch saved by --export-dir, on CPU float32 and on the
device in the given dtype, and prints the differences to gluon_ssd's outputs (saved in the .npz).
"""
from __future__ import annotations

import argparse
import copy
import functools
import logging
import os
import platform
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import gluon_ssd._env  # noqa: E402,F401,I001  (thread settings before mxnet or torch)
import numpy as np  # noqa: E402
import torch  # noqa: E402

from convert.runtime.inference import (  # noqa: E402
    CPU_MICRO_BATCH,
    DTYPES,
    autocast,
    fuse_batchnorm,
    predict,
    prepare,
    resolve_device,
)
from convert.weights.mapping import load_torch_model  # noqa: E402
from convert.nn.ssd import SSD  # noqa: E402

DEFAULT_MODELS = ("ssd_300_vgg16_atrous_voc", "ssd_512_vgg16_atrous_voc", "ssd_512_resnet50_v1_voc",
                  "ssd_512_mobilenet1.0_voc")


def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def torch_variants(model: SSD, device: torch.device, dtype: str, names, micro_batch: int = CPU_MICRO_BATCH) -> dict:
    """{variant: callable(x) -> detections} for the PyTorch twin (``backend`` splits its batch itself)."""
    variants = {}
    if "backend" in names and device.type == "cpu":
        # The --backend torch detector of eval_ssd.py / demo_ssd.py, whose set-up on the CPU reuses freed memory
        # (process-wide: the other PyTorch variants of this run get it too) and picks its micro-batch.
        from convert.backend import TorchDetector

        served = TorchDetector(copy.deepcopy(model), device)
        variants["backend"] = lambda x, d=served: predict(d.model, x, micro_batch=d.micro_batch)
    if "torch" in names:
        plain = model.to(device).eval()
        variants["torch"] = plain
    if "torch-cl-fused" in names:
        fast = fuse_batchnorm(model).to(device).to(memory_format=torch.channels_last).eval()
        variants["torch-cl-fused"] = lambda x, m=fast: m(x.contiguous(memory_format=torch.channels_last))
    if "torchscript-opt" in names and dtype in ("fp32", "tf32"):
        scripted = torch.jit.script(fuse_batchnorm(model).to(device).eval())
        variants["torchscript-opt"] = torch.jit.optimize_for_inference(scripted)
    if "torch-compile" in names:
        import torch._inductor.config as inductor_config

        # Weights as constants: inductor folds BatchNorm into the convolutions and prepacks them for oneDNN.
        inductor_config.freezing = True
        # NMS's data-dependent loop breaks the graph (by design); dynamo would warn about it on every shape.
        torch._logging.set_logs(dynamo=logging.ERROR)
        variants["torch-compile"] = torch.compile(copy.deepcopy(model).to(device).eval())
    return variants


def time_calls(fns: dict, make_input, repeat: int, warmup: int, sync) -> dict:
    """Seconds per call of each function (median of ``repeat``), calls interleaved so that the load of a
    shared machine hits every contender alike."""
    times = {k: [] for k in fns}
    for _ in range(warmup):
        for fn in fns.values():
            fn(make_input())
            sync()
    for _ in range(repeat):
        for key, fn in fns.items():
            x = make_input()
            sync()
            start = time.perf_counter()
            fn(x)
            sync()
            times[key].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def _numpy_batch(rng, shape):
    return rng.standard_normal(shape, dtype=np.float32)


def _run_gluon(net, mx, x):
    out = net(mx.nd.array(x))
    out[0].wait_to_read()
    return out


def _run_torch_cpu(fn, micro_batch, x):
    with torch.inference_mode():
        images = torch.from_numpy(x)
        return [fn(part) for part in (images.split(micro_batch) if micro_batch > 0 else [images])]


def _run_torch_device(fn, device, dtype, x):
    """The network under autocast, the post-processing in float32 (as convert.runtime.inference.predict)."""
    if isinstance(fn, SSD):
        with torch.inference_mode():
            with autocast(device, dtype):
                raw = fn.raw(x)
            return fn.postprocess(*(r.float() for r in raw))
    with torch.inference_mode(), autocast(device, dtype):
        return fn(x)


def _gluon(name):
    import mxnet as mx

    import gluon_ssd

    net = gluon_ssd.get_model(name, pretrained_base=False)
    return net, mx


def _converted(name, net, folder) -> SSD:
    from convert.weights.mapping import convert_gluon_file

    path = os.path.join(folder, f"{name}.params")
    net.save_parameters(path)
    model, _ = convert_gluon_file(name, path)
    return model


def bench_cpu(args) -> int:
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models:
            net, mx = _gluon(name)
            model = _converted(name, net, folder)
            net.hybridize(static_alloc=True, static_shape=True)
            size = model.spec.base_size
            variants = torch_variants(model, torch.device("cpu"), "fp32", args.variants, args.micro_batch)
            for batch in args.batches:
                make_input = functools.partial(_numpy_batch, np.random.default_rng(batch), (batch, 3, size, size))
                fns = {"gluon_ssd": functools.partial(_run_gluon, net, mx),
                       **{k: functools.partial(_run_torch_cpu, v, 0 if k == "backend" else args.micro_batch)
                          for k, v in variants.items()}}
                secs = time_calls(fns, make_input, args.repeat, args.warmup, lambda: None)
                base = batch / secs["gluon_ssd"]
                for key, sec in secs.items():
                    rows.append((name, batch, key, batch / sec, (batch / sec) / base))
                    print(f"{name:<28} bs{batch:<3} {key:<16} {batch / sec:8.2f} img/s  "
                          f"ratio {(batch / sec) / base:5.2f}", flush=True)
    print()
    print(f"PyTorch variants in micro-batches of {args.micro_batch or 'the whole batch'} image(s)")
    print("| model | batch | implementation | images/s | ratio vs gluon_ssd |")
    print("|---|---|---|---|---|")
    for name, batch, key, ips, ratio in rows:
        print(f"| {name} | {batch} | {key} | {ips:.2f} | {ratio:.2f} |")
    return 0


def bench_torch_only(args) -> int:
    device = resolve_device(args.device)
    rows = []
    for name in args.models:
        model = load_bench_model(args.pth_dir, name)
        size = model.spec.base_size
        variants = torch_variants(model, device, args.dtype, args.variants)
        for batch in args.batches:
            gen = torch.Generator(device=device).manual_seed(batch)
            make_input = functools.partial(torch.randn, batch, 3, size, size, generator=gen, device=device)
            fns = {k: functools.partial(_run_torch_device, v, device, args.dtype) for k, v in variants.items()}
            secs = time_calls(fns, make_input, args.repeat, args.warmup, functools.partial(_sync, device))
            for key, sec in secs.items():
                rows.append((name, batch, key, batch / sec))
                print(f"{name:<28} bs{batch:<3} {key:<16} {args.dtype} {batch / sec:9.2f} img/s", flush=True)
    print()
    print("| model | batch | implementation | device | dtype | images/s |")
    print("|---|---|---|---|---|---|")
    for name, batch, key, ips in rows:
        print(f"| {name} | {batch} | {key} | {device.type} | {args.dtype} | {ips:.2f} |")
    return 0


def seeded_weights(model: SSD, seed: int = 0, head_scales=None) -> list:
    """Fill ``model`` with numpy-seeded weights (the same bits on every machine) whose class scores are
    spread and boxes finite: He-normal convs, random BatchNorm statistics, then each head scaled on a
    fixed probe image (logit std 2, offset std 0.5). Pass the returned scales back to rebuild exactly
    the same weights elsewhere."""
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if not tensor.is_floating_point() or key.endswith("init_scale"):
                continue
            if key.endswith("running_var") or (tensor.dim() == 1 and key.endswith("weight")):
                value = rng.uniform(0.5, 1.5, tensor.shape)
            elif key.endswith(("running_mean", "bias")):
                value = rng.normal(0, 0.1, tensor.shape)
            elif key.endswith("norm4.scale"):
                value = rng.uniform(10, 30, tensor.shape)
            else:
                value = rng.normal(0, np.sqrt(2.0 / max(1, int(np.prod(tensor.shape[1:])))), tensor.shape)
            tensor.copy_(torch.from_numpy(value.astype(np.float32)))
        heads = list(model.class_predictors) + list(model.box_predictors)
        if head_scales is None:
            size = model.spec.base_size
            probe = torch.from_numpy(np.random.default_rng(seed + 1).standard_normal((1, 3, size, size),
                                                                                     dtype=np.float32))
            feats = model.eval().features(probe)
            targets = [2.0] * len(model.class_predictors) + [0.5] * len(model.box_predictors)
            head_scales = [target / max(float(head(feat).std()), 1e-6)
                           for head, feat, target in zip(heads, feats + feats, targets)]
        for head, scale in zip(heads, head_scales):
            head.weight.mul_(scale)
            head.bias.mul_(scale)
    return head_scales


def load_bench_model(folder: str, name: str) -> SSD:
    """A .pth written by ``python -m convert``, or the seeded model described by --export-dir's json."""
    import json

    from convert.nn.ssd import spec_from_dict

    pth = os.path.join(folder, f"{name}.pth")
    if os.path.isfile(pth):
        return load_torch_model(pth)
    with open(os.path.join(folder, f"{name}.json")) as f:
        desc = json.load(f)
    model = SSD(spec_from_dict(desc["spec"]), desc["classes"], name=desc["network"])
    seeded_weights(model, desc["seed"], desc["head_scales"])
    return model.eval()


def export_models(args) -> int:
    """Model descriptions with seeded weights (.json, a few KB) and gluon_ssd's outputs for the same
    weights (.npz), for a machine without mxnet. The weights are rebuilt there from the seed."""
    import json
    import tempfile

    import mxnet as mx

    import gluon_ssd
    from convert.nn.ssd import get_torch_model
    from convert.weights.mapping import write_gluon_file

    os.makedirs(args.export_dir, exist_ok=True)
    for name in args.models:
        model = get_torch_model(name)
        scales = seeded_weights(model, seed=0)
        with tempfile.TemporaryDirectory() as folder:
            params = write_gluon_file(model, model.state_dict(), os.path.join(folder, "net.params"))
            net = gluon_ssd.get_model(name, pretrained=params)
        size = model.spec.base_size
        x = np.random.default_rng(2).standard_normal((2, 3, size, size), dtype=np.float32)
        with mx.autograd.predict_mode():
            ids, scores, boxes = (o.asnumpy() for o in net(mx.nd.array(x)))
        np.savez_compressed(os.path.join(args.export_dir, f"{name}_ref.npz"), x=x, ids=ids, scores=scores,
                            boxes=boxes)
        with open(os.path.join(args.export_dir, f"{name}.json"), "w") as f:
            json.dump({**model.describe(), "seed": 0, "head_scales": scales}, f)
        print(f"wrote {name}.json and {name}_ref.npz ({int((ids >= 0).sum())} gluon_ssd detections)")
    return 0


def parity(args) -> int:
    """Device/dtype outputs against CPU float32 and against gluon_ssd's saved outputs."""
    from convert.runtime.inference import predict
    from convert.runtime.verify import compare_detections, format_table

    device = resolve_device(args.device)
    status = 0
    for name in args.models:
        ref = np.load(os.path.join(args.pth_dir, f"{name}_ref.npz"))
        x = torch.from_numpy(ref["x"])
        cpu_model = load_bench_model(args.pth_dir, name)
        cpu = [t.numpy() for t in predict(cpu_model, x)]
        dev_model = prepare(load_bench_model(args.pth_dir, name), device, channels_last=False)
        dev = [t.cpu().numpy() for t in predict(dev_model, x, device=device, dtype=args.dtype)]
        gluon = [ref["ids"], ref["scores"], ref["boxes"]]
        size = float(max(x.shape[2:]))
        strict = args.dtype == "fp32"
        for title, ours, against in ((f"{name}: CPU fp32 vs gluon_ssd (saved)", cpu, gluon),
                                     (f"{name}: {device.type} {args.dtype} vs CPU fp32", dev, cpu),
                                     (f"{name}: {device.type} {args.dtype} vs gluon_ssd (saved)", dev, gluon)):
            checks = compare_detections(ours, against, size)
            print(format_table(checks, title))
            print()
            if strict or title.startswith(f"{name}: CPU"):
                status |= 0 if all(c.passed for c in checks) else 1
    if not strict:
        print(f"note: {args.dtype} results are reported, not judged: reduced precision moves scores by more than "
              "the float32 tolerances (and these seeded random weights amplify it more than trained ones)")
    print("parity " + ("passed" if status == 0 else "FAILED"))
    return status


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument("--batches", default=None, help="default 1,8 on CPU, 1,32,64 on CUDA")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    parser.add_argument("--variants", default="backend,torchscript-opt,torch-compile",
                        help="any of backend (CPU only), torch, torch-cl-fused, torchscript-opt, torch-compile")
    parser.add_argument("--micro-batch", type=int, default=CPU_MICRO_BATCH,
                        help=f"CPU: images per PyTorch call (default {CPU_MICRO_BATCH}; 0: the whole batch)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all cores)")
    parser.add_argument("--pth-dir", help="models from --export-dir (.json) or python -m convert (.pth); no mxnet")
    parser.add_argument("--export-dir", help="write seeded model descriptions and gluon_ssd reference .npz here")
    parser.add_argument("--parity", action="store_true", help="device vs CPU vs gluon_ssd outputs (with --pth-dir)")
    args = parser.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    args.variants = [v for v in args.variants.split(",") if v]
    default_batches = "1,32,64" if args.device.startswith("cuda") else "1,8"
    args.batches = [int(b) for b in (args.batches or default_batches).split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    from gluon_ssd.cpu import describe

    print(f"# {platform.machine()} {os.cpu_count()} cores, {describe()}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), device {args.device}, dtype {args.dtype}"
          + (f", load average {load[0]:.2f}" if load[0] != "?" else ""), flush=True)
    if args.device.startswith("cuda") and torch.cuda.is_available():
        print(f"# {torch.cuda.get_device_name(0)}")
    if args.export_dir:
        return export_models(args)
    if args.parity:
        if not args.pth_dir:
            parser.error("--parity needs --pth-dir with the files written by --export-dir")
        return parity(args)
    if args.pth_dir or args.device != "cpu" or args.dtype != "fp32":
        if not args.pth_dir:
            parser.error("--device/--dtype benchmarks run the PyTorch twin only: pass --pth-dir with the files "
                         "written by --export-dir")
        return bench_torch_only(args)
    return bench_cpu(args)


if __name__ == "__main__":
    sys.exit(main())
