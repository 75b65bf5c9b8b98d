"""Evaluate an SSD on Pascal VOC, COCO or a custom dataset (GluonCV's eval_ssd.py, every image scored).

Examples::

    python eval_ssd.py --network vgg16_atrous --data-shape 300 --dataset voc --dataset-root ~/data/VOCdevkit
    python eval_ssd.py --network resnet50_v1 --data-shape 512 --dataset coco --dataset-root ~/data/coco \\
        --pretrained run/ssd_512_resnet50_v1_coco_best.params
    python eval_ssd.py --network mobilenet1.0 --data-shape 512 --dataset custom --dataset-root shapes \\
        --splits val --pretrained run/ssd_512_mobilenet1.0_custom_best.params
    python eval_ssd.py --network vgg16_atrous --data-shape 300 --benchmark --batch-size 8 --num-iterations 20

The network is ``ssd_{data-shape}_{network}_{dataset}`` as in GluonCV (``*_custom`` for --dataset custom,
with the dataset's classes), or a full zoo name given to --network. The dataset root is found as training
finds it (:func:`gluon_ssd.data.open_dataset`): for VOC GluonCV's ``~/.mxnet/datasets/voc``, a VOCdevkit
folder or a folder holding VOCdevkit/. Outputs in --out-dir: ``results.json`` (per-class AP, mAP, the
settings, images evaluated, seconds), ``pr_curves.png`` (precision/recall of every class), and for the COCO
metric ``coco_detections.json`` (the detections in COCO results format). --benchmark measures img/s on
random input instead (``benchmark.json``).

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

import json
import os

from .common import (
    ArgumentParser,
    UsageError,
    backend_options,
    contexts,
    load_model,
    parse_classes,
    run_main,
    setup_logging,
)

PROG = "eval_ssd.py"
NMS = (0.45, 400, 100)  # nms_thresh, nms_topk, post_nms of GluonCV's eval_ssd.py


def parse_args(argv=None):
    p = ArgumentParser(
        prog=PROG, description="Evaluate SSD networks (GluonCV's flags; every image of the split is scored).",
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
                   help="voc: a folder holding VOC2007/ (GluonCV's ~/.mxnet/datasets/voc, the default, or a "
                        "VOCdevkit folder) or one holding VOCdevkit/; coco: the folder with annotations/ (default "
                        "~/.mxnet/datasets/coco); custom: a VOC-layout folder or a COCO instances JSON")
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
                   help="quantize the class prediction heads too (GluonCV's exact graph; measured to cost "
                        "several mAP points, so by default they stay float32)")
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
    from gluon_ssd.specs import resolve_model_name

    if args.network.startswith("ssd_"):
        return args.network
    try:
        return resolve_model_name(args.network, args.data_shape, args.dataset)
    except ValueError as err:
        raise UsageError(str(err)) from None


def open_eval_dataset(args):
    """The dataset of --dataset / --dataset-root / --splits, every image, unreadable files an error."""
    from gluon_ssd.data.open import DatasetError, find_dataset_root, open_dataset

    try:
        root = find_dataset_root(args.dataset, args.dataset_root)
        classes = parse_classes(args.classes_file, "--classes-file", root=root if os.path.isdir(root) else None,
                                names=False) if args.dataset == "custom" else None
        return open_dataset(args.dataset, root, args.splits, purpose="eval", classes=classes,
                            image_dir=args.image_dir)
    except DatasetError as err:
        raise UsageError(str(err)) from None


def default_metric(args, dataset) -> str:
    if args.metric:
        return args.metric
    if args.dataset == "voc":
        return "voc07"
    return "coco" if hasattr(dataset, "contiguous_id_to_json") else "voc07"


def build_model(args, name, classes, ctx):
    """The model to evaluate: a detector of --backend (gluon_ssd.predict), GluonCV's int8 model (--quantized)
    or the exported block of --deploy."""
    from gluon_ssd.model_zoo import get_spec
    from gluon_ssd.predict import parse_pretrained

    if args.deploy:
        return _load_deployed(args.model_prefix, ctx, classes)
    dtype = "fp32" if args.dtype == "int8" else args.dtype  # the twin is quantized after loading
    options = backend_options(args.backend, args.device, dtype, "--num-gpus")
    try:
        custom = get_spec(name).dataset == "custom"
    except ValueError as err:
        raise UsageError(f"--network {args.network} --data-shape {args.data_shape} --dataset {args.dataset}: "
                         f"{err}") from None
    pretrained = parse_pretrained(args.pretrained)
    if args.quantized:
        return _load_gluoncv_int8(name, pretrained)
    if pretrained is False:
        raise UsageError("--pretrained False would evaluate random weights; pass True or a parameter file")
    if custom and pretrained is True:
        raise UsageError(f"{name} has no published weights: pass the parameter file written by training "
                         "(--pretrained PATH)")
    if isinstance(pretrained, str) and not pretrained.endswith((".pth", ".pt")):  # a .pth is checked on load
        _check_parameter_file(args, pretrained, name, classes, custom)
    return load_model(args.backend, name, pretrained=pretrained, classes=list(classes) if custom else None,
                      ctx=ctx, nms_thresh=NMS[0], nms_topk=NMS[1], post_nms=NMS[2], **options)


def _check_parameter_file(args, path, name, classes, custom):
    """A parameter file that exists and holds a model of the dataset's classes (else say which)."""
    from gluon_ssd.params import file_class_count

    if not os.path.isfile(path):
        raise UsageError(f"parameter file not found: {path}; pass an existing .params file or --pretrained True "
                         "for the published weights")
    try:
        n_file = file_class_count(path, name, classes if custom else None)
    except ValueError as err:
        raise UsageError(str(err)) from None
    if n_file is None:
        raise UsageError(f"parameter file {path} does not hold a {name} network (its layers differ): pass a file "
                         f"of {name}, GluonCV's or from a training run of --network {args.network} --data-shape "
                         f"{args.data_shape}")
    if n_file != len(classes):
        raise UsageError(f"parameter file {path} holds a model of {n_file} classes, but the {args.dataset} dataset "
                         f"has {len(classes)} classes {list(classes)}: evaluate a model trained on this dataset's "
                         "classes" + (" (a custom model takes its classes from the dataset: check --classes-file)"
                                      if custom else ""))


