"""Gluon <-> PyTorch parameter conversion, by name and shape.

The table from torch state-dict keys to gluon_ssd/GluonCV structural keys is read off the model
(:func:`key_map`): each layer knows its MXNet name (see :mod:`convert.nn.layers`). Nothing is matched by
position. What the two files hold besides the mapped weights:

* ``anchor_generators.{i}.anchors`` (GluonCV's precomputed grid) are constants in MXNet files; the
  twin computes anchors from the formula, so a file's anchors are checked against it, not copied.
* gamma of fix_gamma BatchNorms is stored by MXNet and ignored; the twin has no gamma there. The
  stored values ride along in the .pth file (``mxnet_ignored``) so that the reverse conversion gives
  back the original file bit for bit.
* torch's ``num_batches_tracked`` has no MXNet counterpart (0 after conversion).
"""
from __future__ import annotations

import logging
import os
import zipfile
from collections import OrderedDict

import numpy as np
import torch

from gluon_ssd import ndfile
from gluon_ssd.fileio import atomic_path
from gluon_ssd.specs import BOX_STDS, anchor_alloc_sizes

from ..nn.anchors import AnchorGenerator
from ..nn.layers import FixedGammaBatchNorm2d
from ..nn.ssd import SSD, get_torch_model, spec_from_dict

log = logging.getLogger(__name__)

FORMAT = "gluon_ssd.convert/1"
_ANCHOR_ATOL = 1e-3  # pixels; GluonCV and gluon_ssd files agree with the formula exactly


def key_map(model: SSD) -> OrderedDict[str, str]:
    """{torch state-dict key: gluon structural key} for every mapped tensor of ``model``."""
    table: OrderedDict[str, str] = OrderedDict()
    for path, module in model.named_modules():
        if not hasattr(module, "gluon_names"):
            continue
        if not module.gluon_key:
            raise RuntimeError(f"layer {path} of {model.name} has no MXNet name (a bug in the twin)")
        for local, suffix in module.gluon_names().items():
            table[f"{path}.{local}" if path else local] = module.gluon_key + suffix
    return table


def ignored_gluon_keys(model: SSD) -> list[str]:
    """MXNet keys that the twin has no tensor for because MXNet ignores them (fix_gamma gammas)."""
    return [m.gluon_key + "gamma" for m in model.modules() if isinstance(m, FixedGammaBatchNorm2d)]


def _anchor_index(key: str):
    parts = key.split(".")
    if len(parts) == 3 and parts[0] == "anchor_generators" and parts[2] == "anchors" and parts[1].isdigit():
        return int(parts[1])
    return None


def anchor_grid(gen: AnchorGenerator, height: int, width: int) -> np.ndarray:
    """The formula's anchors as GluonCV stores them: (1, 1, height, width, 4A) float32."""
    with torch.no_grad():
        flat = gen(torch.zeros(1, 1, height, width))
    return flat.reshape(1, 1, height, width, -1).numpy()


def _check_anchors(model: SSD, index: int, stored: np.ndarray, source: str) -> None:
    gens = model.anchor_generators
    if index >= len(gens):
        raise ValueError(f"{source}: anchors of layer {index}, but {model.name} has {len(gens)} layers")
    if stored.ndim != 5 or stored.shape[:2] != (1, 1) or stored.shape[4] != gens[index].num_anchors * 4:
        raise ValueError(f"{source}: anchor_generators.{index}.anchors has shape {stored.shape}, "
                         f"{model.name} needs (1, 1, H, W, {gens[index].num_anchors * 4})")
    expected = anchor_grid(gens[index], stored.shape[2], stored.shape[3])
    diff = float(np.abs(stored - expected).max()) if stored.size else 0.0
    if not diff <= _ANCHOR_ATOL:
        raise ValueError(
            f"{source}: the stored anchors of layer {index} differ from {model.name}'s anchor formula by up to "
            f"{diff:.4g} px. The PyTorch twin computes anchors from the formula (sizes, ratios, steps of the "
            "model table), so it cannot reproduce this file: check that --network names the model the file "
            "was trained as.")


