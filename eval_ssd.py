"""Evaluate an SSD on Pascal VOC, COCO or a custom dataset (GluonCV's eval_ssd.py, every image scored).

Examples::

    python eval_ssd.py --network vgg16_atrous --data-shape 300 --dataset voc --dataset-root ~/data/VOCdevkit
    python eval_ssd.py --network resnet50_v1 --data-shape 512 --dataset coco --dataset-root ~/data/coco \\
        --pretrained run/ssd_512_resnet50_v1_coco_best.params
    python eval_ssd.py --network mobilenet1.0 --data-shape 512 --dataset custom --dataset-root shapes \\
        --splits val --pretrained run/ssd_512_mobilenet1.0_custom_best.params
    python eval_ssd.py --network vgg16_atrous --data-shape 300 --benchmark --batch-size 8 --num-iterations 20

The network is ``ssd_{data-shape}_{network}_{dataset}`` as in GluonCV (``*_custom`` for --dataset custom,
with the dataset's classes), or a full zoo name given to --network. Outputs in --out-dir:
``results.json`` (per-class AP, mAP, the settings, images evaluated, seconds), ``pr_curves.png``
(precision/recall of every class), and for the COCO metric ``coco_detections.json`` (the detections in
COCO results format). --benchmark measures img/s on random input instead (``benchmark.json``).

int8 on the CPU, GluonCV's flags: ``--calibration`` quantizes the model with MXNet's own flow (the first
--num-calib-batches batches of the validation loader, --calib-mode, --quantized-dtype), writes it to
``{out-dir}/model/{name}-quantized-{calib-mode}`` and evaluates it; ``--quantized`` evaluates GluonCV's
int8 model ``{name}_int8``; ``--deploy --model-prefix P`` evaluates any exported model, int8 included.
``--backend torch --dtype int8`` calibrates the PyTorch twin on the same images (ONNX Runtime int8).

Differences from GluonCV: the last partial batch is evaluated (GluonCV's loader drops it); --calibration
evaluates the quantized model after writing it (GluonCV stops there).

Exit status: 0 on success, 2 for bad input (flags, dataset, model, results file), 130 when interrupted.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys

import gluon_ssd._env  # noqa: F401  (before mxnet)

EXIT_BAD_INPUT = 2
_METRIC_TEXT = {
    "voc07": "VOC07 11-point mAP, IoU 0.5",
    "voc": "VOC all-point mAP, IoU 0.5",
    "coco": "COCO mAP@[.5:.95]",
}
_DEFAULT_ROOTS = {"voc": os.path.join("~", ".mxnet", "datasets", "voc"),
                  "coco": os.path.join("~", ".mxnet", "datasets", "coco")}
_DEFAULT_SPLITS = {"voc": "2007_test", "coco": "instances_val2017", "custom": "val"}
_NMS = (0.45, 400, 100)

log = logging.getLogger("eval_ssd")


class UsageError(Exception):
    """Bad input: reported as one message without a traceback (exit 2)."""


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Evaluate SSD networks (GluonCV's flags; every image of the split is scored).",
        epilog="Exit status: 0 on success, 2 for bad input (flags, dataset, model, results file).")
    p.add_argument("--network", default="vgg16_atrous",
                   help="base network, e.g. vgg16_atrous, resnet50_v1, mobilenet1.0 (or a full zoo name "
                        "such as ssd_300_vgg16_atrous_voc) (default: %(default)s)")
    p.add_argument("--deploy", action="store_true",
                   help="evaluate an exported model (--model-prefix)-symbol.json / -0000.params")
    p.add_argument("--model-prefix", default=None, help="prefix of the exported model for --deploy")
    p.add_argument("--quantized", action="store_true",
                   help="evaluate GluonCV's int8 model {name}_int8 (VOC vgg16_atrous 300/512, resnet50_v1 512, "
                        "mobilenet1.0 512; CPU)")
    p.add_argument("--data-shape", type=int, default=300, help="input size (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64,
                   help="images per batch, times --num-gpus when > 0 (default: %(default)s)")
    p.add_argument("--benchmark", action="store_true",
                   help="measure inference img/s on random input (no dataset needed)")
    p.add_argument("--num-iterations", type=int, default=100,
                   help="timed batches of --benchmark (default: %(default)s)")
    p.add_argument("--dataset", default="voc", choices=("voc", "coco", "custom"),
                   help="dataset kind (default: %(default)s)")
    p.add_argument("--dataset-root", default=None,
                   help="voc: the VOCdevkit folder (default ~/.mxnet/datasets/voc); coco: the folder with "
                        "annotations/ (default ~/.mxnet/datasets/coco); custom: a VOC-layout folder or a "
                        "COCO instances JSON")
    p.add_argument("--splits", default=None,
                   help="comma-separated splits: voc YEAR_NAME (default 2007_test), coco JSON names "
                        "(default instances_val2017), custom VOC-layout split names (default val)")
    p.add_argument("--image-dir", default=None,
                   help="coco / custom JSON: the image folder (relative to --dataset-root for coco); "
                        "default: the split's folder (instances_val2017 -> val2017)")
    p.add_argument("--classes-file", default=None,
                   help="custom: file with one class name per line (default: classes.txt in the dataset "
                        "folder; a COCO JSON's own categories otherwise)")
    p.add_argument("--metric", default=None, choices=("voc07", "voc", "coco"),
                   help="default: voc07 for VOC and VOC-layout custom data, coco for COCO data")
    p.add_argument("--results", default=None, metavar="JSON",
                   help="score this COCO results file against the dataset's annotations (no model)")
    p.add_argument("--out-dir", default=None,
                   help="output folder (default: ./{save-prefix}{network name}_eval)")
    p.add_argument("--save-prefix", default="", help="prefix of the default output folder's name")
    p.add_argument("-j", "--num-workers", dest="num_workers", type=int, default=4,
                   help="data loading processes (default: %(default)s)")
    p.add_argument("--num-gpus", type=int, default=0, help="GPUs to use, 0 for CPU (default: %(default)s)")
    p.add_argument("--pretrained", default="True",
                   help="'True' for GluonCV's published weights (model store) or a parameter file path "
                        "(GluonCV's or from training) (default: %(default)s)")
    p.add_argument("--backend", default="mxnet", help="inference backend (default: %(default)s)")
    p.add_argument("--device", default="cpu",
                   help="--backend torch: cpu or cuda[:N] (MXNet uses --num-gpus) (default: %(default)s)")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "tf32", "fp16", "bf16", "int8"),
                   help="--backend torch: network precision (fp16/bf16 autocast; int8: ONNX Runtime, calibrated "
                        "like --calibration, CPU; post-processing stays float32) (default: %(default)s)")
    p.add_argument("--no-plots", action="store_true", help="do not draw the precision/recall curves")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="log library messages at INFO level")
    p.add_argument("--calibration", action="store_true",
                   help="quantize to int8 (MXNet, CPU), write the model to OUT_DIR/model/ and evaluate it")
    p.add_argument("--num-calib-batches", type=int, default=5,
                   help="validation batches used for calibration (default: %(default)s)")
    p.add_argument("--quantized-dtype", default="auto", choices=("auto", "int8", "uint8"),
                   help="int8 activations: auto (uint8 after ReLU), int8 or uint8 (default: %(default)s)")
    p.add_argument("--quantize-heads", action="store_true",
                   help="--calibration: quantize the prediction heads too (GluonCV's exact graph; measured to "
                        "cost several mAP points, so by default they stay float32)")
    p.add_argument("--calib-mode", default="naive", choices=("naive", "entropy", "none"),
                   help="naive (min/max), entropy (KL thresholds) or none (ranges at run time) "
                        "(default: %(default)s)")
    return p.parse_args(argv)


def check_args(args):
    int8 = [f for f, on in (("--quantized", args.quantized), ("--calibration", args.calibration),
                            ("--dtype int8", args.dtype == "int8")) if on]
    if len(int8) > 1:
        raise UsageError(f"{' and '.join(int8)}: give one way to run int8")
    if int8 and args.num_gpus > 0:
        raise UsageError(f"{int8[0]}: int8 inference runs on the CPU only (oneDNN / ONNX Runtime kernels); "
                         "drop --num-gpus")
    if int8 and args.device != "cpu":
        raise UsageError(f"{int8[0]}: int8 inference runs on the CPU only; use --device cpu")
    if (args.quantized or args.calibration) and args.backend != "mxnet":
        raise UsageError(f"{int8[0]} is MXNet's int8 flow; for the PyTorch twin use --backend torch --dtype int8")
    if (args.calibration or args.dtype == "int8") and args.num_calib_batches < 1:
        raise UsageError(f"--num-calib-batches must be at least 1 to calibrate, got {args.num_calib_batches}")
    if args.dtype == "int8" and args.backend == "mxnet":
        raise UsageError("--dtype int8 quantizes the PyTorch twin (--backend torch); MXNet's int8 is --calibration")
    if args.dtype == "int8" and args.calib_mode == "none":
        raise UsageError("--dtype int8 calibrates the twin: --calib-mode naive or entropy")
    if args.deploy and (args.quantized or args.calibration):
        raise UsageError(f"--deploy evaluates an exported model as it is; drop {int8[0]}")
    for name in ("data_shape", "batch_size", "num_iterations"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    for name in ("num_workers", "num_gpus"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if args.deploy and not args.model_prefix:
        raise UsageError("--deploy needs --model-prefix PREFIX (the files PREFIX-symbol.json and "
                         "PREFIX-0000.params written by export)")
    if args.results and args.benchmark:
        raise UsageError("--results scores a results file and --benchmark times the model: give one")


def network_name(args) -> str:
    """GluonCV's ``ssd_{data-shape}_{network}_{dataset}``; a data shape that is no base size of the network
    evaluates the nearest base size's architecture at that shape, as train_ssd.py trains it."""
    if args.network.startswith("ssd_"):
        return args.network
    from gluon_ssd.train.fit import TrainingError
    from gluon_ssd.train.run import resolve_model_name

    try:
        return resolve_model_name(args.network, args.data_shape, args.dataset)
    except TrainingError as err:
        raise UsageError(str(err)) from None


