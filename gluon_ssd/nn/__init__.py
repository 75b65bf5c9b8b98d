"""Network blocks: backbones, anchors and the SSD itself."""
from .anchors import AnchorGenerator
from .ssd import SSD

__all__ = ["AnchorGenerator", "SSD"]