def _class_hint(model: SSD, wrong) -> str:
    if not wrong or not all(k.startswith("class_predictors.") for k, _, _ in wrong):
        return ""
    num = model.anchor_generators[0].num_anchors
    key, file_shape, _ = wrong[0]
    if key == "class_predictors.0.predictor.weight" or key.endswith(".0.predictor.bias"):
        file_classes = file_shape[0] // num - 1
        return (f" The file's class heads are for {file_classes} classes, the model has {model.num_classes}: "
                f"pass the file's {file_classes} class names (--classes a,b,c or classes=[...]).")
    return " The file's class heads are for another number of classes: pass the file's class names."


def gluon_to_torch(model: SSD, arrays: dict[str, np.ndarray], source: str = "the file"
                   ) -> tuple[OrderedDict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Convert {gluon structural key: array} into a state dict of ``model`` (strict), by name and shape.

    Returns (state_dict, ignored): ``ignored`` holds the stored values MXNet ignores (fix_gamma
    gammas), by gluon key. Raises ValueError naming every missing, unexpected or misshapen key.
    """
    table = key_map(model)
    ignored_keys = set(ignored_gluon_keys(model))
    own = model.state_dict()
    mapped = set(table.values())
    missing = [g for g in table.values() if g not in arrays]
    wrong = [(g, tuple(arrays[g].shape), tuple(own[t].shape)) for t, g in table.items()
             if g in arrays and tuple(arrays[g].shape) != tuple(own[t].shape)]
    extra = [k for k in arrays if k not in mapped and k not in ignored_keys and _anchor_index(k) is None]
    problems = []
    if wrong:
        problems.append("shape mismatch (file vs model): " + "; ".join(f"{k}: {f} vs {m}" for k, f, m in wrong[:8])
                        + (f" (+{len(wrong) - 8} more)" if len(wrong) > 8 else ""))
    if missing:
        problems.append("missing in file: " + ", ".join(missing[:8])
                        + (f" (+{len(missing) - 8} more)" if len(missing) > 8 else ""))
    if extra:
        problems.append("not in model: " + ", ".join(extra[:8])
                        + (f" (+{len(extra) - 8} more)" if len(extra) > 8 else ""))
    if problems:
        hint = _class_hint(model, wrong) if not missing and not extra else (
            " The file is probably for another model: check --network.")
        raise ValueError(f"{source} does not fit {model.name} ({model.num_classes} classes): "
                         + " | ".join(problems) + "." + hint)
    for key, value in arrays.items():
        index = _anchor_index(key)
        if index is not None:
            _check_anchors(model, index, np.asarray(value), source)
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in own.items():
        if key in table:
            array = np.asarray(arrays[table[key]])
            state[key] = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32).copy())
        elif key.endswith("num_batches_tracked"):
            state[key] = torch.zeros_like(value)
        else:
            raise RuntimeError(f"state-dict key {key} of {model.name} has no MXNet counterpart (a bug in the twin)")
    ignored = {k: torch.from_numpy(np.asarray(arrays[k], dtype=np.float32).copy()) for k in ignored_keys if k in arrays}
    return state, ignored


def torch_to_gluon(model: SSD, state_dict, ignored=None) -> dict[str, np.ndarray]:
    """{gluon structural key: float32 array} from a state dict of ``model``: the mapped weights, the
    fix_gamma gammas (the stored ``ignored`` values, else 1) and nothing else (no anchors)."""
    table = key_map(model)
    missing = [k for k in table if k not in state_dict]
    if missing:
        raise ValueError(f"the state dict lacks {len(missing)} tensors of {model.name}: {', '.join(missing[:8])}")
    own = model.state_dict()
    wrong = [(k, tuple(state_dict[k].shape), tuple(own[k].shape)) for k in table
             if tuple(state_dict[k].shape) != tuple(own[k].shape)]
    if wrong:
        raise ValueError(f"the state dict does not fit {model.name} ({model.num_classes} classes): "
                         + "; ".join(f"{k}: {f} vs {m}" for k, f, m in wrong[:8]) + "." + _class_hint(model, [
                             (table[k], f, m) for k, f, m in wrong]))
    out = {g: state_dict[t].detach().cpu().to(torch.float32).numpy().copy() for t, g in table.items()}
    ignored = ignored or {}
    for module in model.modules():
        if isinstance(module, FixedGammaBatchNorm2d):
            key = module.gluon_key + "gamma"
            value = ignored.get(key)
            out[key] = (value.detach().cpu().numpy().copy() if value is not None
                        else np.ones(module.num_features, dtype=np.float32))
    return out


# ----------------------------------------------------------------------------------------------------
# Files


def save_torch_model(model: SSD, path, ignored=None, source: str | None = None) -> str:
    """Write a self-describing .pth: the state dict plus what :func:`load_torch_model` needs."""
    path = os.fspath(path)
    payload = {"format": FORMAT, **model.describe(),
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "mxnet_ignored": dict(ignored or {}), "source": os.path.basename(source) if source else ""}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_torch_file(path) -> dict:
    """The payload of a .pth written by :func:`save_torch_model` (or a bare state dict under 'state_dict')."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"PyTorch file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for foreign files
        raise ValueError(f"{path} is not a PyTorch file that torch.load can read safely "
                         f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None
    if not isinstance(payload, dict):
        raise ValueError(f"{path} holds a {type(payload).__name__}, not a state dict or a converted SSD")
    if payload.get("format") == FORMAT:
        return payload
    if all(isinstance(v, torch.Tensor) for v in payload.values()):
        return {"state_dict": payload}
    if isinstance(payload.get("state_dict"), dict):
        return payload
    raise ValueError(f"{path} is neither a converted SSD nor a state dict (keys: {', '.join(list(payload)[:5])})")


def load_torch_model(path, map_location="cpu") -> SSD:
    """Rebuild the PyTorch SSD saved by ``python -m convert`` (needs only torch and numpy), in eval mode."""
    payload = read_torch_file(path)
    if payload.get("format") != FORMAT:
        raise ValueError(f"{path} is a bare state dict without a model description: build the model with "
                         "convert.get_torch_model(name, classes) and load_state_dict() it")
    spec = spec_from_dict(payload["spec"])
    nms = payload.get("nms", (0.45, 400, 100))
    model = SSD(spec, payload["classes"], name=payload["network"], stds=payload.get("stds", BOX_STDS),
                nms_thresh=nms[0], nms_topk=int(nms[1]), post_nms=int(nms[2]))
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path}: the state dict does not fit {payload['network']}: {err}") from None
    return model.to(map_location).eval()


def read_gluon_file(model: SSD, path) -> dict[str, np.ndarray]:
    """{structural key: array} of an MXNet parameter file in any format gluon_ssd reads (both GluonCV
    key formats, arg:/aux: exports, gluon_ssd files) or of a gluon_ssd training checkpoint. Without mxnet:
    parameter files with structural keys (gluon_ssd's, GluonCV's ``save_parameters``), through
    :mod:`gluon_ssd.ndfile`."""
    try:
        import mxnet  # noqa: F401
    except ImportError:
        return read_structural_file(path)
    from gluon_ssd.model_zoo import build_ssd  # needs MXNet, found installed just above
    from gluon_ssd.params import read_param_file, to_structural  # needs MXNet, found installed just above

    if zipfile.is_zipfile(os.fspath(path)):
        # A gluon_ssd training checkpoint (zip: params.params with structural keys, optimizer state, meta).
        from gluon_ssd.train.checkpoint import load_checkpoint  # needs MXNet, found installed just above

        return {k: v.asnumpy() for k, v in load_checkpoint(path).params.items()}
    loaded = read_param_file(path)
    if not any("." in k for k in loaded):
        # Legacy names are the net's own names: build the Gluon twin (no weights) to translate them.
        loaded = to_structural(build_ssd(model.name, classes=model.classes), loaded, path)
    return {k: v.asnumpy() for k, v in loaded.items()}


def read_structural_file(path) -> dict[str, np.ndarray]:
    """{structural key: array} of a parameter file with GluonCV's structural keys, read without MXNet
    (``arg:``/``aux:`` prefixes dropped); a ValueError that says what to do for anything else."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"parameter file not found: {path}")
    if zipfile.is_zipfile(path):
        raise ValueError(f"{path} is a gluon_ssd MXNet training checkpoint, which needs MXNet to read; use the "
                         "_best.params / _{epoch}_{map}.params files the run wrote")
    loaded = ndfile.load(path)
    if not isinstance(loaded, dict) or not loaded:
        raise ValueError(f"{path} holds no named parameters (an MXNet .params file with names is expected)")
    arrays = {k[4:] if k.startswith(("arg:", "aux:")) else k: v for k, v in loaded.items()}
    if not any("." in k for k in arrays):
        raise ValueError(f"{path} has MXNet's legacy parameter names (e.g. {next(iter(arrays))}), which only "
                         "MXNet can translate: convert it once where MXNet runs (python -m convert ... or "
                         "gluon_ssd.get_model(name, pretrained=path).save_parameters(new_path))")
    return arrays


def convert_gluon_file(network: str, params, classes=None) -> tuple[SSD, dict[str, torch.Tensor]]:
    """(torch model with the file's weights, ignored MXNet values) for an MXNet parameter file."""
    if os.path.isdir(os.fspath(params)):
        raise ValueError(f"{params} is a folder: pass a .params file or a training checkpoint (.ckpt) itself")
    model = get_torch_model(network, classes=classes)
    arrays = read_gluon_file(model, params)
    state, ignored = gluon_to_torch(model, arrays, source=os.fspath(params))
    model.load_state_dict(state, strict=True)
    return model.eval(), ignored


def gluon_arrays(model: SSD, state_dict, ignored=None) -> dict[str, np.ndarray]:
    """Every array of the gluon_ssd/GluonCV parameter file of ``state_dict`` (of ``model``), by structural key:
    :func:`torch_to_gluon` plus the stored anchor grids (:func:`gluon_ssd.specs.anchor_alloc_sizes`). No MXNet."""
    arrays = torch_to_gluon(model, state_dict, ignored)
    for i, side in enumerate(anchor_alloc_sizes(len(model.anchor_generators))):
        arrays[f"anchor_generators.{i}.anchors"] = anchor_grid(model.anchor_generators[i], side, side)
    return arrays


def write_gluon_file(model: SSD, state_dict, path, ignored=None) -> str:
    """Write ``state_dict`` (of ``model``) as a gluon_ssd/GluonCV parameter file (structural keys) that
    loads into ``gluon_ssd.get_model(name, pretrained=path)`` and gluoncv. With MXNet the file is checked
    against the gluon network key by key; without, it is written by :mod:`gluon_ssd.ndfile`."""
    try:
        import mxnet as mx
    except ImportError:
        ndfile.save(path, gluon_arrays(model, state_dict, ignored))
        return os.fspath(path)

    from gluon_ssd.model_zoo import build_ssd  # needs MXNet, found installed just above
    from gluon_ssd.params import atomic_save_ndarrays, infer_shapes  # needs MXNet, found installed just above

    arrays = torch_to_gluon(model, state_dict, ignored)
    net = build_ssd(model.name, classes=model.classes)
    infer_shapes(net)
    params = net._collect_params_with_prefix()
    out = {}
    for key, param in params.items():
        index = _anchor_index(key)
        if index is not None:
            out[key] = mx.nd.array(anchor_grid(model.anchor_generators[index], param.shape[2], param.shape[3]))
            continue
        if key not in arrays:
            raise RuntimeError(f"gluon parameter {key} of {model.name} has no PyTorch counterpart (a bug in the twin)")
        if tuple(arrays[key].shape) != tuple(param.shape):
            raise RuntimeError(f"{key}: PyTorch gives {arrays[key].shape}, gluon needs {param.shape}")
        out[key] = mx.nd.array(arrays[key], dtype=np.float32)
    extra = sorted(set(arrays) - set(params))
    if extra:
        raise RuntimeError(f"PyTorch tensors without a gluon parameter: {', '.join(extra[:5])} (a bug in the twin)")
    atomic_save_ndarrays(path, out)
    return os.fspath(path)