def contexts(num_gpus):
    import mxnet as mx

    if num_gpus == 0:
        return [mx.cpu()]
    available = mx.context.num_gpus()
    if available < num_gpus:
        raise UsageError(f"--num-gpus {num_gpus}: MXNet sees {available} GPU(s) (this mxnet build may have "
                         "no CUDA support); use --num-gpus 0 to run on the CPU")
    return [mx.gpu(i) for i in range(num_gpus)]


# ------------------------------------------------------------------------------------------- dataset
def _layout(args, root) -> str:
    if args.dataset == "voc":
        return (f"a VOCdevkit folder: {root}/VOC2007/JPEGImages/*.jpg, {root}/VOC2007/Annotations/*.xml and "
                f"{root}/VOC2007/ImageSets/Main/test.txt (one folder VOC<year> per --splits year)")
    if args.dataset == "coco":
        return (f"{root}/annotations/instances_val2017.json and the images in {root}/val2017/ (one JSON per "
                "--splits name; --image-dir names another image folder)")
    return (f"a VOC-layout folder ({root}/JPEGImages, {root}/Annotations, {root}/ImageSets/Main/<split>.txt, "
            f"{root}/classes.txt) or a COCO instances JSON file")


def _voc_splits(text):
    splits = []
    for item in text.split(","):
        item = item.strip()
        m = re.fullmatch(r"(\w+?)[_:](\w+)", item)
        if not m:
            raise UsageError(f"--splits {text!r}: VOC splits are YEAR_NAME, e.g. 2007_test or 2007_test,2012_val")
        year, name = m.groups()
        splits.append((int(year) if year.isdigit() else year, name))
    return splits


