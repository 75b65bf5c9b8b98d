"""The synthetic dataset writer.

References: the bytes of a second run (determinism), the written JPEG pixels (box tightness, checked
on the clean rendering where background and shapes are told apart by colour), the XML files parsed here
with xml.etree, and the VOC 1-based convention (reader's minus 1 gives 0-based tight boxes).
"""
import collections
import subprocess
import sys
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pytest

from gluon_ssd.data import SHAPE_CLASSES, CustomVOCDetection, write_synthetic_dataset
from tests.helpers import ROOT

FG_THRESHOLD = 40  # clean images: background 128 grey, shapes differ from it by >= 70 in some channel


def _files(folder):
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in files}


def _xml_objects(path):
    root = ET.parse(path).getroot()
    size = root.find("size")
    objs = [
        (o.find("name").text, int(o.find("difficult").text),
         [int(o.find("bndbox").find(t).text) for t in ("xmin", "ymin", "xmax", "ymax")])
        for o in root.iter("object")
    ]
    return int(size.find("width").text), int(size.find("height").text), objs


def test_deterministic_by_seed_and_cli(tmp_path):
    write_synthetic_dataset(tmp_path / "a", 6, 3, seed=7, progress=False)
    write_synthetic_dataset(tmp_path / "b", 6, 3, seed=7, progress=False)
    write_synthetic_dataset(tmp_path / "c", 6, 3, seed=8, progress=False)
    a, b, c = (_files(tmp_path / n) for n in "abc")
    assert len(a) == 2 * 9 + 3  # jpg + xml per image, two split files, classes.txt
    assert a == b
    assert a["ImageSets/Main/train.txt"] == c["ImageSets/Main/train.txt"]
    assert all(a[k] != c[k] for k in a if k.startswith("JPEGImages/"))
    # the command line writes the same bytes
    subprocess.run(
        [sys.executable, "-m", "gluon_ssd.cli.synthetic", "--out", str(tmp_path / "d"), "--train", "6",
         "--val", "3", "--seed", "7", "--no-progress"],
        check=True, cwd=ROOT, capture_output=True,
    )
    assert _files(tmp_path / "d") == a
    # image i does not depend on how many images are written
    write_synthetic_dataset(tmp_path / "e", 2, 1, seed=7, progress=False)
    e = _files(tmp_path / "e")
    assert all(e[k] == a[k] for k in e if k.startswith(("JPEGImages/", "Annotations/")))


def test_annotations_valid_and_readable(tmp_path):
    write_synthetic_dataset(tmp_path, 40, 10, seed=3, progress=False)
    assert (tmp_path / "classes.txt").read_text().split() == list(SHAPE_CLASSES)
    assert 4 <= len(SHAPE_CLASSES) <= 6
    counts, sizes, n_objects = collections.Counter(), set(), []
    for split, n in (("train", 40), ("val", 10)):
        ids = (tmp_path / f"ImageSets/Main/{split}.txt").read_text().split()
        assert len(ids) == n
        ds = CustomVOCDetection(tmp_path, split)
        assert ds.classes == SHAPE_CLASSES and len(ds) == n
        for i, image_id in enumerate(ids):
            w, h, objs = _xml_objects(tmp_path / f"Annotations/{image_id}.xml")
            img = cv2.imread(str(tmp_path / f"JPEGImages/{image_id}.jpg"))
            assert img.shape == (h, w, 3) and 200 <= w <= 400 and 200 <= h <= 400
            assert 1 <= len(objs) <= 6
            boxes = np.array([o[2] for o in objs])
            assert (boxes[:, :2] >= 1).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
            assert (boxes[:, 2:] > boxes[:, :2]).all()
            assert all(o[1] == 0 for o in objs)
            # the reader gives the XML boxes minus 1, in file order
            np.testing.assert_array_equal(ds.label(i)[:, :4], boxes - 1)
            np.testing.assert_array_equal(ds.label(i)[:, 4], [SHAPE_CLASSES.index(o[0]) for o in objs])
            assert ds.image_size(i) == (w, h)
            counts.update(o[0] for o in objs)
            sizes.add((w, h))
            n_objects.append(len(objs))
    assert set(counts) == set(SHAPE_CLASSES)
    assert len(sizes) > 40  # varied sizes and aspect ratios
    assert max(n_objects) > 3


