"""gluoncv's stored answers, for the tests of the PyTorch stack (which has neither MXNet nor gluoncv).

Every file in this folder was written by gluoncv itself: ``python -m tests.references.write`` (see
:data:`REGENERATE`) runs gluoncv on real data from ``shared/data`` and stores what it answered. README.md here
lists the files, the arrays each holds and the gluoncv call that wrote them; every ``.npz`` also holds a
``written_by`` string (gluoncv, mxnet and numpy versions, the writer function, the date). A test compares the
code with these answers, never with the code's own earlier output.

Weights are stored only where the file format is the point (one small SSD, as gluoncv's ``save_parameters``
wrote it). The other seeded networks are regenerated from (parameter names, shapes, seed, head scales) with
numpy alone by :func:`seeded_weights`, the one function the writer used too; a digest stored beside them
proves that the regenerated weights are the ones gluoncv ran.
"""
from __future__ import annotations

import bz2
import hashlib
import math
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

FOLDER = pathlib.Path(__file__).resolve().parent
ROOT = FOLDER.parents[1]
DATA = ROOT.parent / "shared" / "data"

#: The one command that rewrites every stored reference (needs the MXNet stack: mxnet and gluoncv).
REGENERATE = ".venv/bin/python -m tests.references.write (from the project root, in the MXNet stack's environment; " \
             "or: make references)"

#: (class, box) head outputs of a seeded network are scaled towards these standard deviations (see
#: :func:`head_scales_for`): softmax scores spread over (0, 1), decoded boxes finite.
HEAD_TARGET_STD = {"class_predictors": 2.0, "box_predictors": 0.5}


class MissingReference(FileNotFoundError):
    """A stored reference file that is not there."""


def path(name: str) -> pathlib.Path:
    """The stored file ``name`` of this folder.

    Raises
    ------
    MissingReference
        The file is missing; the message gives the command that writes it.
    """
    file = FOLDER / name
    if not file.is_file():
        raise MissingReference(f"the stored reference {file} is missing: write every reference with {REGENERATE}")
    return file


