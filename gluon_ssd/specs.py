"""The model zoo as data, with no framework in it: one row per SSD, the VGG layer tables and the anchor
formula. Both the MXNet networks (gluon_ssd.nn) and the PyTorch twins (convert/) are built from here, so a
machine with only torch and numpy can read it.
"""
from __future__ import annotations

import dataclasses

import numpy as np

# Input normalization of every model (RGB, after /255); the VGG networks fold the std back in (init_scale).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# ResNet34-v1b of GluonCV's ResNetV1bSSD: blocks and channels per stage, and the SSD's strides (layer3's
# stride removed, so both taps keep more resolution).
RESNET34_V1B_LAYERS = (3, 4, 6, 3)
RESNET34_V1B_CHANNELS = (64, 128, 256, 512)
RESNET34_V1B_SSD_STRIDES = (1, 2, 1, 2)

# Key prefixes of GluonCV's resnet34_v1b classifier file (the backbone store file) -> the SSD feature extractor's
# structural keys (ResNetV1bSSD: stage1 = conv1, bn1, relu, pool, layer1, layer2; stage2 = layer3, layer4).
BACKBONE_KEY_MAP = (("conv1.", "stage1.0."), ("bn1.", "stage1.1."), ("layer1.", "stage1.4."),
                    ("layer2.", "stage1.5."), ("layer3.", "stage2.0."), ("layer4.", "stage2.1."))


def transition_channels(filters: int, reduce_ratio: float = 1.0, min_depth: int = 128) -> int:
    """Channels of the 1x1 transition conv before an extra layer of ``filters`` channels (GluonCV's
    FeatureExpander; the ResNet34-v1b extras use the same rule with reduce_ratio 1, min_depth 128)."""
    return max(int(min_depth), int(round(filters * reduce_ratio)))


# (convs per stage, channels) of VGG16's five conv stages.
VGG16_STAGES = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))

# Extra layers per input size: each stage is a list of (channels, kernel, stride, padding).
VGG_EXTRAS = {
    300: (((256, 1, 1, 0), (512, 3, 2, 1)),
          ((128, 1, 1, 0), (256, 3, 2, 1)),
          ((128, 1, 1, 0), (256, 3, 1, 0)),
          ((128, 1, 1, 0), (256, 3, 1, 0))),
    512: (((256, 1, 1, 0), (512, 3, 2, 1)),
          ((128, 1, 1, 0), (256, 3, 2, 1)),
          ((128, 1, 1, 0), (256, 3, 2, 1)),
          ((128, 1, 1, 0), (256, 3, 2, 1)),
          ((128, 1, 1, 0), (256, 4, 1, 1))),
}

_R6 = ((1, 2, 0.5),) + ((1, 2, 0.5, 3, 1.0 / 3),) * 3 + ((1, 2, 0.5),) * 2
_R7 = ((1, 2, 0.5),) + ((1, 2, 0.5, 3, 1.0 / 3),) * 4 + ((1, 2, 0.5),) * 2
_STEPS_300 = (8, 16, 32, 64, 100, 300)
_STEPS_512_6 = (16, 32, 64, 128, 256, 512)
_STEPS_512_7 = (8, 16, 32, 64, 128, 256, 512)
_SIZES_300 = (21, 45, 99, 153, 207, 261, 315)
_SIZES_300_VOC = (30, 60, 111, 162, 213, 264, 315)
_SIZES_512_7 = (51.2, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6)
_SIZES_512_6 = (51.2, 102.4, 189.4, 276.4, 363.52, 450.6, 492)
_SIZES_512_6_COCO = (51.2, 133.12, 215.04, 296.96, 378.88, 460.8, 542.72)
_FILTERS = (512, 512, 256, 256)
_MOBILENET_TAPS = ("relu22_fwd", "relu26_fwd")


@dataclasses.dataclass(frozen=True)
class SSDSpec:
    """One SSD of the zoo.

    backbone: 'vgg16_atrous', 'resnet34_v1b', or a ``mxnet.gluon.model_zoo.vision`` name.
    taps: backbone layers whose outputs feed prediction heads (vision backbones only).
    filters: channels of the extra layers appended to the last tap (vision backbones only).
    sizes, ratios, steps: anchor configuration (len(steps) + 1 sizes).
    dataset: 'voc', 'coco' or 'custom' (the class list).
    """

    base_size: int
    backbone: str
    dataset: str
    sizes: tuple
    ratios: tuple
    steps: tuple
    taps: tuple = ()
    filters: tuple = ()
    anchor_kind: str = "ssd"
    predictor_kernel: int = 3
    reduce_ratio: float = 1.0
    min_depth: int = 128

    @property
    def base_store_name(self) -> str:
        """Name of the pretrained backbone file in the model store."""
        return self.backbone


