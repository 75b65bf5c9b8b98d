"""The dataset checker's COCO checks: the annotation JSONs, their categories, boxes and images."""
from __future__ import annotations

import os

import numpy as np

from ...classes import COCO_CLASSES
from ..coco import coco_objects, load_coco
from ..open import COCO_USE_CROWD
from .report import EMPTY, Checker, SplitReport, object_groups


def _check_coco_split(ck: Checker, split: SplitReport, json_path: str, folder: str, state: dict):
    """Everything of one COCO JSON: (kept class ids, kept crowd flags)."""
    label, role = split.name, split.role
    try:
        coco = load_coco(json_path)
    except FileNotFoundError as err:
        ck.add("fatal", "missing_annotation", json_path, str(err), label)
        return EMPTY
    except ValueError as err:
        ck.add("fatal", "malformed_annotation", json_path, str(err), label)
        return EMPTY
    cat_ids = list(coco.getCatIds())
    names = tuple(c["name"] for c in coco.loadCats(cat_ids))
    if names != COCO_CLASSES:
        ck.add("fatal", "wrong_categories", json_path,
               f"the categories of {json_path} {names[:5]}... ({len(names)}) are not COCO's 80 classes "
               f"{COCO_CLASSES[:5]}...: the COCO reader refuses the file", label)
        return EMPTY
    mapping = {int(c): i for i, c in enumerate(cat_ids)}
    first = state.setdefault("first", (json_path, mapping))
    if first[1] != mapping:
        ck.add("fatal", "wrong_categories", json_path,
               f"{json_path} numbers its categories differently from {first[0]}: read them apart", label)
        return EMPTY
    raw_ids = [im.get("id") for im in coco.dataset.get("images", [])]
    image_ids = sorted(coco.getImgIds())
    split.listed = len(image_ids)
    if not os.path.isdir(folder):
        guess = os.path.join(os.path.dirname(folder), "images", os.path.basename(folder))
        hint = f"; {guess} exists: pass it as the image folder (--image-dir)" if os.path.isdir(guess) else ""
        ck.add("fatal", "missing_folder", folder, f"image folder {folder} for {json_path} does not exist{hint}",
               label)
        return EMPTY
    ck.note_duplicates(raw_ids, [json_path] * len(raw_ids), label, f"the images of {json_path}",
                       "pycocotools keeps only the last of those records (its file name and size)")
    if not image_ids:
        return EMPTY
    entries = [coco.imgs[i] for i in image_ids]
    paths = [os.path.join(folder, e["file_name"]) for e in entries]
    wh = np.array([(e["width"], e["height"]) for e in entries], dtype=np.float64)
    anns = coco.dataset.get("annotations") or []
    obj = coco_objects(coco, image_ids, mapping, use_crowd=COCO_USE_CROWD) if anns else None
    kept_per_image = np.zeros(len(image_ids), np.int64)
    if obj is not None:
        orphans = [a.get("id") for a, k in zip(anns, obj.known_image) if not k]
        if orphans:
            ck.add("dropped", "orphan_annotation", json_path, f"{json_path}: {len(orphans)} annotation(s) "
                   f"(ids {orphans[:10]}) name an image id that is not in its images list", label)
        unknown = obj.known_image & (obj.cat < 0)
        invalid = obj.selected & ~obj.valid
        empty = invalid & ((obj.corners[:, 2] <= obj.corners[:, 0]) | (obj.corners[:, 3] <= obj.corners[:, 1])
                           | (obj.area <= 0))
        checks = (("dropped", "unknown_class", unknown, "have category ids not in its categories"),
                  ("dropped", "empty_box", empty, "have zero area or zero or negative width or height"),
                  ("dropped", "box_outside", invalid & ~empty, "lie entirely outside the image"),
                  ("warning", "box_clipped", obj.moved, "reach outside the image and are clipped to it"))
        flagged = unknown | invalid | obj.moved
        groups = object_groups(np.where(flagged, obj.owner, len(image_ids)), len(image_ids))
        for i in np.flatnonzero([len(g) for g in groups]):
            for severity, kind, mask, why in checks:
                sel = groups[i][mask[groups[i]]]
                if len(sel):
                    ck.add(severity, kind, paths[i], f"{json_path}: annotation(s) {[anns[j].get('id') for j in sel]}"
                           f" of image {paths[i]} ({int(wh[i, 0])}x{int(wh[i, 1])}) {why}", label)
        kept_per_image = np.bincount(obj.owner[obj.kept], minlength=len(image_ids))
    skip_empty = role == "train"
    used = np.zeros(len(image_ids), bool)
    for i, path in enumerate(paths):
        if kept_per_image[i] == 0:
            what = "is left out (skip_empty)" if skip_empty else "is evaluated as background only"
            ck.add("dropped" if skip_empty else "warning", "no_objects", path,
                   f"image {path} (id {image_ids[i]}) has no usable object in {json_path} and {what}", label)
            if skip_empty:
                continue
        if not os.path.isfile(path):
            ck.add(ck.unusable(role), "missing_image", path,
                   f"image {path} (id {image_ids[i]}) listed in {json_path} does not exist", label)
            continue
        used[i] = True
    decoded = ck.decode_all([p for p, u in zip(paths, used) if u])
    for i in np.flatnonzero(used):
        error, size = decoded[paths[i]]
        if error is not None:
            ck.add(ck.unusable(role), "bad_image", paths[i], error, label)
            used[i] = False
        elif size != (int(wh[i, 0]), int(wh[i, 1])):
            ck.add("warning", "size_mismatch", paths[i], f"image {paths[i]} is {size[0]}x{size[1]} but "
                   f"{json_path} says {int(wh[i, 0])}x{int(wh[i, 1])}: its boxes may be wrong", label)
    split.usable = int(used.sum())
    ck.used_by_role[role].update(p for p, u in zip(paths, used) if u)
    if obj is None:
        return EMPTY
    keep = obj.kept & used[obj.owner]
    ck.add_sizes(obj.clipped[keep], wh[obj.owner[keep]])
    return obj.cat[keep], (obj.crowd[keep] != 0)


def check_coco(ck: Checker, entries):
    """entries: (label, role, json path, image folder)."""
    state: dict = {}
    ck.report.classes = COCO_CLASSES
    for label, role, json_path, folder in entries:
        split = SplitReport(label, role)
        cls, crowd = _check_coco_split(ck, split, json_path, folder, state)
        ck.finish_split(split, cls, crowd, COCO_CLASSES)

