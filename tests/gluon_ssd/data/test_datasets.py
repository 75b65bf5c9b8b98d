"""Dataset readers, batchify and loader.

References: gluoncv's VOCDetection / COCODetection on the same folders (labels and pixels), the
annotation files counted here with xml.etree / json, the counts published in
shared/data/voc_sample/README.txt, gluoncv's batchify, and hand-worked cases for bad data.
"""
import collections
import json
import logging
import os
import xml.etree.ElementTree as ET

import mxnet as mx
import numpy as np
import pytest

from gluon_ssd.data import (
    COCO_CLASSES,
    VOC_CLASSES,
    AnnotationError,
    BadImageError,
    COCODetection,
    CustomCOCODetection,
    CustomVOCDetection,
    VOCDetection,
    batchify_detection,
    make_loader,
    write_synthetic_dataset,
)
from tests.helpers import DATA

VOC_ROOT = DATA / "voc_sample" / "VOCdevkit"
TINYCOCO = DATA / "coco_sample" / "tinycoco"
VOC_SPLITS = ((2007, "test"), (2012, "test"))

# shared/data/voc_sample/README.txt
VOC2012_PUBLISHED = dict(
    aeroplane=9, bicycle=7, bird=5, boat=6, bottle=7, bus=2, car=9, cat=2, chair=3, cow=4, diningtable=1,
    dog=1, horse=2, motorbike=2, person=30, pottedplant=1, sheep=1, sofa=3, train=6, tvmonitor=5,
)


def _xml_counts(folder):
    """Objects per class and difficult count, straight from the XML files of test.txt."""
    ids = (folder / "ImageSets/Main/test.txt").read_text().split()
    counts, difficult = collections.Counter(), 0
    for i in ids:
        for obj in ET.parse(folder / "Annotations" / f"{i}.xml").getroot().iter("object"):
            counts[obj.find("name").text.strip()] += 1
            difficult += int(obj.find("difficult").text)
    return counts, difficult


def _label_counts(ds):
    counts, difficult = collections.Counter(), 0
    for i in range(len(ds)):
        lab = ds.label(i)
        counts.update(ds.classes[int(c)] for c in lab[:, 4])
        difficult += int(lab[:, 5].sum())
    return counts, difficult


# ---------------------------------------------------------------- VOC on real data
def test_voc_split_files_present():
    assert sorted(p.name for p in (VOC_ROOT / "VOC2007/ImageSets/Main").iterdir()) == ["test.txt"]
    assert sorted(p.name for p in (VOC_ROOT / "VOC2012/ImageSets/Main").iterdir()) == ["test.txt"]


@pytest.mark.parametrize("year,n_images,n_objects,n_difficult", [(2007, 5, 17, 2), (2012, 45, 106, 19)])
def test_voc_counts_match_xml_and_readme(year, n_images, n_objects, n_difficult):
    ds = VOCDetection(VOC_ROOT, splits=((year, "test"),))
    assert len(ds) == n_images
    counts, difficult = _label_counts(ds)
    xml_counts, xml_difficult = _xml_counts(VOC_ROOT / f"VOC{year}")
    assert counts == xml_counts
    assert difficult == xml_difficult == n_difficult
    assert sum(counts.values()) == n_objects
    if year == 2012:
        assert dict(counts) == VOC2012_PUBLISHED


def test_voc_items_equal_gluoncv(gcv):
    ours = VOCDetection(VOC_ROOT, splits=VOC_SPLITS)
    ref = gcv.data.VOCDetection(str(VOC_ROOT), splits=VOC_SPLITS)
    assert len(ours) == len(ref) == 50
    assert ours.classes == tuple(ref.classes) == VOC_CLASSES
    for i in range(len(ours)):
        img, label = ours[i]
        ref_img, ref_label = ref[i]
        assert isinstance(img, mx.nd.NDArray) and img.dtype == np.uint8 and img.shape[2] == 3
        assert label.dtype == np.float32 and label.shape[1] == 6
        np.testing.assert_array_equal(label, ref_label.astype(np.float32))
        np.testing.assert_array_equal(img.asnumpy(), ref_img.asnumpy())
        np.testing.assert_array_equal(ours.label(i), label)
        assert ours.image_size(i) == (img.shape[1], img.shape[0])
        assert os.path.basename(ours.image_path(i)) == f"{ours.image_id(i)}.jpg"