def _read_classes(path):
    from gluon_ssd.data.voc import read_classes_file

    try:
        return read_classes_file(path)
    except (FileNotFoundError, ValueError) as err:
        raise UsageError(f"--classes-file: {err}") from None


def build_dataset(args):
    """The evaluation dataset of --dataset / --dataset-root / --splits (every image, bad files raise)."""
    from gluon_ssd import data

    root = os.path.expanduser(args.dataset_root or _DEFAULT_ROOTS.get(args.dataset, ""))
    if args.dataset == "custom" and not args.dataset_root:
        raise UsageError("--dataset custom needs --dataset-root: " + _layout(args, "ROOT"))
    is_json = args.dataset == "custom" and root.lower().endswith(".json")
    if not (os.path.isfile(root) if is_json else os.path.isdir(root)):
        what = "file" if is_json else "folder"
        raise UsageError(f"dataset root {root} is not an existing {what}; --dataset {args.dataset} expects "
                         + _layout(args, root))
    splits_text = args.splits or _DEFAULT_SPLITS[args.dataset]
    splits = [s.strip() for s in splits_text.split(",") if s.strip()]
    try:
        if args.dataset == "voc":
            return data.VOCDetection(root, splits=_voc_splits(splits_text), on_error="raise")
        if args.dataset == "coco":
            return data.COCODetection(root, splits=splits, skip_empty=False, image_dir=args.image_dir,
                                      on_error="raise")
        if is_json:
            classes = _read_classes(args.classes_file) if args.classes_file else None
            image_dir = args.image_dir or os.path.dirname(root)
            return data.CustomCOCODetection(root, image_dir, classes=classes, skip_empty=False,
                                            on_error="raise")
        if args.classes_file:
            path = args.classes_file
            if not os.path.isfile(path) and os.path.isfile(os.path.join(root, path)):
                path = os.path.join(root, path)
            classes = _read_classes(path)
        else:
            default = os.path.join(root, "classes.txt")
            if not os.path.isfile(default):
                raise UsageError(f"no --classes-file given and {default} does not exist: write the class "
                                 "names there (one per line) or pass --classes-file")
            classes = _read_classes(default)
        return data.CustomVOCDetection(root, splits=splits, classes=classes, on_error="raise")
    except UsageError:
        raise
    except (FileNotFoundError, ValueError, OSError) as err:
        raise UsageError(f"cannot read the {args.dataset} dataset at {root}: {err}. Expected layout: "
                         + _layout(args, root)) from None


