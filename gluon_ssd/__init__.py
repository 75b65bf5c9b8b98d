"""gluon_ssd: GluonCV-exact SSD detectors in MXNet Gluon."""
import importlib

from . import _env  # noqa: F401  (must run before mxnet is imported)

__all__ = ["get_model", "list_models", "export", "load_exported", "quantize"]
__version__ = "0.1.0"


# GluonCV's subpackages at its names (`import gluon_ssd as gcv; gcv.data.VOCDetection`, `gcv.utils.viz`), imported
# on first use.
_SUBPACKAGES = ("data", "model_zoo", "utils", "loss", "nn", "eval")
# Those that are MXNet Gluon blocks, and their PyTorch twins (said where MXNet is not installed).
_MXNET_ONLY = {"model_zoo": "gluon_ssd.model_zoo (MXNet Gluon blocks; the PyTorch twin is convert.get_torch_model)",
               "loss": "gluon_ssd.loss (MXNet's SSDMultiBoxLoss; the twin's is convert.train.loss.SSDLoss)",
               "nn": "gluon_ssd.nn (MXNet Gluon blocks; the PyTorch twin's are in convert/)"}


def __getattr__(name):
    # Lazy, so that `import gluon_ssd.data` does not build the model zoo's imports (nor need MXNet).
    if name in _SUBPACKAGES:
        if name in _MXNET_ONLY:
            from ._mxnet import require  # lazy: the package's import stays free of MXNet's probe

            require(_MXNET_ONLY[name])
        if name == "model_zoo":
            from . import quantization  # noqa: F401  (sets the zoo's loader of GluonCV's int8 names)
        return importlib.import_module(f"{__name__}.{name}")
    if name == "list_models":
        from .specs import list_models  # lazy: `import gluon_ssd` imports no submodule

        return list_models
    if name in ("get_model", "export", "load_exported", "quantize"):
        from ._mxnet import require  # lazy: the package's import stays free of MXNet's probe

        require(f"gluon_ssd.{name} (MXNet Gluon blocks; the PyTorch twin is convert.get_torch_model)")
    if name == "get_model":
        from . import model_zoo, quantization  # noqa: F401  (lazy; quantization sets the zoo's int8 loader)

        return getattr(model_zoo, name)
    if name in ("export", "load_exported"):
        from . import deploy  # lazy: MXNet Gluon blocks, built on first use

        return getattr(deploy, name)
    if name == "quantize":
        from .quantization import quantize  # lazy: MXNet's quantization, on first use

        return quantize
    raise AttributeError(f"module 'gluon_ssd' has no attribute {name!r}")