def _foreground(path):
    img = cv2.imread(str(path)).astype(np.int16)
    return np.abs(img - 128).max(axis=2) > FG_THRESHOLD


def test_boxes_tight_single_object(tmp_path):
    write_synthetic_dataset(tmp_path, 30, 0, seed=5, max_objects=1, clean=True, progress=False)
    ds = CustomVOCDetection(tmp_path)
    for i in range(len(ds)):
        fg = _foreground(ds.image_path(i))
        ys, xs = np.nonzero(fg)
        (box,) = ds.label(i)[:, :4]
        np.testing.assert_array_equal(box, [xs.min(), ys.min(), xs.max(), ys.max()])
        assert min(box[2] - box[0], box[3] - box[1]) + 1 >= 10  # objects are not tiny


def test_boxes_tight_with_overlaps(tmp_path):
    write_synthetic_dataset(tmp_path, 30, 0, seed=6, clean=True, progress=False)
    ds = CustomVOCDetection(tmp_path)
    overlaps = 0
    for i in range(len(ds)):
        fg = _foreground(ds.image_path(i))
        boxes = ds.label(i)[:, :4].astype(int)
        covered = np.zeros_like(fg)
        for x1, y1, x2, y2 in boxes:
            covered[y1:y2 + 1, x1:x2 + 1] = True
            # tight: every side of the box touches a shape pixel (it cannot shrink)
            assert fg[y1, x1:x2 + 1].any() and fg[y2, x1:x2 + 1].any()
            assert fg[y1:y2 + 1, x1].any() and fg[y1:y2 + 1, x2].any()
        # complete: every shape pixel lies in some box
        assert not (fg & ~covered).any()
        lt = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
        rb = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
        inter = (rb >= lt).all(axis=2)
        overlaps += int(inter.sum() - len(boxes)) // 2
    assert overlaps > 0  # the set does exercise overlapping shapes


def test_class_subset_draws_and_names_only_those_shapes(tmp_path):
    write_synthetic_dataset(tmp_path, 40, 0, seed=5, max_objects=1, clean=True, classes=("cross", "circle"),
                            progress=False)
    assert (tmp_path / "classes.txt").read_text().split() == ["cross", "circle"]
    ds = CustomVOCDetection(tmp_path)
    assert ds.classes == ("cross", "circle")
    fill = collections.defaultdict(list)
    for i in range(len(ds)):
        fg = _foreground(ds.image_path(i))
        x1, y1, x2, y2, c = ds.label(i)[0, :5].astype(int)
        fill[ds.classes[c]].append(fg[y1:y2 + 1, x1:x2 + 1].mean())
    assert set(fill) == {"cross", "circle"}
    # A filled ellipse covers pi/4 of its box; a cross much less.
    np.testing.assert_allclose(fill["circle"], np.pi / 4, atol=0.02)
    assert max(fill["cross"]) < 0.65


@pytest.mark.parametrize("kwargs,match", [
    (dict(n_train=-1), "n_train"),
    (dict(min_size=300, max_size=200), "max_size"),
    (dict(min_object_size=50, max_object_size=40), "max_object_size"),
    (dict(classes=("circle", "hexagon")), "hexagon"),
    (dict(classes=("circle", "circle")), "distinct"),
    (dict(classes=()), "classes"),
])
def test_bad_arguments(tmp_path, kwargs, match):
    args = dict(n_train=1, n_val=1, seed=0, progress=False) | kwargs
    with pytest.raises(ValueError, match=match):
        write_synthetic_dataset(tmp_path, **args)


def test_cli_subset_and_bad_class(tmp_path, capsys):
    from gluon_ssd.cli.synthetic import main

    main(["--out", str(tmp_path / "ok"), "--train", "2", "--val", "0", "--classes", "ring, square", "--no-progress"])
    assert (tmp_path / "ok" / "classes.txt").read_text().split() == ["ring", "square"]
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "bad"), "--train", "1", "--classes", "circle,hexagon", "--no-progress"])
    assert exit_info.value.code == 2 and "hexagon" in capsys.readouterr().err
