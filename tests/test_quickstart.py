"""The quickstart end to end at reduced size, as a new user runs it (a subprocess)."""
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_quickstart_tiny_runs_end_to_end(tmp_path):
    out = tmp_path / "qs"
    result = subprocess.run([sys.executable, "-m", "gluon_ssd.quickstart", "--tiny", "--out", str(out)],
                            cwd=str(ROOT), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    text = result.stdout
    assert "quickstart done" in text and "VOC07 mAP on the held-out split" in text
    # the per-class table, the conversion's parity table, the paths
    assert "mAP" in text and "max abs diff" in text.lower()
    demo = out / "demo"
    lines = [json.loads(line) for line in open(demo / "detections.jsonl")]
    assert len(lines) == 2 and all(os.path.isfile(line["annotated"]) for line in lines)
    # The tiny model is barely trained, so its detections are full of near-equal scores whose order is
    # arbitrary; the raw network outputs must still agree between the frameworks.
    rows = {line.split()[0]: line.split()[2] for line in text.splitlines()
            if line.split()[:1] in (["cls_preds"], ["box_preds"], ["anchors"])}
    assert rows == {"cls_preds": "pass", "box_preds": "pass", "anchors": "pass"}, rows
    for folder in ("eval", "eval_torch"):
        assert 0 <= json.load(open(out / folder / "results.json"))["map"] <= 1
    assert (out / "torch" / "ssd_512_mobilenet1.0_custom.pth").is_file()
    assert (out / "train" / "ssd_512_mobilenet1.0_custom_curves.png").is_file()
