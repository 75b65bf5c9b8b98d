"""Logging set-up for the command-line tools: console and a log file, same lines."""
from __future__ import annotations

import logging
import os


def setup_logging(log_file: str | None = None, level=logging.INFO) -> logging.Logger:
    root = logging.getLogger()
    root.setLevel(level)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    console = logging.StreamHandler()
    console.setFormatter(fmt)
    root.addHandler(console)
    if log_file:
        folder = os.path.dirname(os.path.abspath(log_file))
        os.makedirs(folder, exist_ok=True)
        handler = logging.FileHandler(log_file)
        handler.setFormatter(fmt)
        root.addHandler(handler)
    return root
