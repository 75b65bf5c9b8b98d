"""What the command-line tools share: errors -> exit status, devices, class lists, backends, logging.

Exit status, the same for every tool: 0 success, 2 bad input (:class:`UsageError`: a flag, a file, a dataset,
a model that does not fit; one line ``<prog>: error: <message>`` on stderr, never a traceback), 130 when
interrupted (Ctrl-C). A tool may add its own (the demo: 1 when no input could be read; the checker: 1 when
training would fail).

Logging: the library logs and never prints; :func:`setup_logging` sends its records to stderr through
``tqdm.write``, so that a log line is written above the progress bars instead of through them, and to a log
file when asked. :func:`run_main` takes the handlers away again when the command returns, so that calling
``main()`` twice in one process (tests, notebooks) does not print every line twice.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from gluon_ssd import predict, registry
from gluon_ssd.devices import mxnet_contexts, parse_gpu_ids
from gluon_ssd.model_store import ModelStoreError

__all__ = ["EXIT_USAGE", "EXIT_INTERRUPTED", "UsageError", "ArgumentParser", "run_main", "TqdmHandler",
           "setup_logging", "reset_logging", "check_at_least", "contexts", "parse_classes", "resolve_backend",
           "backend_options", "load_model"]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
BRIEF_FORMAT = "%(levelname)s %(name)s: %(message)s"


class UsageError(Exception):
    """Bad input, reported as one line without a traceback (exit status 2). Say what was wrong, with the
    value, and what to do."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors (unknown flag, bad value, missing required flag) are :class:`UsageError`: one
    line, and no ``SystemExit`` when ``main()`` is called in-process."""

    def error(self, message):
        raise UsageError(f"{message} (see --help)")


def run_main(prog: str, parse, run, argv=None, interrupted: str = "interrupted") -> int:
    """``run(parse(argv))`` with the expected failures turned into exit statuses (module docstring).

    Parameters
    ----------
    prog : str
        The tool's name at the start of its error lines, e.g. ``'eval_ssd.py'``.
    parse : callable
        ``argv`` (None: ``sys.argv[1:]``) -> the parsed arguments.
    run : callable
        The parsed arguments -> exit status (None counts as 0).
    interrupted : str
        What to say on Ctrl-C, after ``prog:``.
    """
    try:
        return int(run(parse(argv)) or 0)
    except UsageError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except ImportError as err:
        from gluon_ssd._mxnet import MXNetMissing  # imported already: it is what raised

        if not isinstance(err, MXNetMissing):
            raise
        print(f"{prog}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SystemExit as done:  # --help and --version end the parse
        return done.code if isinstance(done.code, int) else int(done.code is not None)
    finally:
        reset_logging()


def check_at_least(args, minimum: int, *names: str) -> None:
    """Refuse a number flag below ``minimum``; ``names`` are the flags' argparse names (``batch_size``), a
    flag left at None is not checked."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < minimum:
            raise UsageError(f"--{name.replace('_', '-')} must be at least {minimum}, got {value}")


# -------------------------------------------------------------------------------------------- logging
class TqdmHandler(logging.Handler):
    """Writes each record to stderr with ``tqdm.write``: the progress bars are cleared, the line written and
    the bars drawn again below it. stderr is looked up per record, so redirecting it later works."""

    def emit(self, record):
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must not raise; the handler reports it as logging does
            self.handleError(record)


_installed: dict = {"handlers": [], "level": None}


def setup_logging(verbose: bool = False, log_file: str | None = None, level: int | None = None,
                  fmt: str = BRIEF_FORMAT, datefmt: str | None = None) -> None:
    """Log to stderr (through tqdm) and, given ``log_file``, to that file as well, the same lines.

    ``level`` defaults to INFO when ``verbose``, else WARNING. Only handlers installed here are replaced;
    others on the root logger (a test runner's) stay.
    """
    reset_logging()
    root = logging.getLogger()
    _installed["level"] = root.level
    root.setLevel(level if level is not None else (logging.INFO if verbose else logging.WARNING))
    handlers: list[logging.Handler] = [TqdmHandler()]
    if log_file:
        folder = os.path.dirname(os.path.abspath(log_file))
        try:
            os.makedirs(folder, exist_ok=True)
            handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
        except OSError as err:
            raise UsageError(f"cannot write the log file {log_file}: {err.strerror or err}") from None
    formatter = logging.Formatter(fmt, datefmt)
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
        _installed["handlers"].append(handler)


def reset_logging() -> None:
    """Take away what :func:`setup_logging` installed (closing the log file) and restore the root level."""
    root = logging.getLogger()
    while _installed["handlers"]:
        handler = _installed["handlers"].pop()
        root.removeHandler(handler)
        handler.close()
    if _installed["level"] is not None:
        root.setLevel(_installed["level"])
        _installed["level"] = None