def default_metric(args, dataset) -> str:
    if args.metric:
        return args.metric
    if args.dataset == "voc":
        return "voc07"
    return "coco" if hasattr(dataset, "contiguous_id_to_json") else "voc07"


# --------------------------------------------------------------------------------------------- model
def build_model(args, name, classes, ctx):
    """The model to evaluate: a detector of the --backend (see gluon_ssd.predict), or the exported block
    of --deploy. Other backends plug in through ``gluon_ssd.predict.BACKENDS``."""
    from gluon_ssd import predict
    from gluon_ssd.model_store import ModelStoreError
    from gluon_ssd.model_zoo import get_spec
    from gluon_ssd.params import file_class_count

    if args.deploy:
        return _load_deployed(args.model_prefix, ctx, classes)
    if args.backend not in predict.BACKENDS:
        raise UsageError(f"--backend {args.backend!r} is not available; choose from "
                         f"{', '.join(sorted(predict.BACKENDS))}")
    try:
        spec = get_spec(name)
    except ValueError as err:
        raise UsageError(f"--network {args.network} --data-shape {args.data_shape} --dataset "
                         f"{args.dataset}: {err}") from None
    pretrained = predict.parse_pretrained(args.pretrained)
    if pretrained is False:
        raise UsageError("--pretrained False would evaluate random weights; pass True or a parameter file")
    custom = spec.dataset == "custom"
    if custom and pretrained is True:
        raise UsageError(f"{name} has no published weights: pass the parameter file written by training "
                         "(--pretrained PATH)")
    if isinstance(pretrained, str) and not pretrained.endswith((".pth", ".pt")):  # a .pth is checked on load
        if not os.path.isfile(pretrained):
            raise UsageError(f"parameter file not found: {pretrained}; pass an existing .params file or "
                             "--pretrained True for the published weights")
        try:
            n_file = file_class_count(pretrained, name, classes if custom else None)
        except ValueError as err:
            raise UsageError(str(err)) from None
        if n_file is not None and n_file != len(classes):
            raise UsageError(
                f"parameter file {pretrained} holds a model of {n_file} classes, but the {args.dataset} "
                f"dataset has {len(classes)} classes {list(classes)}: evaluate a model trained on this "
                "dataset's classes" + (" (a custom model takes its classes from the dataset: check "
                                       "--classes-file)" if custom else ""))
    if args.quantized:
        return _load_gluoncv_int8(name, pretrained, args)
    try:
        dtype = "fp32" if args.dtype == "int8" else args.dtype  # the twin is quantized after loading
        options = predict.backend_options(args.backend, args.device, dtype, mxnet_gpus_flag="--num-gpus")
    except ValueError as err:
        raise UsageError(str(err)) from None
    try:
        return predict.load_detector(args.backend, network=name, pretrained=pretrained,
                                     classes=list(classes) if custom else None, ctx=ctx,
                                     nms_thresh=_NMS[0], nms_topk=_NMS[1], post_nms=_NMS[2],
                                     **options)
    except ModelStoreError as err:
        raise UsageError(f"{err} (or pass a local file: --pretrained PATH)") from None
    except (ValueError, FileNotFoundError) as err:
        raise UsageError(f"cannot load {name}: {err}") from None


