"""Train an SSD (GluonCV's train_ssd.py flags and defaults, plus multi-device/multi-machine options).

    python train_ssd.py --network vgg16_atrous --data-shape 512
    python train_ssd.py --network mobilenet1.0 --data-shape 256 --dataset synthetic --gpus '' \\
        --pretrained-base False --epochs 30 --lr 0.01 --batch-size 16
    torchrun --nproc-per-node 8 train_ssd.py --backend torch --gpus 0,1,2,3,4,5,6,7 --amp ...

The dataset root is found as evaluation finds it (:func:`gluon_ssd.data.open_dataset`): for VOC GluonCV's
``~/.mxnet/datasets`` (the default) or ``~/.mxnet/datasets/voc``, a VOCdevkit folder or a folder holding
VOCdevkit/. The log goes to the console and to ``{save-prefix}{model name}_train.log``.

Exit status: 0 on success, 2 for bad input (flags, dataset, model files), 130 when interrupted (the last
checkpoint is kept).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os

from ..model_store import ModelStoreError
from ..train.config import TrainConfig
from ..train.loop import TrainingError
from ..train.run import resolve_model_name, train
from .common import ArgumentParser, UsageError, run_main, setup_logging

PROG = "train_ssd.py"
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"

log = logging.getLogger(__name__)


def parse_args(argv=None):
    """The flags as a :class:`gluon_ssd.train.config.TrainConfig`."""
    d = TrainConfig()
    p = ArgumentParser(prog=PROG, description="Train an SSD network (GluonCV-compatible flags).",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--network", default=d.network, help="backbone: vgg16_atrous, resnet50_v1, mobilenet1.0, ...")
    p.add_argument("--data-shape", type=int, default=d.data_shape, help="input size (square)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch size over all devices")
    p.add_argument("--dataset", default=d.dataset, help="voc, coco, custom (VOC-format folder) or synthetic")
    p.add_argument("--dataset-root", default=d.dataset_root,
                   help="where the dataset lives (voc: a folder holding VOC2007/, VOCdevkit/ or voc/)")
    p.add_argument("--classes-file", default=d.classes_file, help="class list of a custom dataset")
    p.add_argument("-j", "--num-workers", dest="num_workers", type=int, default=d.num_workers,
                   help="data loading worker processes")
    p.add_argument("--gpus", default=d.gpus, help="GPU ids, e.g. 0,1,2,3; empty for CPU")
    p.add_argument("--cpu-contexts", type=int, default=d.cpu_contexts,
                   help="with --gpus '': split each batch over N CPU contexts")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--resume", default=d.resume,
                   help="a *_last.ckpt checkpoint to continue exactly; or a .params file of this model (GluonCV's or "
                        "ours) to continue from its weights alone at --start-epoch (fresh optimizer momentum, data "
                        "order and best mAP)")
    p.add_argument("--start-epoch", type=int, default=d.start_epoch,
                   help="the epoch a run without a checkpoint starts at (its learning rate is that epoch's)")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--lr-decay", type=float, default=d.lr_decay)
    p.add_argument("--lr-decay-epoch", default=d.lr_decay_epoch,
                   help="epochs at which --lr-mode step decays, comma-separated; fractional values (160.5) decay at "
                        "the start of the next whole epoch, as in GluonCV")
    p.add_argument("--lr-mode", default=d.lr_mode, choices=["step", "cosine"])
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs)
    p.add_argument("--momentum", type=float, default=d.momentum)
    p.add_argument("--wd", type=float, default=d.wd)
    p.add_argument("--log-interval", type=int, default=d.log_interval)
    p.add_argument("--save-prefix", default=d.save_prefix, help="prefix of the output files (model name appended)")
    p.add_argument("--save-interval", type=int, default=d.save_interval,
                   help="epochs 0, N, 2N, ... (0-based) validate and write {prefix}_{epoch:04d}_{map:.4f}.params "
                        "(0: none); a better mAP always writes {prefix}_best.params")
    p.add_argument("--val-interval", type=int, default=d.val_interval,
                   help="epochs 0, N, 2N, ... (0-based, as GluonCV) validate, and the saving epochs; 0: no validation "
                        "at all (nor GluonCV's .params files). COCO: 1 becomes 10, as in GluonCV")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--syncbn", action="store_true",
                   help="synchronized BatchNorm over devices: --backend torch (over torchrun processes); with "
                        "--backend mxnet refused on several devices with a BatchNorm backbone (the message says why)")
    p.add_argument("--backend", default=d.backend,
                   help="mxnet (gluon_ssd) or torch (the PyTorch twin of convert/, same recipe; multi-GPU and "
                        "multi-machine through torchrun); the default is mxnet where MXNet is installed, else torch")
    p.add_argument("--amp", action="store_true",
                   help="mixed precision: mxnet float16 on GPUs (mxnet.contrib.amp.init() before the network is "
                        "built, as GluonCV); torch --amp-dtype on CUDA or CPU")
    p.add_argument("--amp-dtype", default=d.amp_dtype, choices=["", "bf16", "fp16"],
                   help="torch backend: bf16 (default; CPU needs AVX-512 BF16 or AMX to gain) or fp16 (CUDA, "
                        "with a gradient scaler)")
    p.add_argument("--channels-last", action="store_true", help="torch backend: NHWC memory format")
    p.add_argument("--compile", action="store_true", help="torch backend: torch.compile the network")
    p.add_argument("--horovod", action="store_true", help="distributed training with horovod")
    p.add_argument("--kvstore", default=d.kvstore, help="device, local, dist_sync, dist_device_sync, ...")
    p.add_argument("--pretrained-base", default=d.pretrained_base, help="True, False or a backbone file")
    p.add_argument("--transfer", default=d.transfer, help="fine-tune from a zoo model name or a parameter file")
    p.add_argument("--synthetic-train", type=int, default=d.synthetic_train)
    p.add_argument("--synthetic-val", type=int, default=d.synthetic_val)
    p.add_argument("--synthetic-seed", type=int, default=d.synthetic_seed)
    p.add_argument("--max-iterations", type=int, default=0, help="stop after this many iterations (0: no limit)")
    p.add_argument("--checkpoint-interval", type=int, default=0,
                   help="also checkpoint every N iterations (0: at the end of each epoch only)")
    p.add_argument("--val-batch-size", type=int, default=0)
    p.add_argument("--max-expand", type=float, default=d.max_expand,
                   help="largest zoom-out of the augmentation (GluonCV: 4; 1 turns it off)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    values["progress"] = not args.no_progress
    return TrainConfig(**values)


def run(cfg) -> int:
    try:
        name = resolve_model_name(cfg.network, cfg.data_shape, cfg.dataset)
        # Under torchrun or horovodrun every process logs; the ones after the first to files of their own.
        rank = int(os.environ.get("RANK") or os.environ.get("HOROVOD_RANK") or 0)
        suffix = f".rank{rank}" if rank else ""
        setup_logging(level=logging.INFO, log_file=f"{cfg.save_prefix}{name}_train{suffix}.log", fmt=LOG_FORMAT,
                      datefmt="%H:%M:%S")
        log.info("arguments: %s", dataclasses.asdict(cfg))
        history = train(cfg)  # checks every argument and opens the data before any work
    except (TrainingError, ValueError, FileNotFoundError) as err:
        raise UsageError(str(err)) from None
    except ModelStoreError as err:  # the ImageNet backbone (or --transfer model) cannot be had
        raise UsageError(f"{err} To train from scratch instead, pass --pretrained-base False.") from None
    best = [h["map"] for h in history if "map" in h]
    print(f"done: {len(history)} epoch(s)" + (f", best mAP {max(best):.4f}" if best else ""))
    return 0


def main(argv=None) -> int:
    return run_main(PROG, parse_args, run, argv, interrupted="interrupted; the last checkpoint is kept")


if __name__ == "__main__":
    import sys

    sys.exit(main())