# ------------------------------------------------------------------------------- devices and classes
def contexts(flag: str, value, gpu_ids=None, cpu_hint: str = "", cpu_contexts: int = 0) -> list:
    """The MXNet contexts of a device flag: ``--gpus '0,1'`` (``value``), or ``--num-gpus 2`` given as
    ``gpu_ids=range(2)``; ``cpu_hint`` tells how to run on the CPU instead (gluon_ssd.devices). Where MXNet
    is not installed, none (the other backends choose their device with --device)."""
    from gluon_ssd._mxnet import mx  # loads MXNet: not for --help

    try:
        ids = parse_gpu_ids(value) if gpu_ids is None else list(gpu_ids)
        return mxnet_contexts(ids, cpu_contexts) if mx is not None else []
    except ValueError as err:
        raise UsageError(f"{flag} {value!r}: {err}" + (f"; {cpu_hint}" if cpu_hint else "")) from None


def parse_classes(value, flag: str = "--classes", root: str | None = None, names: bool = True) -> list | None:
    """Class names from a flag: a file with one name per line (also looked for in ``root``) or, where
    ``names``, comma-separated names. None when the flag was not given."""
    from gluon_ssd.data.voc import read_classes_file  # loads MXNet: not for --help

    if value is None:
        return None
    path = os.fspath(value)
    if root and not os.path.isfile(path) and os.path.isfile(os.path.join(root, path)):
        path = os.path.join(root, path)
    if os.path.isfile(path):
        try:
            return list(read_classes_file(path))
        except ValueError as err:
            raise UsageError(f"{flag} {value}: {err}") from None
    if not names:
        raise UsageError(f"{flag} {value}: no such file; write the class names there, one per line")
    found = [c.strip() for c in str(value).split(",") if c.strip()]
    if not found:
        raise UsageError(f"{flag} {value!r} names no class; give e.g. {flag} cat,dog")
    return found


# ---------------------------------------------------------------------------------------------- models
def resolve_backend(args, mxnet_only: tuple[str, ...] = ()) -> str:
    """``args.backend``, or when it was not given (None): mxnet where MXNet is installed (GluonCV's own numbers, to
    the bit) or where one of the ``mxnet_only`` flags (argparse names) is set; without MXNet, float32 on the CPU
    runs in the fastest exact runtime installed (:data:`gluon_ssd.registry.CPU_FP32_ORDER`), anything else in the
    PyTorch twin. Where MXNet is not installed, the MXNet backend (named or implied by such a flag) is refused
    here, before any work, with what needs it."""
    from gluon_ssd._mxnet import HAVE_MXNET, missing_message  # loads MXNet: not for --help

    wanted = [name for name in mxnet_only if getattr(args, name, None)]
    if not HAVE_MXNET and args.backend in (None, "mxnet") and (wanted or args.backend == "mxnet"):
        raise UsageError(missing_message(f"--{wanted[0].replace('_', '-')}" if wanted else "--backend mxnet"))
    if args.backend is None:
        if wanted or HAVE_MXNET:
            args.backend = "mxnet"
        elif getattr(args, "device", "cpu") == "cpu" and getattr(args, "dtype", "fp32") == "fp32":
            available = predict.available_backends()
            args.backend = next((name for name in registry.CPU_FP32_ORDER if name in available), "torch")
        else:
            args.backend = "torch"
        if args.backend != "mxnet":
            logging.getLogger(__name__).info("MXNet is not installed: running --backend %s", args.backend)
    return args.backend


def backend_options(backend: str, device: str, dtype: str, gpus_flag: str) -> dict:
    """``--backend`` / ``--device`` / ``--dtype`` checked, as keyword arguments of
    :func:`gluon_ssd.predict.load_detector`; ``gpus_flag`` is the tool's MXNet GPU flag (for the message)."""
    backends = predict.BACKENDS if backend in predict.BACKENDS else predict.available_backends()
    if backend not in backends:
        raise UsageError(predict.unknown_backend_message(backend))
    try:
        return predict.backend_options(backend, device, dtype, mxnet_gpus_flag=gpus_flag)
    except ValueError as err:
        raise UsageError(str(err)) from None


def load_model(backend: str, network: str, mismatch_hint: str = "", **kwargs):
    """:func:`gluon_ssd.predict.load_detector` with its failures as :class:`UsageError`; ``mismatch_hint`` is
    added when the file's shapes do not fit the network (e.g. which classes were given)."""
    try:
        return predict.load_detector(backend, network=network, **kwargs)
    except ModelStoreError as err:
        raise UsageError(f"{err} (or pass a local file: --pretrained PATH)") from None
    except ImportError as err:
        raise UsageError(f"--backend {backend} cannot run here: {err}") from None
    except (ValueError, FileNotFoundError) as err:
        hint = mismatch_hint if mismatch_hint and "shape mismatch" in str(err) else ""
        raise UsageError(f"cannot load {network}: {err}{hint}") from None