def _load_deployed(prefix, ctx, classes):
    from gluon_ssd.deploy import load_exported

    try:
        return load_exported(prefix, ctx=ctx[0], classes=classes)
    except (FileNotFoundError, ValueError) as err:
        raise UsageError(f"--deploy --model-prefix {prefix}: {err}") from None


def _load_gluoncv_int8(name, pretrained):
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
    from gluon_ssd.eval.loop import calibration_batches, random_batches

    if dataset is None:
        batches = random_batches(args.data_shape, args.batch_size, args.num_calib_batches)
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
    from gluon_ssd.predict import QUANTIZERS

    if args.backend not in QUANTIZERS:
        raise UsageError(f"--backend {args.backend} has no int8 path (--dtype int8 needs one of: "
                         f"{', '.join(sorted(QUANTIZERS)) or 'none registered'})")
    path = os.path.join(folder, f"{name}-int8-{args.calib_mode}.onnx")
    detector = QUANTIZERS[args.backend](model, batches, path, calib_mode=args.calib_mode, num_calib_examples=examples,
                                        quantize_heads=args.quantize_heads, nms=NMS)
    print(f"wrote the int8 twin ({args.calib_mode} calibration on {examples} images): {path}")
    return detector


# --------------------------------------------------------------------------------------------- records
def precision(args) -> str:
    if args.quantized or args.calibration or args.dtype == "int8":
        return "int8"
    return args.dtype if args.backend != "mxnet" else "fp32"


def settings(args, name, ctx) -> dict:
    from gluon_ssd import cpu

    int8 = {"calib_mode": args.calib_mode, "num_calib_batches": args.num_calib_batches,
            "quantized_dtype": args.quantized_dtype, "quantize_heads": args.quantize_heads} \
        if (args.calibration or args.dtype == "int8") else None
    return {"network": name, "precision": precision(args), "quantized": args.quantized, "calibration": int8,
            "cpu": cpu.describe(), "cpu_features": cpu.vector_features(),
            "backend": "deploy" if args.deploy else args.backend,
            "pretrained": None if args.deploy else args.pretrained, "deploy": args.deploy,
            "model_prefix": args.model_prefix, "data_shape": args.data_shape, "batch_size": args.batch_size,
            "num_workers": args.num_workers, "num_gpus": args.num_gpus, "ctx": [str(c) for c in ctx],
            "nms": {"nms_thresh": NMS[0], "nms_topk": NMS[1], "post_nms": NMS[2]}}


def dataset_info(args, dataset) -> dict:
    from gluon_ssd.data.open import DEFAULT_ROOTS, TRAINING_SPLITS

    return {"kind": args.dataset, "root": os.path.abspath(os.path.expanduser(args.dataset_root))
            if args.dataset_root else DEFAULT_ROOTS.get(args.dataset),
            "splits": args.splits or _split_text(TRAINING_SPLITS[args.dataset]["val"]), "image_dir": args.image_dir,
            "images": len(dataset), "classes": list(dataset.classes)}


def _split_text(splits) -> str:
    return ",".join(f"{s[0]}_{s[1]}" if isinstance(s, tuple) else s for s in splits)