def _family(base_size, backbone, datasets, **common):
    """Rows for one architecture on several datasets; ``datasets`` maps dataset -> sizes."""
    return {f"ssd_{base_size}_{backbone}_{ds}": SSDSpec(base_size, backbone, ds, sizes=sizes, **common)
            for ds, sizes in datasets.items()}


MODEL_SPECS: dict[str, SSDSpec] = {
    **_family(300, "vgg16_atrous", {"voc": _SIZES_300_VOC, "coco": _SIZES_300, "custom": _SIZES_300},
              ratios=_R6, steps=_STEPS_300),
    **_family(512, "vgg16_atrous", {"voc": _SIZES_512_7, "coco": _SIZES_512_7, "custom": _SIZES_512_7},
              ratios=_R7, steps=_STEPS_512_7),
    **_family(512, "resnet18_v1", {"voc": _SIZES_512_6, "coco": _SIZES_512_6, "custom": _SIZES_512_6},
              ratios=_R6, steps=_STEPS_512_6, taps=("stage3_activation1", "stage4_activation1"),
              filters=_FILTERS),
    **_family(512, "resnet50_v1", {"voc": _SIZES_512_6, "coco": _SIZES_512_6_COCO,
                                   "custom": _SIZES_512_6_COCO},
              ratios=_R6, steps=_STEPS_512_6, taps=("stage3_activation5", "stage4_activation2"),
              filters=_FILTERS),
    **_family(512, "resnet101_v2", {"voc": _SIZES_512_6},
              ratios=_R6, steps=_STEPS_512_6, taps=("stage3_activation22", "stage4_activation2"),
              filters=_FILTERS),
    **_family(512, "resnet152_v2", {"voc": _SIZES_512_7},
              ratios=_R7, steps=_STEPS_512_7,
              taps=("stage2_activation7", "stage3_activation35", "stage4_activation2"), filters=_FILTERS),
    **_family(512, "mobilenet1.0", {"voc": _SIZES_512_6, "coco": _SIZES_512_6, "custom": _SIZES_512_6},
              ratios=_R6, steps=_STEPS_512_6, taps=_MOBILENET_TAPS, filters=_FILTERS),
    **_family(300, "mobilenet1.0_lite", {"coco": (60.0, 105.0, 150.0, 195.0, 240.0, 285.0, 300.0)},
              ratios=((1, 2, 0.5),) + ((1, 2, 0.5, 3, 1.0 / 3),) * 5, steps=(16, 30, 60, 100, 150, 300),
              taps=_MOBILENET_TAPS, filters=(512, 256, 256, 128), anchor_kind="lite", predictor_kernel=1,
              reduce_ratio=0.5, min_depth=64),
    **_family(300, "mobilenet0.25", {"voc": _SIZES_300, "coco": _SIZES_300, "custom": _SIZES_300},
              ratios=_R6, steps=_STEPS_300, taps=_MOBILENET_TAPS, filters=(256, 256, 128, 128)),
    **_family(300, "resnet34_v1b", {"voc": _SIZES_300, "coco": _SIZES_300, "custom": _SIZES_300},
              ratios=_R6, steps=_STEPS_300, filters=(256, 256, 128, 128)),
}


# SSD box offsets are divided by these (x, y, w, h) standard deviations (GluonCV's SSD and its target
# generator, MXNet's box_decode as the SSD calls it): :class:`gluon_ssd.boxes.BoxCoder`'s default.
BOX_STDS = (0.1, 0.1, 0.2, 0.2)

# GluonCV's SSD detection defaults (``SSD(nms_thresh=0.45, nms_topk=400, post_nms=100)``; its eval and train
# scripts set the same, its demo keeps the network's): per-class NMS IoU threshold, candidates entering NMS,
# detections kept after it.
NMS_THRESH = 0.45
NMS_TOPK = 400
POST_NMS = 100

# GluonCV's int8 SSDs (its calibrated graphs, gluon_ssd.quantization) and the float32 model whose weights they take.
INT8_MODELS: dict[str, str] = {
    "ssd_300_vgg16_atrous_voc_int8": "ssd_300_vgg16_atrous_voc",
    "ssd_512_vgg16_atrous_voc_int8": "ssd_512_vgg16_atrous_voc",
    "ssd_512_resnet50_v1_voc_int8": "ssd_512_resnet50_v1_voc",
    "ssd_512_mobilenet1.0_voc_int8": "ssd_512_mobilenet1.0_voc",
}