def load(name: str) -> dict[str, np.ndarray]:
    """Every array of the stored ``{name}.npz`` (``name`` with or without the extension), read without pickle.

    Strings are 0-d or 1-d unicode arrays: ``str(ref['written_by'])``.
    """
    file = path(name if name.endswith(".npz") else f"{name}.npz")
    with np.load(file, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def data_path(relative) -> pathlib.Path:
    """A file of the shared test data (``shared/data`` beside the project), by its path relative to that folder."""
    file = DATA / str(relative)
    if not file.is_file():
        raise FileNotFoundError(f"shared test data file {file} not found: check out shared/ beside the project")
    return file


def gluoncv_params(name: str, folder) -> pathlib.Path:
    """gluoncv's own parameter file of the zoo model ``name`` (``{name}_gluoncv.params``, stored bzip2-compressed:
    see :func:`seeded_weights` for why it compresses), decompressed into ``folder``.

    Its SHA-256 is checked against the one recorded when gluoncv wrote it (``params_sha256`` of
    ``{name}_gluoncv.npz``): the bytes are gluoncv's ``save_parameters`` output, unchanged.

    Returns
    -------
    pathlib.Path, ``folder / f"{name}_gluoncv.params"``.
    """
    data = bz2.decompress(path(f"{name}_gluoncv.params.bz2").read_bytes())
    expected = str(load(f"{name}_gluoncv")["params_sha256"])
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected:
        raise ValueError(f"{name}_gluoncv.params.bz2 holds a file with SHA-256 {digest}, but gluoncv wrote one with "
                         f"{expected}: the stored files are out of step; rewrite them with {REGENERATE}")
    out = pathlib.Path(folder) / f"{name}_gluoncv.params"
    out.write_bytes(data)
    return out


# ------------------------------------------------------------------------------------------ seeded weights
def is_seeded(key: str) -> bool:
    """Whether :func:`seeded_weights` draws parameter ``key``: everything but the constants of the architecture
    (GluonCV's stored anchor grids and VGG's input scale, kept as the network builds them)."""
    return not key.startswith("anchor_generators.") and not key.endswith("init_scale")


def _on_grid(values: np.ndarray, spread: float) -> np.ndarray:
    """``values`` rounded to multiples of the power of two in (spread / 4, spread / 2], as float32 (exactly)."""
    step = 2.0 ** math.floor(math.log2(spread / 2.0))
    return (np.round(values / step) * step).astype(np.float32)


def seeded_weights(keys: Sequence[str], shapes: Sequence[Sequence[int]], seed: int,
                   head_scales: Mapping[str, float] | None = None) -> dict[str, np.ndarray]:
    """Seeded random float32 weights for an SSD's parameters, spread enough that every layer matters.

    The distributions are those of ``tests/helpers.py`` ``randomize``: He-normal convolutions (three times
    wider in the prediction heads), BatchNorm scales and variances uniform in [0.5, 1.5], shifts, means and
    biases normal with sd 0.1, VGG's L2Normalize scale uniform in [10, 30]. Each value is then rounded to a
    multiple of a power of two between a quarter and a half of its distribution's spread, so that a tensor
    holds a few dozen distinct values: a file of them compresses 5-7 fold (random float32 does not compress at
    all) and a power-of-two head scale multiplies them exactly, in numpy, MXNet and torch alike.

    Parameters
    ----------
    keys : gluoncv's structural parameter names (``net._collect_params_with_prefix()``), in the order the
        values are drawn: the same order gives the same weights.
    shapes : the shape of each key.
    seed : seed of the one ``np.random.default_rng`` that draws them all, key after key.
    head_scales : {head: factor}, e.g. ``{'class_predictors.0': 0.5}``: the weight and bias of
        ``{head}.predictor`` are multiplied by ``factor``, a power of two (see :func:`head_scales_for`).

    Returns
    -------
    {key: float32 array of its shape} for every key that :func:`is_seeded` (constants are left out).
    """
    if len(keys) != len(shapes):
        raise ValueError(f"{len(keys)} keys but {len(shapes)} shapes: give one shape per parameter name")
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for key, shape in zip(keys, shapes):
        shape = tuple(int(s) for s in shape)
        if not is_seeded(key):
            continue
        if key.endswith("norm4.scale"):
            out[key] = _on_grid(rng.uniform(10, 30, shape), 20.0 / 16)
        elif key.endswith(("gamma", "running_var", "moving_var")):
            out[key] = _on_grid(rng.uniform(0.5, 1.5, shape), 1.0 / 16)
        elif key.endswith(("beta", "running_mean", "moving_mean", "bias")):
            out[key] = _on_grid(rng.normal(0, 0.1, shape), 0.1)
        else:
            std = math.sqrt(2.0 / int(np.prod(shape[1:])))
            if key.startswith(("class_predictors", "box_predictors")):
                std *= 3.0
            out[key] = _on_grid(rng.normal(0, std, shape), std)
    for head, factor in (head_scales or {}).items():
        mantissa, _ = math.frexp(float(factor))
        if mantissa != 0.5:
            raise ValueError(f"head scale {head}: {factor} is not a power of two (the scaled weights would not be "
                             "exact in float32)")
        for suffix in (".predictor.weight", ".predictor.bias"):
            if head + suffix not in out:
                raise KeyError(f"head scale for {head}, but there is no parameter {head}{suffix}")
            out[head + suffix] = out[head + suffix] * np.float32(factor)
    return out


def head_scales_for(head_stds: Mapping[str, float]) -> dict[str, float]:
    """Power-of-two factors that bring each head's output standard deviation (``{'class_predictors.0': sd,
    ...}``, measured on real photos) within a factor sqrt(2) of :data:`HEAD_TARGET_STD`."""
    scales = {}
    for head, std in head_stds.items():
        target = HEAD_TARGET_STD[head.split(".")[0]]
        scales[head] = 2.0 ** round(math.log2(target / max(float(std), 1e-6)))
    return scales


def seeded_predictions(seed: int, batch: int, anchors: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded raw SSD outputs: class logits (batch, anchors, classes + 1) normal with sd 2 and box offsets
    (batch, anchors, 4) standard normal, float32."""
    rng = np.random.default_rng(seed)
    cls_preds = rng.normal(0, 2, (batch, anchors, classes + 1)).astype(np.float32)
    box_preds = rng.normal(0, 1, (batch, anchors, 4)).astype(np.float32)
    return cls_preds, box_preds


def digest(arrays: Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> str:
    """SHA-256 over names (for a mapping, in sorted order), dtypes, shapes and bytes of arrays."""
    items = sorted(arrays.items()) if isinstance(arrays, Mapping) else list(enumerate(arrays))
    sha = hashlib.sha256()
    for key, value in items:
        value = np.ascontiguousarray(value)
        sha.update(f"{key}|{value.dtype.str}|{value.shape}|".encode())
        sha.update(value.tobytes())
    return sha.hexdigest()


def _regenerated(what: str, stored, regenerated: str) -> None:
    if str(stored) != regenerated:
        raise AssertionError(
            f"the {what} regenerated here with numpy {np.__version__} are not the ones gluoncv ran (digest "
            f"{regenerated[:12]}... vs {str(stored)[:12]}...): numpy's random streams changed, or the stored files "
            f"are out of step with tests/references/__init__.py; rewrite them with {REGENERATE}")


def padded_shapes(shapes: Sequence[Sequence[int]]) -> np.ndarray:
    """Shapes as one (K, 5) int64 array, -1 after the last dimension (how the files store them)."""
    out = np.full((len(shapes), 5), -1, dtype=np.int64)
    for i, shape in enumerate(shapes):
        out[i, :len(shape)] = shape
    return out


def seeded_network(ref: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every parameter of a stored ``*_seeded`` network (see :func:`seeded_weights`): the regenerated weights,
    checked against the stored digest, and the stored constants (VGG's ``init_scale``), by gluoncv key.
    The anchor grids are left out (the twin computes them)."""
    keys = [str(k) for k in ref["param_keys"]]
    shapes = [tuple(int(d) for d in row if d >= 0) for row in ref["param_shapes"]]
    scales = dict(zip((str(k) for k in ref["head_scale_keys"]), (float(v) for v in ref["head_scale_values"])))
    weights = seeded_weights(keys, shapes, int(ref["seed"]), scales)
    _regenerated("weights", ref["weights_sha256"], digest(weights))
    for key in ref["constant_keys"]:
        weights[str(key)] = ref[f"constant.{key}"]
    return weights


def stored_predictions(ref: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The seeded predictions a stored file was computed on (``prediction_seed``, ``prediction_shape`` (B, N,
    C+1)), regenerated with :func:`seeded_predictions` and checked against its ``predictions_sha256``."""
    batch, anchors, width = (int(v) for v in ref["prediction_shape"])
    preds = seeded_predictions(int(ref["prediction_seed"]), batch, anchors, width - 1)
    _regenerated("predictions", ref["predictions_sha256"], digest(preds))
    return preds


def listed_files() -> list[str]:
    """The file names README.md of this folder lists (``### name`` headings)."""
    text = (FOLDER / "README.md").read_text()
    return [line[4:].strip().strip("`") for line in text.splitlines() if line.startswith("### ")]

