"""gluon_ssd.export: an SSD as symbol JSON + parameters for ``mx.gluon.SymbolBlock.imports`` (and C++)."""
from __future__ import annotations

import mxnet as mx

from .params import atomic_save_ndarrays


def export(net, prefix: str, epoch: int = 0, data_shape=None) -> tuple[str, str]:
    """Write ``{prefix}-symbol.json`` and ``{prefix}-{epoch:04d}.params`` of the inference graph.

    Parameters
    ----------
    net : a gluon_ssd SSD (initialized).
    prefix : path prefix of the two files.
    data_shape : (H, W) used to trace the graph once (any size works later); default the model's size.

    Returns
    -------
    (symbol file, params file). Reload with
    ``mx.gluon.SymbolBlock.imports(symbol_file, ['data'], params_file)``.
    """
    if data_shape is None:
        size = getattr(getattr(net, "spec", None), "base_size", 300)
        data_shape = (size, size)
    ctx = next(iter(net.collect_params().values())).list_ctx()[0]
    net.hybridize()
    with mx.autograd.predict_mode():
        net(mx.nd.zeros((1, 3) + tuple(data_shape), ctx=ctx))
    _, sym = net._cached_graph
    sym_file = f"{prefix}-symbol.json"
    params_file = f"{prefix}-{epoch:04d}.params"
    sym.save(sym_file)
    args = set(sym.list_arguments())
    auxs = set(sym.list_auxiliary_states())
    arrays = {}
    for param in net.collect_params().values():
        if param.name in args:
            arrays[f"arg:{param.name}"] = param._reduce()
        elif param.name in auxs:
            arrays[f"aux:{param.name}"] = param._reduce()
    atomic_save_ndarrays(params_file, arrays)
    return sym_file, params_file