def list_models(int8: bool = True) -> list[str]:
    """The names :func:`gluon_ssd.get_model` accepts, as GluonCV's ``get_model_list()`` lists its SSDs.

    Parameters
    ----------
    int8 : bool
        True (default): the float32 models (:data:`MODEL_SPECS`) then GluonCV's int8 ones (:data:`INT8_MODELS`).
        False: the float32 models only, the ones the PyTorch twin builds (``convert.get_torch_model``).
    """
    return list(MODEL_SPECS) + (list(INT8_MODELS) if int8 else [])


def get_spec(name: str) -> SSDSpec:
    """The row of zoo model ``name``; a ValueError naming the close names for an unknown one."""
    if name not in MODEL_SPECS:
        close = [n for n in MODEL_SPECS if name.split("_")[-1] in n or n.startswith(name[:12])][:5]
        raise ValueError(f"unknown model {name!r}; known SSD models: {', '.join(MODEL_SPECS)}"
                         + (f" (did you mean {', '.join(close)}?)" if close else ""))
    return MODEL_SPECS[name]


def resolve_model_name(network: str, data_shape: int | None = None, dataset: str | None = None, *,
                       names: bool = True, int8: bool = True) -> str:
    """The zoo model a CLI's ``--network`` (with ``--data-shape`` and ``--dataset``) names: the one resolver
    of train_ssd.py, eval_ssd.py, the dataset checker and ``python -m convert``.

    Spellings
    ---------
    - with ``names`` (eval, demo, convert), a zoo name: ``'ssd_512_resnet50_v1_voc'``,
      ``'ssd_300_vgg16_atrous_custom'``, and with ``int8`` GluonCV's int8 ones, ``'ssd_512_mobilenet1.0_voc_int8'``:
      returned as it is (``data_shape`` and ``dataset`` unused). train_ssd.py passes ``names=False``: as
      GluonCV's, it takes a backbone;
    - a backbone as GluonCV's train script takes it, ``'resnet50_v1'``, with ``data_shape`` and ``dataset``:
      ``ssd_{data_shape}_{network}_{dataset}``. A data shape that is no base size of the network (e.g.
      resnet50_v1 at 384) takes the nearest base size's architecture (trained or evaluated at that shape).
      Any ``dataset`` other than 'voc' and 'coco' (custom, synthetic) may use any dataset's architecture;
      the '_custom' row is preferred.

    Raises
    ------
    ValueError
        An unknown zoo name (the message names close ones), an unknown backbone (the message lists the
        backbones), a backbone without ``data_shape``/``dataset``, or no row of the backbone for ``dataset``.
    """
    if names and (network in MODEL_SPECS or (int8 and network in INT8_MODELS)):
        return network
    if names and network.startswith("ssd_"):
        get_spec(network.removesuffix("_int8"))  # its error names the close names
        raise ValueError(f"{network!r}: " + (f"GluonCV has int8 versions of {', '.join(INT8_MODELS)} only" if int8
                                             else "an int8 model is not accepted here, give its float32 name"))
    rows = {n: s for n, s in MODEL_SPECS.items() if s.backbone == network}
    if not rows:
        backbones = sorted({spec.backbone for spec in MODEL_SPECS.values()})
        raise ValueError(f"unknown --network {network!r}; choose one of: {', '.join(backbones)}"
                         + (", or a zoo name such as ssd_512_resnet50_v1_voc" if names else ""))
    if data_shape is None or dataset is None:
        raise ValueError(f"--network {network} names a backbone: give --data-shape and --dataset too, or a zoo "
                         f"name ({', '.join(rows)})")
    kind = {"voc": "voc", "coco": "coco"}.get(dataset, "custom")
    sizes = sorted({s.base_size for s in rows.values() if kind == "custom" or s.dataset == kind})
    if not sizes:
        raise ValueError(f"there is no {network} SSD for the {dataset} dataset; available: {', '.join(rows)}")
    base = min(sizes, key=lambda s: (abs(s - int(data_shape)), s))
    # ``base`` is the size of an existing row of an allowed dataset, so one of these names exists.
    return next(f"ssd_{base}_{network}_{suffix}" for suffix in (kind, "voc", "coco")
                if f"ssd_{base}_{network}_{suffix}" in rows)


