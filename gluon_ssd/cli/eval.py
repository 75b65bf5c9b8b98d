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
``--backend torch|onnxruntime|openvino --dtype int8`` calibrates the PyTorch twin on the same images (ONNX Runtime
int8; OpenVINO: NNCF), without MXNet.

Differences from GluonCV: the last partial batch is evaluated (GluonCV's loader drops it); --calibration
evaluates the quantized model after writing it (GluonCV stops there); class heads whose int8 logits would move
the scores stay float32 (--quantize-heads auto; GluonCV's graph: --quantize-heads all).

Exit status: 0 on success, 2 for bad input (flags, dataset, model, results file), 130 when interrupted.
"""
from __future__ import annotations

import os

from .. import cpu
from ..calibration import calibrate as calibrate_int8
from ..classes import DATASET_CLASSES
from ..model_store import ModelStoreError
from ..predict import parse_pretrained
from ..specs import NMS_THRESH, NMS_TOPK, POST_NMS, get_spec, resolve_model_name
from .common import (
    ArgumentParser,
    UsageError,
    backend_options,
    check_at_least,
    contexts,
    load_model,
    parse_classes,
    resolve_backend,
    run_main,
    setup_logging,
)

PROG = "eval_ssd.py"
NMS = (NMS_THRESH, NMS_TOPK, POST_NMS)  # nms_thresh, nms_topk, post_nms: GluonCV's eval_ssd.py sets its SSD's defaults
_DEFAULT = " (default: %(default)s)"
_ON = {"action": "store_true"}
# The flags, in --help order: (names, add_argument keywords).
FLAGS = (
    ("--network", dict(default="vgg16_atrous", help="base network, e.g. vgg16_atrous, resnet50_v1, mobilenet1.0 "
                       "(or a full zoo name such as ssd_300_vgg16_atrous_voc)" + _DEFAULT)),
    ("--deploy", dict(_ON, help="evaluate an exported model (--model-prefix)-symbol.json / -0000.params")),
    ("--model-prefix", dict(default=None, help="prefix of the exported model for --deploy")),
    ("--quantized", dict(_ON, help="evaluate GluonCV's int8 model {name}_int8 (VOC vgg16_atrous 300/512, "
                         "resnet50_v1 512, mobilenet1.0 512; CPU)")),
    ("--data-shape", dict(type=int, default=300, help="input size" + _DEFAULT)),
    ("--batch-size", dict(type=int, default=64, help="images per batch, times --num-gpus when > 0" + _DEFAULT)),
    ("--benchmark", dict(_ON, help="measure inference img/s on random input (no dataset needed)")),
    ("--num-iterations", dict(type=int, default=100, help="timed batches of --benchmark" + _DEFAULT)),
    ("--dataset", dict(default="voc", choices=("voc", "coco", "custom"), help="dataset kind" + _DEFAULT)),
    ("--dataset-root", dict(default=None, help="voc: a folder holding VOC2007/ (GluonCV's ~/.mxnet/datasets/voc, "
                            "the default, or a VOCdevkit folder) or one holding VOCdevkit/; coco: the folder with "
                            "annotations/ (default ~/.mxnet/datasets/coco); custom: a VOC-layout folder or a COCO "
                            "instances JSON")),
    ("--splits", dict(default=None, help="comma-separated splits: voc YEAR_NAME (default 2007_test), coco JSON "
                      "names (default instances_val2017), custom VOC-layout split names (default val)")),
    ("--image-dir", dict(default=None, help="coco / custom JSON: the image folder (relative to --dataset-root for "
                         "coco); default: the split's folder (instances_val2017 -> val2017)")),
    ("--classes-file", dict(default=None, help="custom: file with one class name per line (default: classes.txt in "
                            "the dataset folder; a COCO JSON's own categories otherwise)")),
    ("--metric", dict(default=None, choices=("voc07", "voc", "coco"),
                      help="default: voc07 for VOC and VOC-layout custom data, coco for COCO data")),
    ("--results", dict(default=None, metavar="JSON",
                       help="score this COCO results file against the dataset's annotations (no model)")),
    ("--out-dir", dict(default=None, help="output folder (default: ./{save-prefix}{network name}_eval)")),
    ("--save-prefix", dict(default="", help="prefix of the default output folder's name: results go to "
                           "./{save-prefix}{network name}_eval/, COCO detections kept there as coco_detections.json "
                           "(GluonCV: the prefix of a temporary COCO results file, {save-prefix}_eval_{time}.json, "
                           "deleted after scoring)")),
    ("-j --num-workers", dict(dest="num_workers", type=int, default=4, help="data loading processes" + _DEFAULT)),
    ("--num-gpus", dict(type=int, default=0, help="GPUs to use, 0 for CPU" + _DEFAULT)),
    ("--pretrained", dict(default="True", help="'True' for GluonCV's published weights (model store) or a "
                          "parameter file path (GluonCV's or from training)" + _DEFAULT)),
    ("--backend", dict(default=None, help="inference backend: mxnet, torch (the PyTorch twin), onnxruntime or "
                       "openvino (the twin's graph in that runtime, CPU); default: mxnet where MXNet is installed, "
                       "else torch")),
    ("--device", dict(default="cpu", help="--backend torch: cpu or cuda[:N] (MXNet uses --num-gpus)" + _DEFAULT)),
    ("--dtype", dict(default="fp32", choices=("fp32", "tf32", "fp16", "bf16", "int8"),
                     help="--backend torch: network precision (fp16/bf16 autocast; int8: ONNX Runtime, calibrated "
                          "like --calibration, CPU; post-processing stays float32); onnxruntime: fp32, int8; "
                          "openvino: fp32, bf16, int8 (NNCF)" + _DEFAULT)),
    ("--no-plots", dict(_ON, help="do not draw the precision/recall curves")),
    ("--no-progress", dict(_ON, help="no progress bar")),
    ("-v --verbose", dict(_ON, help="log library messages at INFO level")),
    ("--calibration", dict(_ON, help="quantize to int8 (MXNet, CPU), write the model to "
                           "OUT_DIR/model/{name}-quantized-{calib-mode}-symbol.json/-0000.params/-meta.json, then "
                           "evaluate it (GluonCV writes model/ beside its eval_ssd.py script and stops without "
                           "evaluating); re-evaluate later with --deploy --model-prefix")),
    ("--num-calib-batches", dict(type=int, default=5, help="validation batches used for calibration" + _DEFAULT)),
    ("--quantized-dtype", dict(default="auto", choices=("auto", "int8", "uint8"),
                               help="int8 activations: auto (uint8 after ReLU), int8 or uint8" + _DEFAULT)),
    ("--quantize-heads", dict(nargs="?", const="all", default="auto", choices=("auto", "all", "none"),
                              help="int8 class prediction heads: auto (those whose int8 logits move no score on the "
                              "calibration images by more than 0.05; the others stay float32), all (GluonCV's exact "
                              "graph; the bare flag), none" + _DEFAULT)),
    ("--calib-mode", dict(default="naive", choices=("naive", "entropy", "none"),
                          help="naive (min/max), entropy (KL thresholds) or none (ranges at run time)" + _DEFAULT)),
)
HEAD_CHOICES = {"auto": "auto", "all": True, "none": False}
CALIBRATION = ("calib_mode", "num_calib_batches", "quantized_dtype", "quantize_heads")
RECORDED = ("backend", "pretrained", "deploy", "model_prefix", "quantized", "data_shape", "batch_size", "num_workers",
            "num_gpus")


def parse_args(argv=None):
    p = ArgumentParser(
        prog=PROG, description="Evaluate SSD networks (GluonCV's flags; every image of the split is scored).",
        epilog="Exit status: 0 on success, 2 for bad input (flags, dataset, model, results file).")
    for names, keywords in FLAGS:
        p.add_argument(*names.split(), **keywords)
    return p.parse_args(argv)


def check_args(args):
    resolve_backend(args, mxnet_only=("deploy", "quantized", "calibration"))
    int8 = [f for f, on in (("--quantized", args.quantized), ("--calibration", args.calibration),
                            ("--dtype int8", args.dtype == "int8")) if on]
    first = int8[0] if int8 else ""
    refusals = (  # (refused, why)
        (len(int8) > 1, f"{' and '.join(int8)}: give one way to run int8"),
        (int8 and args.num_gpus > 0, f"{first}: int8 inference runs on the CPU only (oneDNN / ONNX Runtime "
                                     "kernels); drop --num-gpus"),
        (int8 and args.device != "cpu", f"{first}: int8 inference runs on the CPU only; use --device cpu"),
        ((args.quantized or args.calibration) and args.backend != "mxnet",
         f"{first} is MXNet's int8 flow; for the PyTorch twin use --backend torch --dtype int8"),
        (calibrates(args) and args.num_calib_batches < 1,
         f"--num-calib-batches must be at least 1 to calibrate, got {args.num_calib_batches}"),
        (args.dtype == "int8" and args.backend == "mxnet",
         "--dtype int8 quantizes the PyTorch twin (--backend torch); MXNet's int8 is --calibration"),
        (args.dtype == "int8" and args.calib_mode == "none",
         "--dtype int8 calibrates the twin: --calib-mode naive or entropy"),
        (args.deploy and (args.quantized or args.calibration),
         f"--deploy evaluates an exported model as it is; drop {first}"),
    )
    for refused, why in refusals:
        if refused:
            raise UsageError(why)
    check_at_least(args, 1, "data_shape", "batch_size", "num_iterations")
    check_at_least(args, 0, "num_workers", "num_gpus")
    if args.deploy and not args.model_prefix:
        raise UsageError("--deploy needs --model-prefix PREFIX (the files PREFIX-symbol.json and "
                         "PREFIX-0000.params written by export)")
    if args.results and args.benchmark:
        raise UsageError("--results scores a results file and --benchmark times the model: give one")


def calibrates(args) -> bool:
    """Whether the model is quantized here: --calibration (MXNet) or --dtype int8 (the twin)."""
    return args.calibration or args.dtype == "int8"


def network_name(args) -> str:
    """GluonCV's ``ssd_{data-shape}_{network}_{dataset}``; a data shape that is no base size of the network
    evaluates the nearest base size's architecture at that shape, as train_ssd.py trains it."""
    try:
        return resolve_model_name(args.network, args.data_shape, args.dataset, int8=False)
    except ValueError as err:
        raise UsageError(str(err)) from None


def open_eval_dataset(args):
    """The dataset of --dataset / --dataset-root / --splits, every image, unreadable files an error."""
    from gluon_ssd.data.open import DatasetError, find_dataset_root, open_dataset  # loads MXNet: not for --help

    try:
        root = find_dataset_root(args.dataset, args.dataset_root)
        classes = parse_classes(args.classes_file, "--classes-file", root=root if os.path.isdir(root) else None,
                                names=False) if args.dataset == "custom" else None
        return open_dataset(args.dataset, root, args.splits, purpose="eval", classes=classes,
                            image_dir=args.image_dir)
    except DatasetError as err:
        raise UsageError(str(err)) from None


def model_classes(args, name) -> list:
    """The classes of the network (--benchmark has no dataset): its dataset's, --classes-file for a custom one."""
    try:
        kind = get_spec(name).dataset
    except ValueError as err:
        raise UsageError(str(err)) from None
    if kind != "custom":
        return DATASET_CLASSES[kind]
    if not args.classes_file:
        raise UsageError(f"--benchmark of {name} needs --classes-file (the model's classes)")
    return parse_classes(args.classes_file, "--classes-file", names=False)


def build_model(args, name, classes, ctx, out_dir, dataset=None):
    """The model to evaluate: the exported block of --deploy, GluonCV's int8 model (--quantized) or a detector of
    --backend (gluon_ssd.predict) whose weights fit ``classes``, quantized here for --calibration / --dtype int8."""
    from gluon_ssd.eval.models import check_weights, load_gluoncv_int8  # loads MXNet: not for --help

    if args.deploy:
        from gluon_ssd.deploy import load_exported  # needs MXNet: only --deploy loads it

        try:
            return load_exported(args.model_prefix, ctx=ctx[0], classes=classes)
        except (FileNotFoundError, ValueError) as err:
            raise UsageError(f"--deploy --model-prefix {args.model_prefix}: {err}") from None
    dtype = "fp32" if args.dtype == "int8" else args.dtype  # the twin is quantized after loading
    options = backend_options(args.backend, args.device, dtype, "--num-gpus")
    pretrained = parse_pretrained(args.pretrained)
    try:
        if args.quantized:
            return load_gluoncv_int8(name, pretrained)
        custom = check_weights(name, pretrained, classes, args.dataset,
                               f"--network {args.network} --data-shape {args.data_shape}")
    except (ValueError, FileNotFoundError, ModelStoreError) as err:
        raise UsageError(str(err)) from None
    model = load_model(args.backend, name, pretrained=pretrained, classes=list(classes) if custom else None,
                       ctx=ctx, nms_thresh=NMS[0], nms_topk=NMS[1], post_nms=NMS[2], **options)
    return calibrate(args, model, name, dataset, out_dir) if calibrates(args) else model


def calibrate(args, model, name, dataset, out_dir):
    """The int8 model, calibrated on the first --num-calib-batches validation batches (random images without a
    dataset) and written to OUT_DIR/model/ (gluon_ssd.calibration.calibrate)."""
    from gluon_ssd.data.custom import BadImageError  # loads MXNet: not for --help
    from gluon_ssd.eval.loop import calibration_batches, random_batches  # loads MXNet: not for --help

    what = "--calibration" if args.calibration else f"--backend {args.backend} --dtype int8"
    try:
        batches = random_batches(args.data_shape, args.batch_size, args.num_calib_batches) if dataset is None \
            else calibration_batches(dataset, args.data_shape, args.batch_size, args.num_calib_batches,
                                     num_workers=args.num_workers)
        int8 = calibrate_int8(model, batches, os.path.join(out_dir, "model"), name, args.backend, args.calib_mode,
                              args.quantized_dtype, HEAD_CHOICES[args.quantize_heads], nms=NMS)
    except (ValueError, BadImageError, ImportError) as err:  # ImportError: a runtime or nncf not installed
        raise UsageError(f"{what}: {err}") from None
    again = f" (evaluate it again with --deploy --model-prefix {int8.prefix})" if args.calibration else ""
    print(f"wrote the int8 {'model' if args.calibration else 'twin'} ({args.calib_mode} calibration on "
          f"{int8.num_examples} images): {', '.join(int8.files)}{again}")
    return int8.model


def records(args, name, ctx) -> tuple[str, dict]:
    """The precision the model runs at and the settings of the results files."""
    from gluon_ssd.eval import report  # loads MXNet: not for --help

    precision = report.precision(args.backend, args.dtype, args.quantized or calibrates(args))
    calibration = {k: getattr(args, k) for k in CALIBRATION} if calibrates(args) else None
    return precision, report.settings_record(name, ctx, NMS, precision=precision, calibration=calibration,
                                             **{k: getattr(args, k) for k in RECORDED})


def dataset_info(args, dataset) -> dict:
    from gluon_ssd.eval import report  # loads MXNet: not for --help

    return report.dataset_record(args.dataset, args.dataset_root, args.splits, args.image_dir, dataset)


# ---------------------------------------------------------------------------------------------- modes
def run_benchmark(args, name, ctx, out_dir):
    from gluon_ssd.eval import report  # loads MXNet: not for --help
    from gluon_ssd.eval.loop import benchmark  # loads MXNet: not for --help

    model = build_model(args, name, None if args.deploy else model_classes(args, name), ctx, out_dir)
    print(f"-----benchmarking on {name} -----")
    stats = benchmark(model, args.data_shape, batch_size=args.batch_size, num_iterations=args.num_iterations,
                      ctx=None, progress=not args.no_progress)
    precision, settings = records(args, name, ctx)
    print(f"Inference speed on {name}, with batchsize {args.batch_size} is "
          f"{stats['images_per_second']:.2f} img/sec ({precision}; CPU: {cpu.describe()})")
    path = report.write_json(os.path.join(out_dir, "benchmark.json"), {"mode": "benchmark", **stats,
                                                                       "settings": settings})
    print(f"wrote {path}")
    return 0


def run_results_file(args, dataset, out_dir):
    from gluon_ssd.eval import report  # loads MXNet: not for --help

    try:
        stats = report.score_results_file(dataset, args.results)
    except ValueError as err:
        raise UsageError(str(err)) from None
    print(stats["summary"])
    print(report.ap_table(stats["per_class"], stats["AP"], "coco"))
    path = report.write_json(os.path.join(out_dir, "results.json"),
                             report.results_file_record(args.results, stats, dataset_info(args, dataset)))
    print(f"wrote {path}")
    return 0


def run_evaluation(args, name, dataset, ctx, out_dir):
    from gluon_ssd.data.custom import BadImageError  # loads MXNet: not for --help
    from gluon_ssd.eval import report  # loads MXNet: not for --help
    from gluon_ssd.eval.loop import evaluate, make_metric  # loads MXNet: not for --help

    coco_data = args.dataset != "voc" and hasattr(dataset, "contiguous_id_to_json")
    metric_name = args.metric or ("coco" if coco_data else "voc07")
    # The COCO metric writes its results file under this prefix (plus a time stamp); the report renames it.
    kwargs = {"save_prefix": os.path.join(out_dir, "coco_detections"), "cleanup": False} \
        if metric_name == "coco" else {}
    try:
        metric = make_metric(metric_name, dataset, args.data_shape, **kwargs)
    except ValueError as err:
        raise UsageError(f"--metric {metric_name}: {err}") from None
    model = build_model(args, name, dataset.classes, ctx, out_dir, dataset)
    precision, settings = records(args, name, ctx)
    info = dataset_info(args, dataset)
    print(f"evaluating {name} on {len(dataset)} images of {args.dataset} ({info['splits']}), "
          f"{report.METRIC_TEXT[metric_name]}")
    try:
        result = evaluate(model, dataset, args.data_shape, batch_size=args.batch_size, ctx=None,
                          metric=metric, num_workers=args.num_workers, progress=not args.no_progress, nms=NMS)
    except (ValueError, BadImageError) as err:
        raise UsageError(str(err)) from None
    if metric_name == "coco":
        print(metric.summary)
    print(report.ap_table(result.per_class(), result.map, metric_name))
    print(f"evaluated {result.num_images} images in {result.seconds:.1f} s ({result.images_per_second:.1f} img/s, "
          f"{precision}, CPU: {cpu.describe()})")
    path = report.write_evaluation(out_dir, metric_name, metric, result, dataset, name, settings, info,
                                   plots=not args.no_plots)
    print(f"wrote {path}")
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
