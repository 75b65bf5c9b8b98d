"""Initialize a PyTorch twin the way gluon_ssd initializes its MXNet network, without MXNet.

``gluon_ssd.get_model(name, pretrained_base=...)`` gives every parameter its initializer
(:func:`gluon_ssd.params.initialize_missing`); :func:`init_like_gluon` does it to a twin
(:func:`convert.get_torch_model`), with torch and numpy only: every parameter and buffer drawn from the
distribution MXNet gives it. Which initializer a tensor gets is decided by its gluon structural key
(:func:`convert.weights.mapping.key_map`) in one table, :data:`INIT_RULES`. Loading an ImageNet classifier into
the feature extractor is :func:`convert.weights.names.load_backbone`; a training run's start is
:func:`convert.train.start.start_model`.

The random numbers are torch's, not MXNet's: the twin gets the same distributions, not the same values.
"""
from __future__ import annotations

import dataclasses
import logging
import re

import numpy as np
import torch

from gluon_ssd.specs import IMAGENET_STD

from .mapping import key_map

log = logging.getLogger(__name__)

__all__ = ["Constant", "Xavier", "INIT_RULES", "initializer_for", "init_like_gluon"]


@dataclasses.dataclass(frozen=True)
class Constant:
    """Every element ``value`` (a number, or nested tuples broadcast to the tensor's shape): ``mx.init.Constant``,
    ``'zeros'``, ``'ones'`` and the constants of ``params.get_constant``."""

    value: float | tuple

    def sample(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        array = np.broadcast_to(np.asarray(self.value, dtype=np.float32), shape)
        return torch.from_numpy(array.copy()).to(generator.device)


@dataclasses.dataclass(frozen=True)
class Xavier:
    """``mx.init.Xavier(rnd_type, factor_type, magnitude)``.

    With ``r = prod(shape[2:])`` (1 for a matrix), fan_in = shape[1] * r and fan_out = shape[0] * r; the
    factor is their mean ('avg'), fan_in ('in') or fan_out ('out'), and scale = sqrt(magnitude / factor).
    'uniform' draws from U(-scale, scale), 'gaussian' from N(0, scale**2).
    """

    rnd_type: str = "uniform"
    factor_type: str = "avg"
    magnitude: float = 3.0

    def scale(self, shape: tuple[int, ...]) -> float:
        """The bound (uniform) or standard deviation (gaussian) for a tensor of ``shape``."""
        if len(shape) < 2:
            raise ValueError(f"Xavier needs a tensor of at least 2 dimensions, not shape {tuple(shape)}")
        receptive = float(np.prod(shape[2:])) if len(shape) > 2 else 1.0
        fan_in, fan_out = shape[1] * receptive, shape[0] * receptive
        factor = {"avg": (fan_in + fan_out) / 2.0, "in": fan_in, "out": fan_out}.get(self.factor_type)
        if factor is None:
            raise ValueError(f"Xavier factor_type {self.factor_type!r}: expected 'avg', 'in' or 'out'")
        return float(np.sqrt(self.magnitude / factor))

    def std(self, shape: tuple[int, ...]) -> float:
        """The standard deviation of the distribution for ``shape``."""
        scale = self.scale(shape)
        return scale / np.sqrt(3.0) if self.rnd_type == "uniform" else scale

    def sample(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        scale = self.scale(shape)
        out = torch.empty(shape, dtype=torch.float32, device=generator.device)
        if self.rnd_type == "uniform":
            return out.uniform_(-scale, scale, generator=generator)
        if self.rnd_type == "gaussian":
            return out.normal_(0.0, scale, generator=generator)
        raise ValueError(f"Xavier rnd_type {self.rnd_type!r}: expected 'uniform' or 'gaussian'")


ZERO = Constant(0.0)
ONE = Constant(1.0)


def _as_tuple(array):
    return tuple(_as_tuple(a) for a in array) if np.ndim(array) else float(array)


# The VGG input scale: ImageNet std * 255, computed in float32 as gluon_ssd.nn.vgg does.
VGG_INIT_SCALE = Constant(_as_tuple((np.asarray(IMAGENET_STD, dtype=np.float32) * np.float32(255)).reshape(1, 3, 1, 1)))

# (gluon structural key pattern, initializer, where gluon_ssd sets it); the first pattern that matches wins.
# Measured against gluon_ssd.get_model(name, pretrained_base=False) tensor by tensor, for every backbone kind,
# in tests/convert/weights/test_init.py.
INIT_RULES: tuple[tuple[str, Constant | Xavier, str], ...] = (
    (r"^(class|box)_predictors\.\d+\.predictor\.weight$", Xavier("uniform", "avg", 2.0),
     "ConvPredictor: weight_initializer=Xavier(magnitude=2)"),
    (r"^features\.init_scale$", VGG_INIT_SCALE, "VGGAtrousExtractor: get_constant('init_scale', std * 255)"),
    (r"^features\.norm4\.scale$", Constant(20.0), "L2Normalize: Constant(20)"),
    (r"(^|[._])(bias|beta|running_mean|moving_mean)$", ZERO,
     "biases: bias_initializer 'zeros'; BatchNorm beta and mean: gluon's 'zeros', initialize_missing's Zero()"),
    (r"(^|[._])(gamma|running_var|moving_var)$", ONE,
     "BatchNorm gamma and variance: gluon's 'ones', initialize_missing's One()"),
    (r"(^|[._])weight$", Xavier("gaussian", "out", 2.0),
     "every other convolution: VGG and ResNet34-v1b extras set Xavier(gaussian, out, 2), the backbones and the "
     "expand layers get it from initialize_missing"),
)
_COMPILED_RULES = tuple((re.compile(pattern), init, origin) for pattern, init, origin in INIT_RULES)


def initializer_for(gluon_key: str) -> tuple[Constant | Xavier, str]:
    """(initializer, where gluon_ssd sets it) of the tensor with gluon structural key ``gluon_key``.

    Raises
    ------
    KeyError
        No rule of :data:`INIT_RULES` covers the key (a layer kind this module does not know).
    """
    for pattern, init, origin in _COMPILED_RULES:
        if pattern.search(gluon_key):
            return init, origin
    raise KeyError(f"no initialization rule for gluon key {gluon_key!r} (convert.weights.init.INIT_RULES)")


def init_like_gluon(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Draw every parameter and buffer of a twin as ``gluon_ssd.get_model(name, pretrained_base=False)`` does.

    Parameters
    ----------
    model : convert.SSD
        A twin from :func:`convert.get_torch_model`; changed in place (its devices and dtypes are kept).
    generator : torch.Generator
        The only source of randomness: the same seed gives the same tensors. Samples are drawn on the
        generator's device in float32, in the order of :func:`convert.weights.mapping.key_map`.

    Notes
    -----
    Each tensor's initializer is the first rule of :data:`INIT_RULES` matching its gluon key. torch's
    ``num_batches_tracked`` counters (no MXNet counterpart) are set to 0. MXNet keeps a gamma for its
    fix_gamma BatchNorms that the twin has no tensor for (it is 1 and unused).

    Raises
    ------
    RuntimeError
        A tensor without gluon key or rule (a bug in the twin or in :data:`INIT_RULES`).
    """
    table = key_map(model)
    state = model.state_dict(keep_vars=True)
    unmapped = [k for k in state if k not in table and not k.endswith("num_batches_tracked")]
    if unmapped:
        raise RuntimeError(f"tensors of {getattr(model, 'name', type(model).__name__)} without an MXNet name: "
                           f"{', '.join(unmapped[:5])} (a bug in the twin)")
    counts: dict[str, int] = {}
    with torch.no_grad():
        for torch_key, gluon_key in table.items():
            try:
                init, _ = initializer_for(gluon_key)
            except KeyError as err:
                raise RuntimeError(str(err.args[0])) from None
            tensor = state[torch_key]
            tensor.copy_(init.sample(tuple(tensor.shape), generator))
            kind = type(init).__name__
            counts[kind] = counts.get(kind, 0) + 1
        for key, tensor in state.items():
            if key.endswith("num_batches_tracked"):
                tensor.zero_()
    log.debug("initialized %s like gluon_ssd: %s", getattr(model, "name", "the model"), counts)
