"""Building a training run from a :class:`TrainConfig`: model name, datasets, network, validation."""
from __future__ import annotations

import logging
import os

import numpy as np

from .. import specs
from .._mxnet import is_block, missing_message, mx
from ..classes import COCO_CLASSES, VOC_CLASSES
from ..data.open import TRAINING_SPLITS, DatasetError, find_dataset_root, open_dataset
from ..data.synthetic import VERSION as SYNTHETIC_VERSION
from ..data.synthetic import write_synthetic_dataset
from ..data.transforms import SSDDefaultTrainTransform
from ..registry import ENGINES, UNAVAILABLE, available_backends, register_backend
from ..specs import MODEL_SPECS
from .config import TrainConfig
from .loop import SeededAugmentation, TrainingError, TrainingLoop, resume_kind
from .schedule import parse_decay_epochs

log = logging.getLogger(__name__)

DATASETS = ("voc", "coco", "custom", "synthetic")

if mx is not None:
    # MXNet's engine, where MXNet is installed; other backends register theirs (gluon_ssd.registry).
    from .engine import MXNetEngine, training_contexts  # needs MXNet

    register_backend("mxnet", engine=MXNetEngine)


def engine_class(backend: str) -> type:
    """The training engine class of ``backend`` (:class:`gluon_ssd.train.loop.Engine`), from the registry after
    discovering the backends (:func:`gluon_ssd.registry.available_backends`)."""
    if backend not in ENGINES:
        available_backends()  # registers the project's own backends and those of installed packages
    if backend not in ENGINES:
        raise TrainingError(f"--backend {backend!r}: available training backends are {', '.join(sorted(ENGINES))}"
                            + (f" ({backend} is not available here: {UNAVAILABLE[backend]})"
                               if backend in UNAVAILABLE else ""))
    return ENGINES[backend]


def training_loop(cfg: TrainConfig, net, train_data, val_data, classes, eval_fn) -> TrainingLoop:
    """The loop of a run with the engine of ``cfg.backend`` (arguments as :class:`TrainingLoop`; ``net`` the
    gluon SSD :func:`prepare` built, None where MXNet is not installed)."""
    return TrainingLoop(cfg, engine_class(cfg.backend)(cfg, net, classes), train_data, val_data, classes, eval_fn)


def backbones() -> list[str]:
    return sorted({spec.backbone for spec in MODEL_SPECS.values()})


def resolve_model_name(network: str, data_shape: int, dataset: str) -> str:
    """The zoo model a (network, data shape, dataset) triple trains: :func:`gluon_ssd.specs.resolve_model_name`,
    its errors as :class:`TrainingError`."""
    try:
        return specs.resolve_model_name(network, data_shape, dataset, names=False)
    except ValueError as err:
        raise TrainingError(str(err)) from None


def dataset_root(cfg: TrainConfig) -> str:
    root = os.path.expanduser(cfg.dataset_root)
    if cfg.dataset == "synthetic" and cfg.dataset_root == TrainConfig.dataset_root:
        # The generator's version is in the name: a cache written by another version is not reused.
        root = os.path.join(root, f"synthetic-v{SYNTHETIC_VERSION}-{cfg.synthetic_seed}-{cfg.synthetic_train}-"
                                  f"{cfg.synthetic_val}")
    return root


def build_datasets(cfg: TrainConfig):
    """(train dataset, val dataset or None, classes, metric name), opened with
    :func:`gluon_ssd.data.open_dataset` as evaluation opens them; the splits are
    :data:`gluon_ssd.data.open.TRAINING_SPLITS`, which the dataset checker checks."""
    if cfg.dataset not in DATASETS:
        raise TrainingError(f"unknown --dataset {cfg.dataset!r}; choose one of {', '.join(DATASETS)}")
    root = dataset_root(cfg)
    if cfg.dataset == "synthetic" and not os.path.isfile(os.path.join(root, cfg.classes_file)):
        log.info("writing the synthetic dataset (%d train, %d val, seed %d) to %s", cfg.synthetic_train,
                 cfg.synthetic_val, cfg.synthetic_seed, root)
        write_synthetic_dataset(root, cfg.synthetic_train, cfg.synthetic_val, seed=cfg.synthetic_seed,
                                progress=cfg.progress)
    kind = "custom" if cfg.dataset == "synthetic" else cfg.dataset
    try:
        root = find_dataset_root(kind, root)
        train = open_dataset(kind, root, purpose="train", classes_file=cfg.classes_file)
        val = None
        # A custom dataset may come without a val split; VOC and COCO always validate.
        if kind != "custom" or (cfg.val_interval and os.path.isdir(root) and all(
                os.path.isfile(os.path.join(root, "ImageSets", "Main", f"{s}.txt"))
                for s in TRAINING_SPLITS["custom"]["val"])):
            val = open_dataset(kind, root, purpose="eval", classes_file=cfg.classes_file)
    except DatasetError as err:
        raise TrainingError(f"{err} (see README, 'Datasets')") from None
    classes = {"voc": VOC_CLASSES, "coco": COCO_CLASSES}.get(kind) or tuple(train.classes)
    return train, val, classes, "coco" if kind == "coco" else "voc07"