def test_voc_label_is_a_copy():
    ds = VOCDetection(VOC_ROOT, splits=((2007, "test"),))
    ds.label(0)[:] = 99
    _, lab = ds[0]
    lab[:] = 99
    assert (ds.label(0) != 99).all()


def test_voc_class_subset_needs_skip():
    with pytest.raises(AnnotationError, match=r"000001\.xml.*'dog'"):
        VOCDetection(VOC_ROOT, splits=((2007, "test"),), classes=("person", "car"))
    ds = VOCDetection(VOC_ROOT, splits=((2007, "test"),), classes=("person", "car"), unknown_classes="skip")
    counts, _ = _label_counts(ds)
    xml_counts, _ = _xml_counts(VOC_ROOT / "VOC2007")
    assert counts == {k: xml_counts[k] for k in ("person", "car")}
    assert len(ds) == 5 and len(ds.label(2)) == 0  # 000003 (sofa, chair) keeps an empty (0, 6) label
    assert ds.label(2).shape == (0, 6)


# ---------------------------------------------------------------- COCO on real data
def _json_counts(split, use_crowd):
    data = json.loads((TINYCOCO / "annotations" / f"{split}.json").read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    return collections.Counter(
        names[a["category_id"]] for a in data["annotations"] if use_crowd or not a["iscrowd"]
    ), {im["id"] for im in data["images"]}


@pytest.mark.parametrize(
    "split,n_ann,n_crowd", [("instances_train2017", 288, 4), ("instances_val2017", 136, 1)]
)
def test_coco_counts_match_json(split, n_ann, n_crowd):
    folder = "images/" + split.split("_")[1]
    for use_crowd in (False, True):
        ds = COCODetection(TINYCOCO, split, image_dir=folder, skip_empty=False, use_crowd=use_crowd)
        counts, image_ids = _json_counts(split, use_crowd)
        assert _label_counts(ds)[0] == counts
        assert sum(counts.values()) == n_ann - (0 if use_crowd else n_crowd)
        assert _label_counts(ds)[1] == (n_crowd if use_crowd else 0)  # crowd flagged in column 5
        assert ds.image_ids == sorted(image_ids)
        assert ds.classes == COCO_CLASSES


def test_coco_swapped_folders_by_configuration(tmp_path):
    # tinycoco's images/train2017 holds official val2017 images (README): 397133 is among them
    ds = COCODetection(TINYCOCO, "instances_train2017", image_dir="images/train2017")
    assert 397133 in ds.image_ids and len(ds) == 30
    assert all(os.path.dirname(ds.image_path(i)).endswith("images/train2017") for i in range(len(ds)))
    # the default image_dir, derived from the split name, is root/train2017 (missing in tinycoco)
    with pytest.raises(FileNotFoundError, match="image_dir"):
        COCODetection(TINYCOCO, "instances_train2017")
    # ... and is right in the COCO layout (symlinks, no copies)
    (tmp_path / "annotations").symlink_to(TINYCOCO / "annotations")
    for split in ("train2017", "val2017"):
        (tmp_path / split).symlink_to(TINYCOCO / "images" / split)
    both = COCODetection(tmp_path, ("instances_train2017", "instances_val2017"))
    assert len(both) == 36 and both.image_ids[:30] == ds.image_ids
    assert os.path.dirname(both.image_path(35)) == str(tmp_path / "val2017")
    with pytest.raises(ValueError, match="evaluate each split separately"):
        _ = both.coco


@pytest.mark.parametrize("split", ["instances_train2017", "instances_val2017"])
@pytest.mark.parametrize("use_crowd,skip_empty", [(True, True), (False, False)])
def test_coco_items_equal_gluoncv(gcv, coco_url_root, split, use_crowd, skip_empty):
    folder = "images/" + split.split("_")[1]
    ours = COCODetection(TINYCOCO, split, image_dir=folder, use_crowd=use_crowd, skip_empty=skip_empty)
    ref = gcv.data.COCODetection(str(coco_url_root), split, use_crowd=use_crowd, skip_empty=skip_empty)
    assert len(ours) == len(ref)
    assert ours.json_id_to_contiguous == ref.json_id_to_contiguous
    assert ours.contiguous_id_to_json == ref.contiguous_id_to_json
    assert ours.coco.getImgIds() == ref.coco.getImgIds()
    decode = split == "instances_val2017" or use_crowd  # decode each image once across the cases
    n_empty = 0
    for i in range(len(ours)):
        ref_label = np.asarray(ref._labels[i], dtype=np.float32)
        if (ref_label == -1).all():  # gluoncv's dummy row for an image without objects
            n_empty += 1
            assert ours.label(i).shape == (0, 6)
        else:
            np.testing.assert_array_equal(ours.label(i)[:, :5], ref_label)
        assert os.path.basename(ours.image_path(i)) == os.path.basename(ref._items[i])
        if decode:
            img, label = ours[i]
            ref_img, _ = ref[i]
            np.testing.assert_array_equal(img.asnumpy(), ref_img.asnumpy())
            np.testing.assert_array_equal(label, ours.label(i))
    assert n_empty == (2 if (split, skip_empty) == ("instances_train2017", False) else 0)


def test_coco_image_size_from_json():
    ds = COCODetection(TINYCOCO, "instances_val2017", image_dir="images/val2017")
    data = json.loads((TINYCOCO / "annotations/instances_val2017.json").read_text())
    sizes = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
    assert [ds.image_size(i) for i in range(len(ds))] == [sizes[i] for i in ds.image_ids]


# ---------------------------------------------------------------- bad data, custom VOC layout
def _xml(name, width, height, objects):
    objs = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b, d in objects
    )
    size = "" if width is None else f"<size><width>{width}</width><height>{height}</height></size>"
    return f"<annotation><filename>{name}.jpg</filename>{size}{objs}</annotation>"


