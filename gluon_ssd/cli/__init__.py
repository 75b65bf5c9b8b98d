"""The command-line layer: the only part of gluon_ssd that talks to people.

``train_ssd.py``, ``eval_ssd.py`` and ``demo_ssd.py`` at the top of the checkout, and the console entry points
``gluon-ssd-train``, ``gluon-ssd-eval`` and ``gluon-ssd-demo``, call :func:`gluon_ssd.cli.train.main`,
:func:`gluon_ssd.cli.eval.main` and :func:`gluon_ssd.cli.demo.main`; ``python -m gluon_ssd.data.check`` and
``gluon-ssd-check`` call :func:`gluon_ssd.cli.check.main`. Each command module is a recipe over the
library: parse the flags, check them, open the data and the model, run, print. What they share (errors ->
exit status, devices, class lists, backend checks, logging beside progress bars) is :mod:`gluon_ssd.cli.common`.
"""
