"""``python -m gluon_ssd.data.check``: the command of :mod:`gluon_ssd.cli.check` at its documented name."""
import sys

from ...cli.check import main

sys.exit(main())
