"""Import gluoncv, the test oracle, beside torch >= 2.

gluoncv refuses to import when it can see torch >= 2.0; hiding torch from the import system while
gluoncv imports leaves its MXNet side working in the same process as torch.
"""
import sys

import gluon_ssd._env  # noqa: F401


def import_gluoncv():
    if "gluoncv" in sys.modules:
        return sys.modules["gluoncv"]
    had_torch = "torch" in sys.modules
    saved = sys.modules.get("torch")
    sys.modules["torch"] = None
    try:
        import gluoncv
    finally:
        if had_torch:
            sys.modules["torch"] = saved
        else:
            del sys.modules["torch"]
    return gluoncv
