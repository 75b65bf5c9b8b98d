"""The dataset checker (gluon_ssd.data.check): damaged copies of a synthetic set, each damage reported with its
file and the right exit status; the real VOC and COCO samples against counts read here from the raw XML and
JSON with xml.etree and json (not with the library's readers); training's own dataset building as the judge of
"training would fail"."""
import collections
import json
import math
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from gluon_ssd.cli.check import main, plot_box_sizes
from gluon_ssd.data.check import TRAINING_SPLITS, anchor_sizes, check_dataset, split_role
from tests.helpers import DATA, ROOT

VOC_SAMPLE = DATA / "voc_sample"
TINYCOCO = DATA / "coco_sample" / "tinycoco"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A small synthetic VOC-format dataset (12 train, 4 val images) that every test copies before damaging."""
    from gluon_ssd.data.synthetic import write_synthetic_dataset

    root = tmp_path_factory.mktemp("synthetic") / "clean"
    write_synthetic_dataset(str(root), 12, 4, seed=1, min_size=160, max_size=240, progress=False)
    return root


@pytest.fixture
def copy(synthetic, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(synthetic, root)
    return root


def _split_ids(folder, split):
    with open(folder / "ImageSets" / "Main" / f"{split}.txt") as f:
        return [line.split()[0] for line in f if line.strip()]


def _xml_objects(folder, ids):
    """(class counts, difficult count, [(w, h, xmin, ymin, xmax, ymax)]) read directly from the XML files."""
    counts, difficult, boxes = collections.Counter(), 0, []
    for i in ids:
        root = ET.parse(folder / "Annotations" / f"{i}.xml").getroot()
        w, h = int(root.find("size/width").text), int(root.find("size/height").text)
        for obj in root.iter("object"):
            counts[obj.find("name").text.strip().lower()] += 1
            difficult += int(obj.find("difficult").text or 0)
            b = obj.find("bndbox")
            boxes.append((w, h, *(float(b.find(t).text) for t in ("xmin", "ymin", "xmax", "ymax"))))
    return counts, difficult, boxes


def _training_fails(root) -> bool:
    """What train_ssd.py's own data path does with the dataset: build the datasets as training does and read
    every item (training drops bad items of the train split; validation raises on them)."""
    from gluon_ssd.train.config import TrainConfig
    from gluon_ssd.train.run import build_datasets

    try:
        train, val, _, _ = build_datasets(TrainConfig(dataset="custom", dataset_root=str(root)))
        for ds in (train, val):
            for i in range(len(ds)):
                ds[i]
    except Exception:  # noqa: BLE001 - any error ends a training run
        return True
    return False


# -- a clean dataset -----------------------------------------------------------------------------------------
def test_clean_synthetic_dataset_passes(synthetic, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--dataset", "custom", "--dataset-root", str(synthetic), "--out-dir", str(out),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "training would work" in printed
    report = check_dataset("custom", str(synthetic))
    assert report.ok and report.problems == []
    assert [(s.name, s.role, s.listed, s.usable) for s in report.splits] == [("train", "train", 12, 12),
                                                                            ("val", "val", 4, 4)]
    ids = _split_ids(synthetic, "train") + _split_ids(synthetic, "val")
    counts, difficult, boxes = _xml_objects(synthetic, ids)
    assert report.objects == {c: counts[c] for c in report.classes}
    assert sum(report.objects.values()) == len(boxes) > 0
    # sizes at the 512 x 512 input: sqrt(w * h) of each box after the fixed resize, computed from the XML
    expected = sorted(math.sqrt((x2 - x1) * 512 / w * (y2 - y1) * 512 / h) for w, h, x1, y1, x2, y2 in boxes)
    np.testing.assert_allclose(np.sort(report.box_sizes), expected, rtol=1e-9)
    # ssd_512_mobilenet1.0_custom: smallest anchor = the first layer's size, 51.2 px
    assert report.model_name == "ssd_512_mobilenet1.0_custom" and report.smallest_anchor == 51.2
    assert report.below_smallest_anchor == sum(s < 51.2 for s in expected)
    png = (out / "box_sizes.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE) and len(png) > 10_000
    saved = json.loads((out / "dataset_check.json").read_text())
    assert saved["ok"] and saved["objects"] == report.objects
    assert not _training_fails(synthetic)


# -- damaged copies ------------------------------------------------------------------------------------------
def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _edit_xml(path, edit):
    tree = ET.parse(path)
    edit(tree.getroot())
    tree.write(path)


def _first_box(root):
    return root.find("object/bndbox"), int(root.find("size/width").text), int(root.find("size/height").text)


def _box_outside(root):
    box, w, _ = _first_box(root)
    box.find("xmin").text, box.find("xmax").text = str(w + 10), str(w + 40)


def _box_clipped(root):
    box, w, _ = _first_box(root)
    box.find("xmax").text = str(w + 50)


def _box_empty(root):
    box, _, _ = _first_box(root)
    box.find("xmax").text = box.find("xmin").text


def _no_objects(root):
    for obj in root.findall("object"):
        root.remove(obj)


def _unknown_class(root):
    root.find("object/name").text = "unicorn"


def _damage(root, how, item):
    img, xml = root / "JPEGImages" / f"{item}.jpg", root / "Annotations" / f"{item}.xml"
    if how == "truncated_jpeg":
        _truncate(img)
        return img
    if how == "malformed_xml":
        xml.write_text("<annotation><object><name>circle</name>")
        return xml
    if how == "duplicate_id":
        with open(root / "ImageSets" / "Main" / f"{item.split('_')[0]}.txt", "a") as f:
            f.write(f"{item}\n")
        return xml
    edit = {"unknown_class": _unknown_class, "box_outside": _box_outside, "box_clipped": _box_clipped,
            "empty_box": _box_empty, "no_objects": _no_objects}[how]
    _edit_xml(xml, edit)
    return xml


@pytest.mark.parametrize("how, split, kind, severity, status", [
    # training skips a bad image of the train split and goes on; validation reads with on_error='raise'
    ("truncated_jpeg", "train", "bad_image", "dropped", 0),
    ("truncated_jpeg", "val", "bad_image", "fatal", 1),
    ("malformed_xml", "train", "malformed_annotation", "dropped", 0),
    ("malformed_xml", "val", "malformed_annotation", "fatal", 1),
    # the readers raise on a class that is not in classes.txt, whichever split
    ("unknown_class", "train", "unknown_class", "fatal", 1),
    ("box_outside", "train", "box_outside", "dropped", 0),
    ("box_clipped", "train", "box_clipped", "warning", 0),
    ("empty_box", "val", "empty_box", "dropped", 0),
    ("no_objects", "train", "no_objects", "warning", 0),
    ("duplicate_id", "train", "duplicate_id", "warning", 0),
])
def test_damage_is_reported_with_its_file(copy, how, split, kind, severity, status):
    # the item of the split with the most objects: one damaged box leaves it others (no 'no_objects' too)
    ids = _split_ids(copy, split)
    item = max(ids, key=lambda i: sum(_xml_objects(copy, [i])[0].values()))
    assert sum(_xml_objects(copy, [item])[0].values()) >= 2
    damaged = _damage(copy, how, item)
    report = check_dataset("custom", str(copy))
    assert [(p.kind, p.severity, os.path.basename(p.file)) for p in report.problems] == \
        [(kind, severity, damaged.name)]
    assert damaged.name in report.problems[0].message
    assert (0 if report.ok else 1) == status
    assert _training_fails(copy) == (status == 1)
    if how in ("truncated_jpeg", "malformed_xml"):
        got = next(s for s in report.splits if s.name == split)
        assert got.usable == got.listed - 1
        # the objects of the dropped item are not counted: training never sees them
        kept = [i for i in _split_ids(copy, "train") + _split_ids(copy, "val") if i != item]
        counts, _, _ = _xml_objects(copy, kept)
        assert report.objects == {c: counts[c] for c in report.classes}


def test_unknown_class_exit_status_and_summary(copy, tmp_path, capsys):
    _damage(copy, "unknown_class", "train_000007")
    assert main(["--dataset", "custom", "--dataset-root", str(copy), "--out-dir", str(tmp_path / "o"),
                 "--no-progress"]) == 1
    printed = capsys.readouterr().out
    assert "train_000007.xml" in printed and "unicorn" in printed and "training would fail" in printed


def test_image_in_train_and_val_is_reported(copy):
    item = _split_ids(copy, "val")[0]
    with open(copy / "ImageSets" / "Main" / "train.txt", "a") as f:
        f.write(f"{item}\n")
    report = check_dataset("custom", str(copy))
    assert [(p.kind, p.severity, os.path.basename(p.file)) for p in report.problems] == \
        [("train_val_overlap", "warning", f"{item}.jpg")]
    assert report.ok


def test_every_image_unreadable_is_fatal(copy):
    for path in (copy / "JPEGImages").glob("train_*.jpg"):
        path.write_bytes(b"")
    report = check_dataset("custom", str(copy), splits=["train"])
    assert not report.ok
    assert len(report.find("bad_image", "dropped")) == 12 and report.find("no_usable_image", "fatal")
    assert _training_fails(copy)


def test_missing_classes_file_is_fatal_and_counts_the_names_used(copy):
    os.remove(copy / "classes.txt")
    report = check_dataset("custom", str(copy))
    assert [p.kind for p in report.find(severity="fatal")] == ["missing_classes"]
    counts, _, _ = _xml_objects(copy, _split_ids(copy, "train") + _split_ids(copy, "val"))
    assert report.objects == dict(sorted(counts.items()))


# -- the real samples ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["parent", "devkit", "gluoncv"])
def test_voc_sample_counts(layout, tmp_path):
    devkit = VOC_SAMPLE / "VOCdevkit"
    if layout == "parent":
        root = VOC_SAMPLE  # holds VOCdevkit/
    elif layout == "devkit":
        root = devkit
    else:  # GluonCV's ~/.mxnet/datasets/voc: the VOC<year> folders directly in it, found from its parent too
        (tmp_path / "voc").mkdir()
        for year in ("VOC2007", "VOC2012"):
            (tmp_path / "voc" / year).symlink_to(devkit / year)
        root = tmp_path
    report = check_dataset("voc", str(root), splits=["2007_test", "2012_test"])
    assert report.ok, report.problems
    assert report.problems == []
    all_boxes = []
    for split, folder, images, objects, difficult in (("2007_test", "VOC2007", 5, 17, 2),     # README.txt
                                                      ("2012_test", "VOC2012", 45, 106, 19)):
        got = next(s for s in report.splits if s.name == split)
        ids = _split_ids(devkit / folder, "test")
        counts, n_difficult, boxes = _xml_objects(devkit / folder, ids)
        all_boxes += boxes
        assert (got.role, got.listed, got.usable) == ("val", len(ids), len(ids)) == ("val", images, images)
        assert got.objects == {c: counts[c] for c in report.classes}
        assert (sum(got.objects.values()), got.difficult) == (sum(counts.values()), n_difficult) \
            == (objects, difficult)
    # objects smaller than the 51.2 px anchor of ssd_512_mobilenet1.0_voc at the 512 x 512 input
    sizes = [math.sqrt((x2 - x1) * 512 / w * (y2 - y1) * 512 / h) for w, h, x1, y1, x2, y2 in all_boxes]
    assert report.below_smallest_anchor == sum(s < 51.2 for s in sizes) > 0
    np.testing.assert_allclose(np.sort(report.box_sizes), np.sort(sizes), rtol=1e-9)


def test_voc_sample_lacks_the_training_splits(tmp_path, capsys):
    # train_ssd.py reads 2007_trainval and 2012_trainval, which the sample does not have: training would fail
    assert main(["--dataset", "voc", "--dataset-root", str(VOC_SAMPLE), "--no-progress", "--out-dir",
                 str(tmp_path)]) == 1
    assert "2007_trainval" in capsys.readouterr().out
    report = check_dataset("voc", str(VOC_SAMPLE))
    assert [(s.name, s.role) for s in report.splits] == [("2007_trainval", "train"), ("2012_trainval", "train"),
                                                          ("2007_test", "val")]
    assert [(p.kind, p.severity) for p in report.problems] == [("missing_split", "fatal")] * 2 + \
        [("no_usable_image", "fatal")]
    assert report.splits[2].usable == 5


def _coco_expected(json_path, skip_empty):
    """(images listed, images used, {category name: objects}) of a COCO JSON, computed from the raw file:
    boxes (crowd ones included, as training reads them) with positive area whose corners x2 = x + w - 1,
    y2 = y + h - 1 clipped to the image enclose something; without such a box an image is left out when
    skip_empty."""
    with open(json_path) as f:
        raw = json.load(f)
    names = {c["id"]: c["name"] for c in raw["categories"]}
    size = {im["id"]: (im["width"], im["height"]) for im in raw["images"]}
    counts, per_image = collections.Counter(), collections.Counter()
    for a in raw["annotations"]:
        x, y, w, h = a["bbox"]
        width, height = size[a["image_id"]]
        x1, y1 = min(max(x, 0), width - 1), min(max(y, 0), height - 1)
        x2, y2 = min(max(x + max(w - 1, 0), 0), width - 1), min(max(y + max(h - 1, 0), 0), height - 1)
        if a["area"] > 0 and x2 > x1 and y2 > y1:
            counts[names[a["category_id"]]] += 1
            per_image[a["image_id"]] += 1
    used = sum(1 for i in size if per_image[i] or not skip_empty)
    return len(raw["images"]), used, counts


def test_coco_sample_counts(tmp_path):
    # tinycoco's folders are images/train2017 (which holds official val2017 images) and images/val2017; each
    # JSON's file_name values match the folder of the same name (coco_sample/README.txt)
    splits = ["instances_train2017", "instances_val2017"]
    report = check_dataset("coco", str(TINYCOCO), splits=splits, image_dir=["images/train2017", "images/val2017"],
                           out_dir=str(tmp_path))
    assert report.ok, report.find(severity="fatal")
    listed_total = 0
    for split in report.splits:
        listed, used, counts = _coco_expected(TINYCOCO / "annotations" / f"{split.name}.json",
                                              skip_empty=split.role == "train")
        assert (split.listed, split.usable) == (listed, used)
        assert split.objects == {c: counts[c] for c in report.classes}
        listed_total += listed
    assert listed_total == 38  # README: 32 + 6 images
    assert [s.role for s in report.splits] == ["train", "val"]
    # the train images without a usable box are the only problems, reported as left out
    dropped = report.find("no_objects", "dropped")
    assert len(dropped) == report.splits[0].listed - report.splits[0].usable == len(report.problems)
    assert json.loads((tmp_path / "dataset_check.json").read_text())["objects"] == report.objects
    # the plot is the command line's
    assert plot_box_sizes(report, str(tmp_path / "box_sizes.png")) == report.plot_path
    assert (tmp_path / "box_sizes.png").read_bytes().startswith(PNG_SIGNATURE)


def test_coco_default_image_folder_missing_names_the_one_there_is():
    report = check_dataset("coco", str(TINYCOCO), splits=["instances_val2017"])
    [problem] = report.find("missing_folder", "fatal")
    assert problem.file == str(TINYCOCO / "val2017") and "images/val2017 exists" in problem.message
    assert not report.ok


# -- anchors, roles, arguments -------------------------------------------------------------------------------
def test_anchor_sizes_by_hand():
    # 'ssd' layout, layer 0 of ssd_512_mobilenet1.0_voc (sizes 51.2, 102.4): squares 51.2 and sqrt(51.2*102.4),
    # oblongs of area 51.2^2; 6 layers of 2 distinct sizes each
    ssd = anchor_sizes("ssd_512_mobilenet1.0_voc")
    assert len(ssd) == 12 and ssd[0] == 51.2 and ssd[1] == pytest.approx(math.sqrt(51.2 * 102.4))
    # 'lite' layout: layer 0 of ssd_300_mobilenet1.0_lite_coco (size 60) has one square of half the size
    # (60/2); the next layer's half square (105/2) comes before layer 0's oblongs of area 60^2
    lite = anchor_sizes("ssd_300_mobilenet1.0_lite_coco")
    assert lite[:3] == (30.0, 52.5, 60.0)


def test_default_split_roles_follow_the_names():
    for dataset, roles in TRAINING_SPLITS.items():
        for role, splits in roles.items():
            assert all(split_role(dataset, s) == role for s in splits), (dataset, role)


@pytest.mark.parametrize("args, message", [
    (["--dataset", "voc", "--dataset-root", "/nonexistent/voc"], "/nonexistent/voc is not a folder"),
    (["--dataset", "pascal", "--dataset-root", "."], "invalid choice: 'pascal'"),
    (["--dataset", "voc"], "--dataset-root"),
    (["--dataset", "voc", "--dataset-root", str(VOC_SAMPLE), "--splits", "2007"], "YEAR_NAME"),
    (["--dataset", "voc", "--dataset-root", str(VOC_SAMPLE), "--network", "vgg19"], "unknown --network 'vgg19'"),
    (["--dataset", "voc", "--dataset-root", str(VOC_SAMPLE), "--data-shape", "0"], "--data-shape"),
    (["--dataset", "voc", "--dataset-root", str(ROOT / "tests")], "no VOC dataset under"),
])
def test_bad_arguments_exit_2(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_command_line_bad_root_has_no_traceback():
    result = subprocess.run([sys.executable, "-m", "gluon_ssd.data.check", "--dataset", "coco", "--dataset-root",
                             "/nonexistent/coco"], capture_output=True, text=True, cwd=str(ROOT), timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "/nonexistent/coco is not a folder" in result.stderr
    assert result.stdout == ""