# Spellings of --pretrained / --pretrained-base (case and surrounding blanks ignored).
PRETRAINED_TRUE = ("true", "t", "yes", "1")
PRETRAINED_FALSE = ("false", "f", "no", "0", "none", "")


def parse_pretrained(value) -> bool | str:
    """``--pretrained`` (eval, demo) and ``--pretrained-base`` (train) as GluonCV's scripts take them.

    A bool is returned as it is; a string in :data:`PRETRAINED_TRUE` (``True``, ``t``, ``yes``, ``1``) gives True
    (the model store's published weights), one in :data:`PRETRAINED_FALSE` (``False``, ``f``, ``no``, ``0``,
    ``None``, empty) gives False (no pretrained weights), anything else is a file path, returned stripped (the
    caller checks that it exists, with its flag's message).
    """
    if isinstance(value, bool):
        return value
    text = str(value).strip()
    if text.lower() in PRETRAINED_TRUE:
        return True
    if text.lower() in PRETRAINED_FALSE:
        return False
    return text


def anchor_alloc_sizes(num_layers: int, first: int = 128) -> list[int]:
    """Side of the anchor grid GluonCV stores for each output layer (``anchor_generators.{i}.anchors``, a
    (1, 1, side, side, 4A) constant): 128 for the first layer, then halved down to no less than 16."""
    sides, side = [], int(first)
    for _ in range(num_layers):
        sides.append(side)
        side = max(side // 2, 16)
    return sides


def anchor_shapes(sizes: tuple[float, float], ratios, index: int, kind: str = "ssd") -> np.ndarray:
    """Widths and heights of the anchors at one feature-map location.

    Parameters
    ----------
    sizes : (s_k, s_k+1) the layer's size and the next layer's size.
    ratios : aspect ratios; the first one (1) stands for the square anchors.
    index : the layer's index (the 'lite' layout treats layer 0 differently).
    kind : 'ssd' (Liu et al.) or 'lite' (TF object-detection API's ssd_mobilenet_v1 layout).

    Returns
    -------
    (A, 2) float64 array of (w, h).
    """
    s_min = float(sizes[0])
    s_geo = float(np.sqrt(sizes[0] * sizes[1]))
    sr = np.sqrt(np.asarray(ratios[1:], dtype=np.float64))
    oblong = np.stack([s_min * sr, s_min / sr], axis=1)
    if kind == "ssd":
        square = np.array([[s_min, s_min], [s_geo, s_geo]])
        return np.concatenate([square, oblong])
    if kind == "lite":
        parts = [np.array([[s_min / 2, s_min / 2]]), oblong]
        if index > 0:
            parts.append(np.array([[s_geo, s_geo]]))
        return np.concatenate(parts)
    raise ValueError(f"unknown anchor kind {kind!r}: expected 'ssd' or 'lite'")


def anchor_grid(shapes: np.ndarray, step: float, height: int, width: int,
                offsets=(0.5, 0.5)) -> np.ndarray:
    """All anchors of a (height, width) map: (1, 1, height, width, 4A) float32, (cx, cy, w, h)."""
    cy = (np.arange(height, dtype=np.float64) + offsets[0]) * step
    cx = (np.arange(width, dtype=np.float64) + offsets[1]) * step
    num = len(shapes)
    grid = np.empty((height, width, num, 4), dtype=np.float64)
    grid[..., 0] = cx[None, :, None]
    grid[..., 1] = cy[:, None, None]
    grid[..., 2:] = shapes[None, None]
    return grid.reshape(1, 1, height, width, num * 4).astype(np.float32)


def head_classes(head_channels: int, anchors_per_cell: int) -> int | None:
    """Foreground classes of an SSD class head with ``head_channels`` output channels.

    A class head scores every anchor of a location for the background and each class:
    ``anchors_per_cell * (classes + 1)`` channels. The one place this is inverted (parameter files, checks,
    both twins), so that the anchors per cell always come from the network (the 'lite' layout has
    ``len(ratios)`` on layer 0, not ``len(ratios) + 1``).

    Parameters
    ----------
    head_channels : int
        Output channels of the head (dimension 0 of its (C, C_in, k, k) weight).
    anchors_per_cell : int
        Anchors per feature-map location of that head's layer.

    Returns
    -------
    int or None
        The number of foreground classes; None when ``head_channels`` is no such multiple, or leaves no
        foreground class (a head of another network).
    """
    per_anchor, rest = divmod(int(head_channels), int(anchors_per_cell))
    if rest or per_anchor < 2:
        return None
    return per_anchor - 1
