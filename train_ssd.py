"""Train an SSD (GluonCV's train_ssd.py: its name, flags and defaults). The command is
:mod:`gluon_ssd.cli.train`; ``python train_ssd.py --help`` lists the flags."""
import sys

from gluon_ssd.cli.train import main, parse_args, run  # noqa: F401  (train_ssd.main etc. stay importable)

if __name__ == "__main__":
    sys.exit(main())
