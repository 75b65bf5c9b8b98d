"""Building a training run from a :class:`TrainConfig`: model name, datasets, network, validation."""
from __future__ import annotations

import logging
import os

import mxnet as mx
import numpy as np

from ..classes import COCO_CLASSES, VOC_CLASSES
from ..data.synthetic import VERSION as SYNTHETIC_VERSION
from ..model_zoo import MODEL_SPECS
from .fit import TrainConfig, Trainer, TrainingError, _contexts

log = logging.getLogger(__name__)

DATASETS = ("voc", "coco", "custom", "synthetic")


def backbones() -> list[str]:
    return sorted({spec.backbone for spec in MODEL_SPECS.values()})


def resolve_model_name(network: str, data_shape: int, dataset: str) -> str:
    """The zoo model a (network, data shape, dataset) triple trains, as GluonCV's script names it.

    GluonCV names the model ``ssd_{data_shape}_{network}_{dataset}``; a data shape that is no base size
    of the network (e.g. resnet50_v1 at 384) trains the nearest base size's architecture at that shape.
    Custom datasets may use any dataset's architecture; the '_custom' row is preferred.
    """
    kind = {"voc": "voc", "coco": "coco"}.get(dataset, "custom")
    rows = {n: s for n, s in MODEL_SPECS.items() if s.backbone == network}
    if not rows:
        raise TrainingError(f"unknown --network {network!r}; choose one of: {', '.join(backbones())}")
    sizes = sorted({s.base_size for s in rows.values() if kind == "custom" or s.dataset == kind})
    if not sizes:
        raise TrainingError(f"there is no {network} SSD for the {dataset} dataset; available: {', '.join(rows)}")
    base = min(sizes, key=lambda s: (abs(s - data_shape), s))
    # ``base`` is the size of an existing row of an allowed dataset, so one of these names exists.
    return next(f"ssd_{base}_{network}_{suffix}" for suffix in (kind, "voc", "coco")
                if f"ssd_{base}_{network}_{suffix}" in rows)


def _find_voc_root(root):
    for cand in (root, os.path.join(root, "voc"), os.path.join(root, "VOCdevkit"),
                 os.path.join(root, "voc", "VOCdevkit")):
        if os.path.isdir(os.path.join(cand, "VOC2007")) or os.path.isdir(os.path.join(cand, "VOC2012")):
            return cand
    raise TrainingError(f"no VOC dataset under --dataset-root {root}: expected VOCdevkit/VOC2007 and/or VOC2012 "
                        "with Annotations/, JPEGImages/ and ImageSets/Main/ (see README, 'Datasets')")


def _find_coco_root(root):
    for cand in (root, os.path.join(root, "coco")):
        if os.path.isdir(os.path.join(cand, "annotations")):
            return cand
    raise TrainingError(f"no COCO dataset under --dataset-root {root}: expected annotations/instances_*2017.json "
                        "and train2017/, val2017/ image folders (see README, 'Datasets')")


def dataset_root(cfg: TrainConfig) -> str:
    root = os.path.expanduser(cfg.dataset_root)
    if cfg.dataset == "synthetic" and cfg.dataset_root == TrainConfig.dataset_root:
        # The generator's version is in the name: a cache written by another version is not reused.
        root = os.path.join(root, f"synthetic-v{SYNTHETIC_VERSION}-{cfg.synthetic_seed}-{cfg.synthetic_train}-"
                                  f"{cfg.synthetic_val}")
    return root


def build_datasets(cfg: TrainConfig):
    """(train dataset, val dataset or None, classes, metric name)."""
    from ..data import COCODetection, CustomVOCDetection, VOCDetection

    root = dataset_root(cfg)
    if cfg.dataset == "voc":
        root = _find_voc_root(root)
        train = VOCDetection(root, splits=((2007, "trainval"), (2012, "trainval")))
        val = VOCDetection(root, splits=((2007, "test"),), on_error="raise")
        return train, val, VOC_CLASSES, "voc07"
    if cfg.dataset == "coco":
        root = _find_coco_root(root)
        train = COCODetection(root, splits=("instances_train2017",))
        val = COCODetection(root, splits=("instances_val2017",), skip_empty=False, on_error="raise")
        return train, val, COCO_CLASSES, "coco"
    if cfg.dataset == "synthetic" and not os.path.isfile(os.path.join(root, cfg.classes_file)):
        from ..data.synthetic import write_synthetic_dataset

        log.info("writing the synthetic dataset (%d train, %d val, seed %d) to %s", cfg.synthetic_train,
                 cfg.synthetic_val, cfg.synthetic_seed, root)
        write_synthetic_dataset(root, cfg.synthetic_train, cfg.synthetic_val, seed=cfg.synthetic_seed,
                                progress=cfg.progress)
    if cfg.dataset in ("custom", "synthetic"):
        if not os.path.isdir(root):
            raise TrainingError(f"--dataset-root {root} does not exist: a custom dataset is a VOC-format folder "
                                "with JPEGImages/, Annotations/, ImageSets/Main/train.txt (and val.txt) and a "
                                f"{cfg.classes_file} listing the class names")
        train = CustomVOCDetection(root, splits=("train",), classes_file=cfg.classes_file)
        val = None
        if cfg.val_interval and os.path.isfile(os.path.join(root, "ImageSets", "Main", "val.txt")):
            val = CustomVOCDetection(root, splits=("val",), classes_file=cfg.classes_file, on_error="raise")
        return train, val, tuple(train.classes), "voc07"
    raise TrainingError(f"unknown --dataset {cfg.dataset!r}; choose one of {', '.join(DATASETS)}")


