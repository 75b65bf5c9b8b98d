"""The dataset checker's VOC-layout checks (the VOC datasets and custom ones): split files, XMLs, images."""
from __future__ import annotations

import os

import numpy as np

from ..custom import BadImageError
from ..voc_xml import AnnotationError, class_index, read_split, read_voc_entry, voc_entry_paths, voc_objects
from .report import EMPTY, Checker, SplitReport, object_groups


def _read_voc_split(ck: Checker, split: SplitReport, folder: str, name: str, image_ext: str) -> list:
    """The items of one split that parse: [(image, xml, VOCAnnotation)]."""
    label, role = split.name, split.role
    if not os.path.isdir(folder):
        parent = os.path.dirname(folder) or "."
        have = sorted(d for d in os.listdir(parent) if os.path.isdir(os.path.join(parent, d)))
        ck.add("fatal", "missing_folder", folder, f"{folder} is not a folder (split {label}); folders in "
               f"{parent}: {have}", label)
        return []
    try:
        ids = read_split(folder, name)
    except FileNotFoundError as err:
        ck.add("fatal", "missing_split", os.path.join(folder, "ImageSets", "Main", f"{name}.txt"), str(err), label)
        return []
    split.listed = len(ids)
    ck.note_duplicates(ids, [voc_entry_paths(folder, i, image_ext)[1] for i in ids], label,
                       os.path.join(folder, "ImageSets", "Main", f"{name}.txt"),
                       "every listing is read, so the image weighs that many times in training and scoring")
    items = []
    for img_id in ids:
        img, xml = voc_entry_paths(folder, img_id, image_ext)
        try:
            items.append((img, xml, read_voc_entry(img, xml, img_id)))
        except AnnotationError as err:
            kind = "missing_annotation" if not os.path.isfile(xml) else "malformed_annotation"
            ck.add(ck.unusable(role), kind, xml, str(err), label)
        except BadImageError as err:
            kind = "missing_image" if not os.path.isfile(img) else "bad_image"
            ck.add(ck.unusable(role), kind, img, str(err), label)
    return items


def _check_voc_items(ck: Checker, split: SplitReport, items: list, index: dict, classes: tuple):
    """Objects and images of the parsed items of one split: (kept class ids, kept difficult flags)."""
    label, role = split.name, split.role
    anns = [a for _, _, a in items]
    obj = voc_objects(anns, index)
    decoded = ck.decode_all([img for img, _, _ in items])
    usable = np.zeros(len(items), bool)
    for i, ((img, xml, ann), mine) in enumerate(zip(items, object_groups(obj.owner, len(items)))):
        cls = obj.cls[mine]
        unknown = sorted({obj.names[j] for j in mine[cls < 0]})
        if unknown:
            ck.add("fatal", "unknown_class", xml,
                   f"{xml} has objects of class {unknown}, which is not among the {len(classes)} classes "
                   f"{classes[:20]}: fix the name or add it to the classes", label)
        known = mine[cls >= 0]
        raw = obj.boxes[known[~obj.valid[known]]]
        empty = (raw[:, 2] <= raw[:, 0]) | (raw[:, 3] <= raw[:, 1])
        for kind, boxes, why in (("empty_box", raw[empty], "have zero or negative width or height"),
                                 ("box_outside", raw[~empty], "lie entirely outside the image")):
            if len(boxes):
                ck.add("dropped", kind, xml, f"{xml}: {len(boxes)} box(es) {(boxes + 1).tolist()} (xmin, ymin, "
                       f"xmax, ymax) {why} ({ann.width}x{ann.height}) and are dropped", label)
        moved = obj.boxes[known[obj.moved[known]]]
        if len(moved):
            ck.add("warning", "box_clipped", xml, f"{xml}: {len(moved)} box(es) {(moved + 1).tolist()} reach "
                   f"outside the {ann.width}x{ann.height} image and are clipped to it", label)
        error, size = decoded[img]
        if error is not None:
            ck.add(ck.unusable(role), "bad_image", img, error, label)
            continue
        usable[i] = True
        if size != (ann.width, ann.height):
            ck.add("warning", "size_mismatch", img, f"image {img} is {size[0]}x{size[1]} but {xml} says "
                   f"{ann.width}x{ann.height}: its boxes may be wrong", label)
        if not obj.kept[mine].any():
            what = "has no <object>" if not ann.names else f"has none of its {len(ann.names)} objects left"
            ck.add("warning", "no_objects", xml, f"{xml} {what}: image {img} trains as background only", label)
    split.usable = int(usable.sum())
    ck.used_by_role[role].update(img for (img, _, _), u in zip(items, usable) if u)
    keep = obj.kept & usable[obj.owner]
    sizes = np.array([(a.width, a.height) for a in anns], dtype=np.float64).reshape(-1, 2)
    ck.add_sizes(obj.clipped[keep], sizes[obj.owner[keep]])
    return obj.cls[keep], obj.difficult[keep]


def check_voc_like(ck: Checker, entries, classes, image_ext=".jpg"):
    """entries: (label, role, folder, split name); ``classes`` None: every name the XMLs use, sorted."""
    read = []
    for label, role, folder, name in entries:
        split = SplitReport(label, role)
        read.append((split, _read_voc_split(ck, split, folder, name, image_ext)))
    if classes is None:
        classes = sorted({n for _, items in read for _, _, a in items for n in a.names})
    classes = tuple(classes)
    index = class_index(classes)
    ck.report.classes = classes
    for split, items in read:
        cls, difficult = _check_voc_items(ck, split, items, index, classes) if items else EMPTY
        ck.finish_split(split, cls, difficult, classes)