@pytest.fixture()
def voc_folder(tmp_path):
    """A custom VOC folder: 6 synthetic images whose annotations the tests overwrite by hand."""
    write_synthetic_dataset(tmp_path, 6, 0, seed=11, min_size=64, max_size=64, min_object_size=20,
                            max_object_size=30, progress=False)
    return tmp_path


def _write_xml(folder, image_id, objects, width=64, height=64):
    (folder / "Annotations" / f"{image_id}.xml").write_text(_xml(image_id, width, height, objects))


def test_custom_voc_missing_things(tmp_path, voc_folder):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        CustomVOCDetection(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=r"test\.txt.*available.*\['train', 'val'\]"):
        CustomVOCDetection(voc_folder, "test")
    (voc_folder / "classes.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"classes\.txt.*pass classes="):
        CustomVOCDetection(voc_folder)
    ds = CustomVOCDetection(voc_folder, classes=("circle", "square", "triangle", "cross", "ring"))
    assert len(ds) == 6
    with pytest.raises(FileNotFoundError, match="VOC root"):
        VOCDetection(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=r"VOC2007.*folders in"):
        VOCDetection(tmp_path, splits=((2007, "test"),))


def test_custom_voc_hand_worked_boxes(voc_folder, caplog):
    _write_xml(voc_folder, "train_000000", [
        ("circle", (1, 1, 64, 64), 0),      # whole image: 0-based (0, 0, 63, 63)
        ("Square ", (0, -5, 70, 10), 1),    # outside: clipped to (0, 0, 63, 9), name normalised
        ("ring", (30, 5, 20, 40), 0),       # x2 < x1: dropped
        ("cross", (80, 80, 90, 90), 0),     # fully outside: dropped
    ])
    _write_xml(voc_folder, "train_000001", [])  # no objects
    with caplog.at_level(logging.WARNING, logger="gluon_ssd.data"):
        ds = CustomVOCDetection(voc_folder)
    expected = np.array([[0, 0, 63, 63, 0, 0], [0, 0, 63, 9, 1, 1]], np.float32)
    np.testing.assert_array_equal(ds.label(0), expected)
    assert ds.label(1).shape == (0, 6) and ds.label(1).dtype == np.float32
    warn = [r.getMessage() for r in caplog.records if "train_000000.xml" in r.getMessage()]
    assert len(warn) == 1 and "dropped 2" in warn[0] and "clipped 1" in warn[0]
    images, labels = batchify_detection([ds[1], ds[0]])
    assert images.shape == (2, 64, 64, 3)
    np.testing.assert_array_equal(labels.asnumpy()[0], -np.ones((2, 6)))


def test_custom_voc_unknown_class(voc_folder):
    _write_xml(voc_folder, "train_000002", [("hexagon", (2, 2, 20, 20), 0), ("ring", (2, 2, 20, 20), 0)])
    with pytest.raises(AnnotationError, match=r"train_000002\.xml.*'hexagon'.*unknown_classes='skip'"):
        CustomVOCDetection(voc_folder)
    ds = CustomVOCDetection(voc_folder, unknown_classes="skip")
    np.testing.assert_array_equal(ds.label(2), [[1, 1, 19, 19, 4, 0]])


def test_custom_voc_size_missing_read_from_image(voc_folder):
    (voc_folder / "Annotations/train_000003.xml").write_text(
        _xml("train_000003", None, None, [("ring", (5, 6, 30, 31), 0)]))
    ds = CustomVOCDetection(voc_folder)
    assert ds.image_size(3) == (64, 64)
    np.testing.assert_array_equal(ds.label(3), [[4, 5, 29, 30, 4, 0]])


@pytest.mark.parametrize("breakage,error", [
    ("missing_xml", AnnotationError), ("malformed_xml", AnnotationError), ("missing_image", BadImageError),
])
def test_custom_voc_broken_item_dropped_or_raised(voc_folder, caplog, breakage, error):
    if breakage == "missing_xml":
        (voc_folder / "Annotations/train_000004.xml").unlink()
    elif breakage == "malformed_xml":
        (voc_folder / "Annotations/train_000004.xml").write_text("<annotation><object>")
    else:
        (voc_folder / "JPEGImages/train_000004.jpg").unlink()
    with pytest.raises(error, match="train_000004"):
        CustomVOCDetection(voc_folder, on_error="raise")
    with caplog.at_level(logging.WARNING, logger="gluon_ssd.data"):
        ds = CustomVOCDetection(voc_folder)
    assert len(ds) == 5 and "train_000004" not in ds.image_ids
    assert [d[0] for d in ds.dropped] == ["train_000004"]
    assert any("train_000004" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("corruption", ["garbage", "truncated", "empty"])
def test_corrupt_jpeg_skipped_at_load(voc_folder, caplog, corruption):
    path = voc_folder / "JPEGImages/train_000002.jpg"
    data = path.read_bytes()
    garbage = np.random.default_rng(0).bytes(2000)
    path.write_bytes({"garbage": garbage, "truncated": data[: len(data) // 2], "empty": b""}[corruption])
    ds = CustomVOCDetection(voc_folder)
    next_img, next_label = ds[3]
    with caplog.at_level(logging.WARNING, logger="gluon_ssd.data"):
        img, label = ds[2]
        ds[2]
    np.testing.assert_array_equal(img.asnumpy(), next_img.asnumpy())
    np.testing.assert_array_equal(label, next_label)
    assert ds.num_skipped == 2
    assert sum("train_000002.jpg" in r.getMessage() for r in caplog.records) == 1  # logged once
    ds.on_error = "raise"
    with pytest.raises(BadImageError, match="train_000002.jpg"):
        ds[2]


def test_every_image_bad_raises(voc_folder):
    for p in (voc_folder / "JPEGImages").iterdir():
        p.write_bytes(b"not a jpeg")
    ds = CustomVOCDetection(voc_folder)
    with pytest.raises(RuntimeError, match="none of the 6 images"):
        ds[0]


# ---------------------------------------------------------------- bad data, COCO JSON
def test_custom_coco_hand_worked(gcv, tmp_path, voc_folder, caplog):
    img_dir = voc_folder / "JPEGImages"
    images = [{"id": k + 1, "file_name": f"train_00000{k}.jpg", "width": 64, "height": 64,
               "coco_url": f"http://x/imgs/train_00000{k}.jpg"} for k in range(4)]
    anns = [
        dict(image_id=1, category_id=7, bbox=[10, 20, 5, 8], area=40.0, iscrowd=0),
        dict(image_id=1, category_id=3, bbox=[60, -2, 10, 10], area=50.0, iscrowd=0),  # clipped
        dict(image_id=1, category_id=3, bbox=[5, 5, 0, 10], area=10.0, iscrowd=0),     # w=0: empty, dropped
        dict(image_id=2, category_id=3, bbox=[5, 5, 10, 10], area=0.0, iscrowd=0),     # area 0: dropped
        dict(image_id=2, category_id=7, bbox=[1, 2, 30, 40], area=900.0, iscrowd=1),   # crowd
        dict(image_id=3, category_id=3, bbox=[0.5, 1.5, 3.25, 4.0], area=9.0, iscrowd=0),
    ]
    for i, a in enumerate(anns):
        a["id"] = i + 1
    cats = [{"id": 3, "name": "car"}, {"id": 7, "name": "truck"}]
    ann_path = tmp_path / "anns.json"
    ann_path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))

    with caplog.at_level(logging.WARNING, logger="gluon_ssd.data"):
        ds = CustomCOCODetection(ann_path, img_dir)
    assert ds.classes == ("car", "truck") and ds.contiguous_id_to_json == {0: 3, 1: 7}
    assert ds.image_ids == [1, 3]  # image 2 has only an empty and a crowd box; image 4 has none
    # x2 = x + w - 1, clipped to [0, 63] (gluoncv's convention)
    np.testing.assert_array_equal(ds.label(0), [[10, 20, 14, 27, 1, 0], [60, 0, 63, 7, 0, 0]])
    np.testing.assert_array_equal(ds.label(1), [[0.5, 1.5, 2.75, 4.5, 0, 0]])
    assert any("anns.json" in r.getMessage() and "dropped 2" in r.getMessage() for r in caplog.records)

    crowd = CustomCOCODetection(ann_path, img_dir, use_crowd=True, skip_empty=False)
    assert crowd.image_ids == [1, 2, 3, 4]
    np.testing.assert_array_equal(crowd.label(1), [[1, 2, 30, 41, 1, 1]])
    assert crowd.label(3).shape == (0, 6)
    assert crowd.coco.getImgIds() == [1, 2, 3, 4]

    # the same JSON through gluoncv (folder from coco_url): identical boxes and classes
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations/anns.json").write_text(ann_path.read_text())
    (tmp_path / "imgs").symlink_to(img_dir)

    class Ref(gcv.data.COCODetection):
        CLASSES = ["car", "truck"]

    for use_crowd in (False, True):
        ref = Ref(str(tmp_path), "anns", use_crowd=use_crowd, skip_empty=False)
        ours = CustomCOCODetection(ann_path, img_dir, use_crowd=use_crowd, skip_empty=False)
        for i in range(4):
            ref_label = np.asarray(ref._labels[i], np.float32)
            expected = np.zeros((0, 5), np.float32) if (ref_label == -1).all() else ref_label
            np.testing.assert_array_equal(ours.label(i)[:, :5], expected)


def test_custom_coco_missing_image_and_bad_json(tmp_path, voc_folder):
    images = [{"id": 1, "file_name": "train_000000.jpg", "width": 64, "height": 64},
              {"id": 2, "file_name": "gone.jpg", "width": 64, "height": 64}]
    anns = [dict(id=1, image_id=i, category_id=1, bbox=[1, 1, 9, 9], area=81.0, iscrowd=0) for i in (1, 2)]
    anns[1]["id"] = 2
    path = tmp_path / "a.json"
    cats = [{"id": 1, "name": "x"}]
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    ds = CustomCOCODetection(path, voc_folder / "JPEGImages")
    assert ds.image_ids == [1] and ds.dropped[0][0] == 2
    with pytest.raises(FileNotFoundError, match="gone.jpg"):
        CustomCOCODetection(path, voc_folder / "JPEGImages", on_error="raise")
    with pytest.raises(ValueError, match="differ from the expected classes"):
        CustomCOCODetection(path, voc_folder / "JPEGImages", classes=("y",))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.json is not valid JSON"):
        CustomCOCODetection(bad, voc_folder)
    with pytest.raises(FileNotFoundError, match=r"missing\.json.*a\.json"):
        CustomCOCODetection(tmp_path / "missing.json", voc_folder)


# ---------------------------------------------------------------- batchify
def test_batchify_pads_labels_with_minus_one(gcv):
    rng = np.random.default_rng(0)
    images = [mx.nd.array(rng.integers(0, 255, (3, 8, 8)), dtype="uint8") for _ in range(3)]
    labels = [rng.uniform(0, 8, (n, 6)).astype(np.float32) for n in (2, 0, 3)]
    x, y = batchify_detection(list(zip(images, labels)))
    assert x.shape == (3, 3, 8, 8) and x.dtype == np.uint8 and y.shape == (3, 3, 6) and y.dtype == np.float32
    expected = -np.ones((3, 3, 6), np.float32)
    expected[0, :2], expected[2, :3] = labels[0], labels[2]
    np.testing.assert_array_equal(y.asnumpy(), expected)
    ref = gcv.data.batchify.Tuple(gcv.data.batchify.Stack(), gcv.data.batchify.Pad(pad_val=-1))
    ref_x, ref_y = ref([(images[0], labels[0]), (images[2], labels[2])])
    x2, y2 = batchify_detection([(images[0], labels[0]), (images[2], labels[2])])
    np.testing.assert_array_equal(x2.asnumpy(), ref_x.asnumpy())
    np.testing.assert_array_equal(y2.asnumpy(), ref_y.asnumpy())


def test_batchify_empty_labels_and_extra_fields():
    img = mx.nd.zeros((3, 4, 4))
    empty = np.zeros((0, 6), np.float32)
    _, y = batchify_detection([(img, empty), (img, empty)])
    np.testing.assert_array_equal(y.asnumpy(), -np.ones((2, 1, 6)))
    # (image, cls_targets, box_targets): equal-shaped fields are stacked, not padded
    samples = [(img, mx.nd.array([1, 0, 2]), np.full((3, 4), k, np.float32)) for k in range(2)]
    x, cls, box = batchify_detection(samples)
    assert x.shape == (2, 3, 4, 4) and cls.shape == (2, 3) and box.shape == (2, 3, 4)
    np.testing.assert_array_equal(box.asnumpy()[1], np.ones((3, 4)))
    # a variable-length NDArray field is padded too; scalars are stacked
    _, lab, ids = batchify_detection([(img, mx.nd.ones((1, 6)), 7), (img, mx.nd.ones((2, 6)), 8)])
    np.testing.assert_array_equal(lab.asnumpy()[0], [[1] * 6, [-1] * 6])
    np.testing.assert_array_equal(ids.asnumpy(), [7, 8])
    with pytest.raises(ValueError, match="resize images"):
        batchify_detection([(mx.nd.zeros((3, 4, 4)), empty), (mx.nd.zeros((3, 5, 4)), empty)])
    with pytest.raises(ValueError, match="empty list"):
        batchify_detection([])


# ---------------------------------------------------------------- loader
def _resize_to_32(img, label):
    h, w = img.shape[:2]
    out = mx.image.imresize(img, 32, 32, interp=1).transpose((2, 0, 1)).astype("float32")
    label = label.copy()
    label[:, (0, 2)] *= 32 / w
    label[:, (1, 3)] *= 32 / h
    return out, label


def test_loader_two_workers(voc_folder):
    _write_xml(voc_folder, "train_000001", [])  # an image without objects in the first batch
    ds = CustomVOCDetection(voc_folder).transform(_resize_to_32)
    expected = [ds[i] for i in range(len(ds))]
    for last_batch, sizes in (("keep", [4, 2]), ("discard", [4])):
        loader = make_loader(ds, 4, num_workers=2, last_batch=last_batch)
        batches = list(loader)
        assert [b[0].shape[0] for b in batches] == sizes and len(loader) == len(sizes)
        for b, (x, y) in enumerate(batches):
            for j in range(x.shape[0]):
                img, lab = expected[4 * b + j]
                np.testing.assert_array_equal(x[j].asnumpy(), img.asnumpy())
                np.testing.assert_array_equal(y[j].asnumpy()[: len(lab)], lab)
                assert (y[j].asnumpy()[len(lab):] == -1).all()
    rolled = make_loader(ds, 4, last_batch="rollover")
    assert [len(list(rolled)) for _ in range(3)] == [1, 2, 1]  # 6, then 2 + 6 = 8, then 0 + 6


def test_loader_shuffle_seeded_and_workers_reseeded():
    ds = mx.gluon.data.SimpleDataset(list(range(10)))
    order = lambda seed: np.concatenate([b.asnumpy() for b in make_loader(ds, 3, shuffle=True, seed=seed)])
    a, b, c = order(5), order(5), order(6)
    np.testing.assert_array_equal(a, b)
    assert sorted(a.tolist()) == list(range(10)) and not np.array_equal(a, c)
    loader = make_loader(ds, 3, shuffle=True, seed=5)
    assert not np.array_equal(*[np.concatenate([x.asnumpy() for x in loader]) for _ in range(2)])
    # forked workers must not draw the same "random" numbers
    draws = mx.gluon.data.SimpleDataset(list(range(8))).transform(lambda i: np.random.randint(2**31))
    got = [x.asnumpy().tolist() for x in make_loader(draws, 2, num_workers=2, seed=1)]
    assert len({v for batch in got for v in batch}) == 8