# ---------------------------------------------------------------------------------------------- modes
def run_benchmark(args, name, ctx, out_dir):
    from gluon_ssd import cpu
    from gluon_ssd.classes import DATASET_CLASSES
    from gluon_ssd.eval import report
    from gluon_ssd.eval.loop import benchmark
    from gluon_ssd.model_zoo import get_spec

    classes = None
    if not args.deploy:
        try:
            spec = get_spec(name)
        except ValueError as err:
            raise UsageError(str(err)) from None
        if spec.dataset == "custom" and not args.classes_file:
            raise UsageError(f"--benchmark of {name} needs --classes-file (the model's classes)")
        classes = parse_classes(args.classes_file, "--classes-file", names=False) if spec.dataset == "custom" \
            else DATASET_CLASSES[spec.dataset]
    model = build_model(args, name, classes, ctx)
    if args.calibration or args.dtype == "int8":
        model = quantize_model(args, model, name, None, out_dir)
    print(f"-----benchmarking on {name} -----")
    stats = benchmark(model, args.data_shape, batch_size=args.batch_size, num_iterations=args.num_iterations,
                      ctx=None, progress=not args.no_progress)
    print(f"Inference speed on {name}, with batchsize {args.batch_size} is "
          f"{stats['images_per_second']:.2f} img/sec ({precision(args)}; CPU: {cpu.describe()})")
    path = report.write_json(os.path.join(out_dir, "benchmark.json"),
                             {"mode": "benchmark", **stats, "settings": settings(args, name, ctx)})
    print(f"wrote {path}")
    return 0


def run_results_file(args, dataset, out_dir):
    from gluon_ssd.eval import coco_stats, report

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
    print(report.ap_table(per_class, stats["AP"], "coco"))
    path = report.write_json(os.path.join(out_dir, "results.json"), {
        "mode": "results_file", "results_file": os.path.abspath(args.results), "metric": "coco",
        "per_class_ap": {k: report.finite(v) for k, v in per_class.items()}, "map": report.finite(stats["AP"]),
        "coco_stats": report.coco_stats_record(stats), "dataset": dataset_info(args, dataset)})
    print(f"wrote {path}")
    return 0


def run_evaluation(args, name, dataset, ctx, out_dir):
    from gluon_ssd.data.custom import BadImageError
    from gluon_ssd.eval import report
    from gluon_ssd.eval.loop import evaluate, make_metric

    metric_name = default_metric(args, dataset)
    # The COCO metric writes its results file under this prefix (plus a time stamp); renamed below.
    kwargs = {"save_prefix": os.path.join(out_dir, "coco_detections"), "cleanup": False} \
        if metric_name == "coco" else {}
    try:
        metric = make_metric(metric_name, dataset, args.data_shape, **kwargs)
    except ValueError as err:
        raise UsageError(f"--metric {metric_name}: {err}") from None
    model = build_model(args, name, dataset.classes, ctx)
    if args.calibration or args.dtype == "int8":
        model = quantize_model(args, model, name, dataset, out_dir)
    print(f"evaluating {name} on {len(dataset)} images of {args.dataset} "
          f"({dataset_info(args, dataset)['splits']}), {report.METRIC_TEXT[metric_name]}")
    try:
        result = evaluate(model, dataset, args.data_shape, batch_size=args.batch_size, ctx=None,
                          metric=metric, num_workers=args.num_workers, progress=not args.no_progress, nms=NMS)
    except (ValueError, BadImageError) as err:
        raise UsageError(str(err)) from None

    files = {}
    if metric_name == "coco":
        kept = report.keep_coco_detections(metric, os.path.join(out_dir, "coco_detections.json"))
        if kept:
            files["coco_detections"] = kept
        print(metric.summary)
    print(report.ap_table(result.per_class(), result.map, metric_name))
    from gluon_ssd import cpu

    print(f"evaluated {result.num_images} images in {result.seconds:.1f} s ({result.images_per_second:.1f} img/s, "
          f"{precision(args)}, CPU: {cpu.describe()})")
    if not args.no_plots:
        files["pr_curves"] = report.write_pr_curves(os.path.join(out_dir, "pr_curves.png"), metric_name, metric,
                                                    dataset, result.per_class(), name, files.get("coco_detections"))
    record = report.evaluation_record(metric_name, result, settings(args, name, ctx), dataset_info(args, dataset),
                                      files)
    print(f"wrote {report.write_json(os.path.join(out_dir, 'results.json'), record)}")
    return 0


def run(args) -> int:
    setup_logging(verbose=args.verbose)
    check_args(args)
    name = os.path.basename(args.model_prefix) if args.deploy else network_name(args)
    out_dir = args.out_dir or f"{args.save_prefix}{name}_eval"
    ctx = contexts("--num-gpus", args.num_gpus, gpu_ids=range(args.num_gpus),
                   cpu_hint="use --num-gpus 0 to run on the CPU")
    if args.num_gpus > 0:
        args.batch_size *= args.num_gpus
    if args.benchmark:
        return run_benchmark(args, name, ctx, out_dir)
    dataset = open_eval_dataset(args)
    if args.results:
        return run_results_file(args, dataset, out_dir)
    return run_evaluation(args, name, dataset, ctx, out_dir)


def main(argv=None) -> int:
    return run_main(PROG, parse_args, run, argv)


if __name__ == "__main__":
    import sys

    sys.exit(main())
