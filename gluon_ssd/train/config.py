"""The configuration of a training run: the flags of train_ssd.py, GluonCV's names and defaults."""
from __future__ import annotations

import dataclasses

from .._mxnet import default_backend


@dataclasses.dataclass
class TrainConfig:
    """Everything a run depends on (the CLI flags of train_ssd.py, GluonCV's names and defaults)."""

    network: str = "vgg16_atrous"
    data_shape: int = 300
    batch_size: int = 32
    dataset: str = "voc"
    dataset_root: str = "~/.mxnet/datasets/"
    num_workers: int = 4
    gpus: str = "0"
    cpu_contexts: int = 0
    epochs: int = 240
    resume: str = ""
    start_epoch: int = 0
    lr: float = 0.001
    lr_decay: float = 0.1
    lr_decay_epoch: str = "160,200"
    lr_mode: str = "step"
    warmup_epochs: float = 0.0
    momentum: float = 0.9
    wd: float = 0.0005
    log_interval: int = 100
    save_prefix: str = ""
    save_interval: int = 10
    val_interval: int = 1
    seed: int = 233
    syncbn: bool = False
    amp: bool = False
    horovod: bool = False
    kvstore: str = "device"
    pretrained_base: str = "True"
    transfer: str = ""
    classes_file: str = "classes.txt"
    synthetic_train: int = 1000
    synthetic_val: int = 200
    synthetic_seed: int = 0
    max_iterations: int = 0
    checkpoint_interval: int = 0
    val_batch_size: int = 0
    max_expand: float = 4.0
    progress: bool = True
    # mxnet (where MXNet is installed; the default there) or a registered training backend: torch trains the
    # PyTorch twin (convert/; the default where MXNet is not installed)
    backend: str = dataclasses.field(default_factory=default_backend)
    amp_dtype: str = ""  # --amp precision: mxnet float16; torch bf16 (default) or fp16 (CUDA, grad scaler)
    channels_last: bool = False  # torch backend: NHWC memory format
    compile: bool = False  # torch backend: torch.compile the network
    model_name: str = ""  # filled in by prepare()