def _load_deployed(prefix, ctx, classes):
    from gluon_ssd.deploy import load_exported

    try:
        return load_exported(prefix, ctx=ctx[0], classes=classes)
    except (FileNotFoundError, ValueError) as err:
        raise UsageError(f"--deploy --model-prefix {prefix}: {err}") from None


def _load_gluoncv_int8(name, pretrained, args):
    from gluon_ssd.model_store import ModelStoreError
    from gluon_ssd.quantization import INT8_MODELS, get_int8_model

    int8_name = f"{name}_int8"
    if int8_name not in INT8_MODELS:
        raise UsageError(f"--quantized: GluonCV has no int8 version of {name} (it has "
                         f"{', '.join(INT8_MODELS)}); quantize this model yourself with --calibration")
    try:
        return get_int8_model(int8_name, pretrained=pretrained)
    except ModelStoreError as err:
        raise UsageError(f"{err} (or pass the float32 file: --pretrained PATH)") from None
    except (ValueError, FileNotFoundError) as err:
        raise UsageError(f"--quantized {int8_name}: {err}") from None


def quantize_model(args, model, name, dataset, out_dir):
    """--calibration (MXNet) or --backend torch --dtype int8 (the twin): calibrate on the first
    --num-calib-batches validation batches (random images for --benchmark), write the int8 model under
    OUT_DIR/model/, return it."""
    import numpy as np

    from gluon_ssd.eval import calibration_batches

    if dataset is None:
        rng = np.random.default_rng(0)
        shape = (args.batch_size, 3, args.data_shape, args.data_shape)
        batches = [rng.uniform(-2, 2, shape).astype(np.float32) for _ in range(args.num_calib_batches)]
    else:
        batches = calibration_batches(dataset, args.data_shape, args.batch_size, args.num_calib_batches,
                                      num_workers=args.num_workers)
    examples = sum(len(b) for b in batches)
    folder = os.path.join(out_dir, "model")
    if args.calibration:
        from gluon_ssd import export, quantize

        try:
            qnet = quantize(model.net, batches, calib_mode=args.calib_mode, num_calib_examples=examples,
                            quantized_dtype=args.quantized_dtype, quantize_heads=args.quantize_heads)
        except ValueError as err:
            raise UsageError(f"--calibration: {err}") from None
        prefix = os.path.join(folder, f"{name}-quantized-{args.calib_mode}")
        sym_file, params_file = export(qnet, prefix, data_shape=(args.data_shape, args.data_shape))
        print(f"wrote the int8 model ({args.calib_mode} calibration on {examples} images): {sym_file}, "
              f"{params_file} (evaluate it again with --deploy --model-prefix {prefix})")
        return qnet
    from convert.lowp import load_int8_detector, quantize_twin

    path = quantize_twin(model.model, batches, os.path.join(folder, f"{name}-int8-{args.calib_mode}.onnx"),
                         calib_mode=args.calib_mode, num_calib_examples=examples, quantize_heads=args.quantize_heads)
    print(f"wrote the int8 twin ({args.calib_mode} calibration on {examples} images): {path}")
    return load_int8_detector(path, *_NMS)


# ------------------------------------------------------------------------------------------- outputs
def _finite(value):
    return value if isinstance(value, float) and math.isfinite(value) else None


def _write_json(path, obj):
    from gluon_ssd.fileio import atomic_write

    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def print_table(per_class, map_value, metric):
    width = max([len(n) for n in per_class] + [5])
    print(f"{'class':<{width}}  AP ({_METRIC_TEXT[metric]})")
    for name, ap in per_class.items():
        print(f"{name:<{width}}  {ap:.4f}" if math.isfinite(ap) else f"{name:<{width}}  n/a (no ground truth)")
    print(f"{'mAP':<{width}}  {map_value:.4f}")


