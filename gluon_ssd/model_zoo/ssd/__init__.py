"""GluonCV's ``gluoncv.model_zoo.ssd`` paths: :mod:`.target` holds ``SSDTargetGenerator``."""
from . import target  # noqa: F401  (gluon_ssd.model_zoo.ssd.target.SSDTargetGenerator, as GluonCV's path)