def parse_bool_or_path(value):
    """``--pretrained-base``: True / False (the spellings of :func:`gluon_ssd.specs.parse_pretrained`) or an
    existing file's path; else TrainingError."""
    value = specs.parse_pretrained(value)
    if isinstance(value, str) and not os.path.isfile(value):
        raise TrainingError(f"--pretrained-base {value}: no such file (use True, False or a path)")
    return value


def start_weights(cfg: TrainConfig) -> tuple:
    """(pretrained base, transfer) as the network is built: neither when --resume replaces every weight (so that
    continuing a run needs neither a download nor the files it started from)."""
    base = parse_bool_or_path(cfg.pretrained_base)  # the flag's errors in any case
    if cfg.resume:
        if base or cfg.transfer:
            log.info("--resume replaces every weight: the network is built without --pretrained-base/--transfer")
        return False, ""
    return base, cfg.transfer


def build_network(cfg: TrainConfig, classes, ctx):
    from ..model_zoo import build_ssd, file_class_count, get_model  # needs MXNet: run serves --backend torch too
    from ..params import load_ssd_parameters  # needs MXNet

    name = cfg.model_name
    custom = cfg.dataset in ("custom", "synthetic") or MODEL_SPECS[name].dataset == "custom"
    kwargs = {"classes": classes} if custom else {}
    base, transfer = start_weights(cfg)
    if not transfer:
        return get_model(name, pretrained_base=base, ctx=ctx, **kwargs)
    if os.path.isfile(cfg.transfer):
        try:
            n_file = file_class_count(cfg.transfer, name, classes if custom else None)
        except ValueError as err:
            raise TrainingError(f"--transfer {cfg.transfer}: {err}") from None
        if n_file is None:
            raise TrainingError(f"--transfer {cfg.transfer} does not hold a {name} network (its layers differ): "
                                f"pass a parameter file of {name} (GluonCV's or from a training run of "
                                f"--network {cfg.network} --data-shape {cfg.data_shape}) or a model name")
        # A file of 20 or 80 classes is taken to be VOC or COCO, so that their names can carry weights over.
        file_classes = {20: VOC_CLASSES, 80: COCO_CLASSES}.get(n_file) or tuple(f"class{i}" for i in range(n_file))
        # Built and loaded here rather than by get_model(pretrained=path, classes=...), which expects a VOC/COCO
        # row's file to hold that dataset's classes: a lite COCO network trained on 3 classes would not load.
        net = build_ssd(name, classes=file_classes)
        load_ssd_parameters(net, cfg.transfer, ctx=ctx)
    else:
        net = get_model(cfg.transfer, pretrained=True, ctx=ctx)
    if tuple(net.classes) != tuple(classes):
        net.reset_class(classes, reuse_weights=[c for c in classes if c in net.classes])
    return net


def start_amp(cfg: TrainConfig, ctx):
    """``mxnet.contrib.amp.init()`` for ``--amp`` with ``--backend mxnet``, where GluonCV's train_ssd.py calls it:
    before the network is built (AMP replaces mxnet's operators with casting ones, which the network's graph must
    be built from) and before the Trainer's ``amp.init_trainer``. Other backends have their own mixed precision.
    :func:`prepare` has checked the devices (:meth:`MXNetEngine.check_config`) before it calls this."""
    if not cfg.amp or cfg.backend != "mxnet":
        return
    from mxnet.contrib import amp

    amp.init()
    log.info("--amp: mxnet.contrib.amp initialized (float16 on %s)", ", ".join(str(c) for c in ctx))


def gluoncv_val_interval(cfg: TrainConfig) -> None:
    """COCO's validation interval as GluonCV's train_ssd.py sets it (its DataLoader path): ``--val-interval 1``
    (the default) becomes 10, because COCO's evaluation is slow. Logged; other values are kept."""
    if cfg.dataset == "coco" and cfg.val_interval == 1:
        cfg.val_interval = 10
        log.warning("--dataset coco: validating every 10 epochs instead of every epoch, as GluonCV's train_ssd.py "
                    "does for COCO (--val-interval 1 becomes 10); pass another --val-interval to choose")