def _precision(args) -> str:
    if args.quantized or args.calibration or args.dtype == "int8":
        return "int8"
    return args.dtype if args.backend != "mxnet" else "fp32"


def _settings(args, name, ctx):
    from gluon_ssd import cpu

    int8 = {"calib_mode": args.calib_mode, "num_calib_batches": args.num_calib_batches,
            "quantized_dtype": args.quantized_dtype, "quantize_heads": args.quantize_heads} \
        if (args.calibration or args.dtype == "int8") else None
    return {"network": name, "precision": _precision(args), "quantized": args.quantized, "calibration": int8,
            "cpu": cpu.describe(), "cpu_features": cpu.vector_features(),
            "backend": "deploy" if args.deploy else args.backend,
            "pretrained": None if args.deploy else args.pretrained, "deploy": args.deploy,
            "model_prefix": args.model_prefix, "data_shape": args.data_shape, "batch_size": args.batch_size,
            "num_workers": args.num_workers, "num_gpus": args.num_gpus, "ctx": [str(c) for c in ctx],
            "nms": {"nms_thresh": _NMS[0], "nms_topk": _NMS[1], "post_nms": _NMS[2]}}


def _dataset_info(args, dataset):
    return {"kind": args.dataset, "root": os.path.abspath(os.path.expanduser(args.dataset_root))
            if args.dataset_root else _DEFAULT_ROOTS.get(args.dataset),
            "splits": args.splits or _DEFAULT_SPLITS[args.dataset], "image_dir": args.image_dir,
            "images": len(dataset), "classes": list(dataset.classes)}


def _out_path(out_dir, name):
    return os.path.join(out_dir, name)


# ---------------------------------------------------------------------------------------------- modes
def run_benchmark(args, name, ctx, out_dir):
    from gluon_ssd import cpu
    from gluon_ssd.classes import DATASET_CLASSES
    from gluon_ssd.eval.loop import benchmark
    from gluon_ssd.model_zoo import get_spec

    classes = None
    if not args.deploy:
        try:
            spec = get_spec(name)
        except ValueError as err:
            raise UsageError(str(err)) from None
        if spec.dataset == "custom":
            if not args.classes_file:
                raise UsageError(f"--benchmark of {name} needs --classes-file (the model's classes)")
            classes = _read_classes(args.classes_file)
        else:
            classes = DATASET_CLASSES[spec.dataset]
    model = build_model(args, name, classes, ctx)
    if args.calibration or args.dtype == "int8":
        model = quantize_model(args, model, name, None, out_dir)
    print(f"-----benchmarking on {name} -----")
    stats = benchmark(model, args.data_shape, batch_size=args.batch_size, num_iterations=args.num_iterations,
                      ctx=None, progress=not args.no_progress)
    print(f"Inference speed on {name}, with batchsize {args.batch_size} is "
          f"{stats['images_per_second']:.2f} img/sec ({_precision(args)}; CPU: {cpu.describe()})")
    record = {"mode": "benchmark", **stats, "settings": _settings(args, name, ctx)}
    path = _out_path(out_dir, "benchmark.json")
    _write_json(path, record)
    print(f"wrote {path}")
    return 0


def run_results_file(args, dataset, out_dir):
    from gluon_ssd.eval import coco_stats

    coco = getattr(dataset, "coco", None) if hasattr(dataset, "contiguous_id_to_json") else None
    if coco is None:
        raise UsageError("--results scores a COCO results file: use --dataset coco (or custom with a COCO "
                         "JSON as --dataset-root)")
    if not os.path.isfile(args.results):
        raise UsageError(f"--results {args.results}: file not found")
    try:
        stats = coco_stats(coco, args.results)
    except (ValueError, json.JSONDecodeError) as err:
        raise UsageError(f"--results {args.results}: {err}") from None
    per_class = {k: float(v) for k, v in stats["per_class"].items()}
    print(stats["summary"])
    print_table(per_class, stats["AP"], "coco")
    record = {"mode": "results_file", "results_file": os.path.abspath(args.results), "metric": "coco",
              "per_class_ap": {k: _finite(v) for k, v in per_class.items()}, "map": _finite(stats["AP"]),
              "coco_stats": {k: v for k, v in stats.items() if k not in ("per_class", "summary")},
              "dataset": _dataset_info(args, dataset)}
    path = _out_path(out_dir, "results.json")
    _write_json(path, record)
    print(f"wrote {path}")
    return 0


