"""The quickstart end to end at reduced size, as a new user runs it (a subprocess)."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import ROOT, STACK


@pytest.mark.slow
def test_installed_package_runs_the_quickstart_from_any_folder(tmp_path):
    """``pip install .`` (into a folder of its own), then the quickstart at reduced size from an unrelated
    folder, with nothing of the checkout on the path: the package and its console scripts are all it needs. On
    the PyTorch stack (no MXNet) it runs every step on the twin."""
    # Built from a copy: setuptools builds in the source tree (build/, *.egg-info), which `make test` may be doing
    # for the other stack's venv at the same time.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv*", "runs", "build", "*.egg-info",
                                                                "__pycache__", ".pytest_cache", ".ruff_cache"))
    site = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                          "--target", str(site), str(source)], capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]
    assert (site / "gluon_ssd" / "cli" / "eval.py").is_file()
    assert (site / "convert" / "runtime" / "quantization.py").is_file()  # the subpackages are installed
    assert (site / "convert" / "_cpu" / "kernels.c").is_file()  # package data: the fused CPU BatchNorm's source
    assert not (site / "eval_ssd.py").exists() and not (site / "tests").exists()
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run([sys.executable, "-c", "import gluon_ssd, convert; print(gluon_ssd.__file__); "
                            "print(convert.__file__)"], cwd=work, env=env, capture_output=True, text=True)
    assert all(line.startswith(str(site)) for line in where.stdout.split()), where.stdout + where.stderr
    scripts = subprocess.run([str(site / "bin" / "gluon-ssd-eval"), "--help"], cwd=work, env=env,
                             capture_output=True, text=True, timeout=120)
    assert scripts.returncode == 0 and "--calibration" in scripts.stdout, scripts.stderr[-2000:]

    result = subprocess.run([sys.executable, "-m", "gluon_ssd.cli.quickstart", "--tiny"], cwd=work, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    out = work / "runs" / "quickstart"
    text = result.stdout
    assert "quickstart done" in text and "VOC07 mAP on the held-out split" in text
    demo = out / "demo"
    lines = [json.loads(line) for line in open(demo / "detections.jsonl")]
    assert len(lines) == 2 and all(os.path.isfile(line["annotated"]) for line in lines)
    if STACK == "torch":
        # No MXNet: it says so first, every step runs the twin, and the converted .pth scores what the training's
        # .params scored (the same weights, converted twice: once on the fly by eval_ssd.py, once by convert).
        assert text.startswith("quickstart on the PyTorch stack") and "no MXNet" in text.splitlines()[0]
        assert text.count("--backend torch") >= 4 and "--verify" not in text
        maps = [json.load(open(out / folder / "results.json"))["map"] for folder in ("eval", "eval_torch")]
        assert maps[0] == maps[1], maps
    else:
        # the per-class table, the conversion's parity table, the paths
        assert "mAP" in text and "max abs diff" in text.lower()
        # The tiny model is barely trained, so its detections are full of near-equal scores whose order is
        # arbitrary; the raw network outputs must still agree between the frameworks.
        rows = {line.split()[0]: line.split()[2] for line in text.splitlines()
                if line.split()[:1] in (["cls_preds"], ["box_preds"], ["anchors"])}
        assert rows == {"cls_preds": "pass", "box_preds": "pass", "anchors": "pass"}, rows
    for folder in ("eval", "eval_torch"):
        assert 0 <= json.load(open(out / folder / "results.json"))["map"] <= 1
    assert (out / "torch" / "ssd_512_resnet18_v1_custom.pth").is_file()
    assert (out / "train" / "ssd_512_resnet18_v1_custom_curves.png").is_file()