def architecture_note(cfg: TrainConfig) -> str | None:
    """The warning for a --data-shape that is not the size of the architecture trained (and named), else None."""
    spec = MODEL_SPECS[cfg.model_name]
    if spec.base_size == cfg.data_shape:
        return None
    return (f"--network {cfg.network} --data-shape {cfg.data_shape}: there is no ssd_{cfg.data_shape}_{cfg.network} "
            f"model, so this run trains the {spec.base_size} architecture ({cfg.model_name}: its layers and anchor "
            f"sizes) at {cfg.data_shape}x{cfg.data_shape} and names its files {cfg.save_prefix}{cfg.model_name}_*; "
            f"GluonCV's train_ssd.py refuses this combination (its get_model has no "
            f"ssd_{cfg.data_shape}_{cfg.network}_{cfg.dataset})")


def prepare(cfg: TrainConfig):
    """Validate the configuration and build everything before any training work starts."""
    if cfg.dataset not in DATASETS:
        raise TrainingError(f"unknown --dataset {cfg.dataset!r}; choose one of {', '.join(DATASETS)}")
    if cfg.lr <= 0 or cfg.batch_size <= 0 or cfg.epochs <= 0:
        raise TrainingError("--lr, --batch-size and --epochs must be positive")
    if cfg.lr_mode not in ("step", "cosine"):
        raise TrainingError(f"--lr-mode {cfg.lr_mode!r}: use step or cosine")
    try:
        parse_decay_epochs(cfg.lr_decay_epoch)
    except ValueError as err:
        raise TrainingError(str(err)) from None
    cfg.model_name = resolve_model_name(cfg.network, cfg.data_shape, cfg.dataset)
    note = architecture_note(cfg)
    if note:
        log.warning(note)
    gluoncv_val_interval(cfg)
    if cfg.backend == "mxnet" and mx is None:
        raise TrainingError(missing_message("--backend mxnet"))
    engine_class(cfg.backend).check_config(cfg)
    # The gluon network is built on the training devices for MXNet's engine; other engines start from it built on
    # the CPU (the same weights for the same --seed), or without MXNet from their own (--backend torch:
    # convert.train.start).
    if cfg.backend == "mxnet":
        ctx = training_contexts(cfg)
    else:
        ctx = [mx.cpu()] if mx is not None else []
    if cfg.resume and not os.path.isfile(cfg.resume):
        raise TrainingError(f"--resume {cfg.resume}: no such file")
    if cfg.resume:
        resume_kind(cfg.resume)  # a checkpoint or a parameter file; whether it fits the network: at set-up
    train_ds, val_ds, classes, metric = build_datasets(cfg)
    np.random.seed(cfg.seed)
    if mx is None:
        net = None
        parse_bool_or_path(cfg.pretrained_base)  # the flag's errors before any work
        if cfg.transfer and not os.path.isfile(cfg.transfer) and cfg.transfer not in MODEL_SPECS:
            raise TrainingError(f"--transfer {cfg.transfer}: neither a file nor a model name")
    else:
        start_amp(cfg, ctx)
        mx.random.seed(cfg.seed)
        net = build_network(cfg, classes, ctx)
    folder = os.path.dirname(cfg.save_prefix + cfg.model_name)
    if folder:
        os.makedirs(folder, exist_ok=True)
    return net, train_ds, val_ds, classes, metric, ctx


def train(cfg: TrainConfig) -> list[dict]:
    """Run a whole training job; returns the per-epoch history."""
    from ..eval.loop import evaluate  # why: the evaluation stack (metrics, loaders) is needed only here

    net, train_ds, val_ds, classes, metric, ctx = prepare(cfg)
    transform = SSDDefaultTrainTransform(cfg.data_shape, cfg.data_shape, max_expand=cfg.max_expand)
    train_data = SeededAugmentation(train_ds, transform, cfg.seed)
    val_bs = cfg.val_batch_size or max(cfg.batch_size // max(len(ctx), 1), 1) * max(len(ctx), 1)

    def eval_fn(model, dataset):  # model: the gluon net, or a detector callable (another backend)
        return evaluate(model, dataset, cfg.data_shape, batch_size=val_bs,
                        ctx=ctx if is_block(model) else None, metric=metric,
                        num_workers=cfg.num_workers, progress=cfg.progress)

    return training_loop(cfg, net, train_data, val_ds, classes, eval_fn).fit()