def run_evaluation(args, name, dataset, ctx, out_dir):
    from gluon_ssd.data.custom import BadImageError
    from gluon_ssd.eval import plots
    from gluon_ssd.eval.loop import evaluate, make_metric

    metric_name = default_metric(args, dataset)
    # The COCO metric writes its results file under this prefix (plus a time stamp); renamed below.
    kwargs = {"save_prefix": _out_path(out_dir, "coco_detections"), "cleanup": False} \
        if metric_name == "coco" else {}
    try:
        metric = make_metric(metric_name, dataset, args.data_shape, **kwargs)
    except ValueError as err:
        raise UsageError(f"--metric {metric_name}: {err}") from None
    model = build_model(args, name, dataset.classes, ctx)
    if args.calibration or args.dtype == "int8":
        model = quantize_model(args, model, name, dataset, out_dir)
    print(f"evaluating {name} on {len(dataset)} images of {args.dataset} "
          f"({args.splits or _DEFAULT_SPLITS[args.dataset]}), {_METRIC_TEXT[metric_name]}")
    try:
        result = evaluate(model, dataset, args.data_shape, batch_size=args.batch_size, ctx=None,
                          metric=metric, num_workers=args.num_workers, progress=not args.no_progress, nms=_NMS)
    except (ValueError, BadImageError) as err:
        raise UsageError(str(err)) from None

    files = {}
    if metric_name == "coco":
        if metric.results_path and os.path.isfile(metric.results_path):
            final = _out_path(out_dir, "coco_detections.json")
            os.replace(metric.results_path, final)
            files["coco_detections"] = final
        print(metric.summary)
    per_class = dict(zip(result.names[:-1], result.values[:-1]))
    print_table(per_class, result.map, metric_name)
    print(f"evaluated {result.num_images} images in {result.seconds:.1f} s "
          f"({result.images_per_second:.1f} img/s)")

    if not args.no_plots:
        if metric_name == "coco":
            detections = []
            if "coco_detections" in files:
                with open(files["coco_detections"], encoding="utf-8") as f:
                    detections = json.load(f)
            curves = plots.coco_pr_curves(dataset.coco, detections, iou=0.5)
            curves = {n: curves.get(n, ((), ())) for n in per_class}
            title = f"{name}: precision/recall at IoU 0.5 (COCOeval, all areas)"
        else:
            curves = plots.voc_pr_curves(metric)
            title = f"{name}: precision/recall, IoU 0.5"
        files["pr_curves"] = plots.plot_pr_curves(curves, _out_path(out_dir, "pr_curves.png"), aps=per_class,
                                                  title=title)
    record = {
        "mode": "evaluate",
        "metric": metric_name,
        "metric_description": _METRIC_TEXT[metric_name],
        "per_class_ap": {k: _finite(v) for k, v in per_class.items()},
        "map": _finite(result.map),
        "images_evaluated": result.num_images,
        "seconds": result.seconds,
        "images_per_second": result.images_per_second,
        "metric_seconds": result.metric_seconds,
        "settings": _settings(args, name, ctx),
        "dataset": _dataset_info(args, dataset),
        "files": files,
    }
    if metric_name == "coco":
        record["coco_stats"] = {k: v for k, v in metric.stats.items() if k not in ("per_class", "summary")}
    path = _out_path(out_dir, "results.json")
    _write_json(path, record)
    print(f"wrote {path}")
    return 0


def run(args):
    check_args(args)
    name = os.path.basename(args.model_prefix) if args.deploy else network_name(args)
    out_dir = args.out_dir or f"{args.save_prefix}{name}_eval"
    ctx = contexts(args.num_gpus)
    if args.num_gpus > 0:
        args.batch_size *= args.num_gpus
    if args.benchmark:
        return run_benchmark(args, name, ctx, out_dir)
    dataset = build_dataset(args)
    if args.results:
        return run_results_file(args, dataset, out_dir)
    return run_evaluation(args, name, dataset, ctx, out_dir)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except UsageError as err:
        print(f"eval_ssd.py: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
