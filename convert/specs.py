"""Where the PyTorch twin finds a model's row of the zoo table.

The table itself is ``gluon_ssd.specs.MODEL_SPECS`` (one table for both frameworks, no mxnet in it). Converted
``.pth`` files carry their row, so :func:`convert.load_torch_model` needs neither mxnet nor the table:
a machine with only torch and numpy can load and run them.
"""
from __future__ import annotations

import dataclasses
import types

# The fields of a zoo row that the PyTorch twin reads.
SPEC_FIELDS = ("base_size", "backbone", "dataset", "sizes", "ratios", "steps", "taps", "filters",
               "anchor_kind", "predictor_kernel", "reduce_ratio", "min_depth")


def _model_specs() -> dict:
    from gluon_ssd.specs import MODEL_SPECS  # numpy only: no mxnet needed

    return MODEL_SPECS


def model_names() -> list[str]:
    """Every model name of the zoo."""
    return list(_model_specs())


def get_spec(name: str):
    """The zoo row of ``name`` (a frozen dataclass with the fields in SPEC_FIELDS)."""
    specs = _model_specs()
    if name not in specs:
        raise ValueError(f"unknown model {name!r}; known SSD models: {', '.join(specs)}")
    return specs[name]


def spec_to_dict(spec) -> dict:
    """Plain python (str/int/float/tuple) description of a row, for saving inside a .pth file."""
    if dataclasses.is_dataclass(spec):
        spec = dataclasses.asdict(spec)
    elif not isinstance(spec, dict):
        spec = vars(spec)
    return {k: spec[k] for k in SPEC_FIELDS}


def spec_from_dict(data: dict):
    """A read-only row rebuilt from :func:`spec_to_dict`'s output."""
    missing = [k for k in SPEC_FIELDS if k not in data]
    if missing:
        raise ValueError(f"model description is missing {', '.join(missing)}: the file was not written by "
                         "convert (re-convert it with python -m convert)")

    def freeze(value):
        return tuple(freeze(v) for v in value) if isinstance(value, (list, tuple)) else value

    return types.SimpleNamespace(**{k: freeze(data[k]) for k in SPEC_FIELDS})


def dataset_classes(dataset: str):
    """Class names of a zoo dataset ('voc', 'coco'), None for 'custom'."""
    from gluon_ssd.classes import DATASET_CLASSES  # plain python, no mxnet

    return DATASET_CLASSES.get(dataset)