def _parse_bool_or_path(value):
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "1", "yes"):
        return True
    if str(value).lower() in ("false", "0", "no", ""):
        return False
    if not os.path.isfile(value):
        raise TrainingError(f"--pretrained-base {value}: no such file (use True, False or a path)")
    return value


def build_network(cfg: TrainConfig, classes, ctx):
    from ..model_zoo import get_model
    from ..params import read_param_file

    name = cfg.model_name
    custom = cfg.dataset in ("custom", "synthetic") or MODEL_SPECS[name].dataset == "custom"
    kwargs = {"classes": classes} if custom else {}
    if not cfg.transfer:
        return get_model(name, pretrained_base=_parse_bool_or_path(cfg.pretrained_base), ctx=ctx, **kwargs)
    if os.path.isfile(cfg.transfer):
        heads = read_param_file(cfg.transfer)["class_predictors.0.predictor.weight"].shape[0]
        num_anchors = len(MODEL_SPECS[name].ratios[0]) + 1
        file_classes = {20: VOC_CLASSES, 80: COCO_CLASSES}.get(heads // num_anchors - 1)
        if file_classes is None:
            file_classes = tuple(f"class{i}" for i in range(heads // num_anchors - 1))
        net = get_model(name, pretrained=cfg.transfer, classes=file_classes, ctx=ctx)
    else:
        net = get_model(cfg.transfer, pretrained=True, ctx=ctx)
    if tuple(net.classes) != tuple(classes):
        net.reset_class(classes, reuse_weights=[c for c in classes if c in net.classes])
    return net


def prepare(cfg: TrainConfig):
    """Validate the configuration and build everything before any training work starts."""
    if cfg.dataset not in DATASETS:
        raise TrainingError(f"unknown --dataset {cfg.dataset!r}; choose one of {', '.join(DATASETS)}")
    if cfg.lr <= 0 or cfg.batch_size <= 0 or cfg.epochs <= 0:
        raise TrainingError("--lr, --batch-size and --epochs must be positive")
    if cfg.lr_mode not in ("step", "cosine"):
        raise TrainingError(f"--lr-mode {cfg.lr_mode!r}: use step or cosine")
    cfg.model_name = resolve_model_name(cfg.network, cfg.data_shape, cfg.dataset)
    ctx = _contexts(cfg)
    if cfg.batch_size % len(ctx):
        raise TrainingError(f"--batch-size {cfg.batch_size} does not divide evenly over {len(ctx)} devices")
    if cfg.amp and all(c.device_type == "cpu" for c in ctx):
        raise TrainingError("--amp (float16 mixed precision) needs GPUs; drop --amp on CPU")
    if cfg.syncbn and len(ctx) > 1 and cfg.network != "vgg16_atrous":
        raise TrainingError("--syncbn is not supported with the mxnet.gluon.model_zoo backbones (their BatchNorms "
                            "cannot be swapped); train without it (VGG16 has no BatchNorm at all)")
    if cfg.resume and not os.path.isfile(cfg.resume):
        raise TrainingError(f"--resume {cfg.resume}: no such file")
    train_ds, val_ds, classes, metric = build_datasets(cfg)
    mx.random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    net = build_network(cfg, classes, ctx)
    folder = os.path.dirname(cfg.save_prefix + cfg.model_name)
    if folder:
        os.makedirs(folder, exist_ok=True)
    return net, train_ds, val_ds, classes, metric, ctx


def train(cfg: TrainConfig):
    """Run a whole training job; returns the per-epoch history."""
    from ..data.transforms import SSDDefaultTrainTransform
    from ..eval.loop import evaluate
    from .fit import SeededAugmentation

    net, train_ds, val_ds, classes, metric, ctx = prepare(cfg)
    transform = SSDDefaultTrainTransform(cfg.data_shape, cfg.data_shape, max_expand=cfg.max_expand)
    train_data = SeededAugmentation(train_ds, transform, cfg.seed)
    val_bs = cfg.val_batch_size or max(cfg.batch_size // max(len(ctx), 1), 1) * len(ctx)

    def eval_fn(model, dataset):
        return evaluate(model, dataset, cfg.data_shape, batch_size=val_bs, ctx=ctx, metric=metric,
                        num_workers=cfg.num_workers, progress=cfg.progress)

    return Trainer(cfg, net, train_data, val_ds, classes, eval_fn).fit()
