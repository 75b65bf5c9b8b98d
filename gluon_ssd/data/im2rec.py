"""Detection data in MXNet's im2rec formats: ``RecordFileDetection`` (a ``.rec`` RecordIO file and its ``.idx``)
and ``LstDetection`` (a ``.lst`` text file beside the image files), GluonCV's readers with their signatures.

The label of an image is one flat row of numbers, as ``im2rec.py --pack-label`` and GluonCV's
"Prepare custom datasets" document it::

    A, B, [header extras ...], (class, xmin, ymin, xmax, ymax, [object extras ...]) * N

``A`` is the header length (A and B included, so ``A >= 2``; GluonCV's tutorial writes ``4, 5, width, height``),
``B`` the number of values per object (``B >= 5``). Boxes are normalized to [0, 1] unless
``coord_normalized=False``. A ``.lst`` line is ``index<TAB>label values<TAB>...<TAB>image path``.

Items are ``(image, label)``, GluonCV's: image (H, W, 3) uint8 RGB ``mx.nd.NDArray`` (numpy without MXNet, for
``.lst``), label (N, B) numpy ``[xmin, ymin, xmax, ymax, class, object extras ...]`` in pixels (the class moves
from the first column to the fifth; normalized boxes are multiplied by the image width and height), float32 from
a ``.rec`` file, float64 from a ``.lst`` file.

Differences from GluonCV: a malformed label is reported at construction for ``.lst`` (GluonCV: when the item is
read), with the line number; an image without objects gets a (0, B) label (GluonCV raises); a ``.rec`` without its
``.idx`` is reported by name. Reading ``.rec`` needs MXNet (:class:`gluon_ssd._mxnet.MXNetMissing` without it);
``.lst`` does not.
"""
from __future__ import annotations

import os

import numpy as np

from .._mxnet import Dataset, mx, require
from .custom import BadImageError, read_image

__all__ = ["RecordFileDetection", "LstDetection", "im2rec_label"]


def im2rec_label(raw, width: float | None = None, height: float | None = None, where: str = "label") -> np.ndarray:
    """The (N, B) detection label of a flat im2rec label row.

    Parameters
    ----------
    raw : array-like
        ``A, B, header extras, (class, xmin, ymin, xmax, ymax, object extras) * N`` (module docstring).
    width, height : float, optional
        The image size: normalized boxes are multiplied by them. None leaves the boxes as they are.
    where : str
        What the label belongs to, for error messages (a file and record or line).

    Returns
    -------
    np.ndarray
        (N, B) ``[xmin, ymin, xmax, ymax, class, object extras ...]``, the dtype of ``raw``.

    Raises
    ------
    ValueError
        A header length below 2, an object width below 5, or a number of values that is not the header plus
        whole objects; the message names ``where`` and the numbers.
    """
    flat = np.array(raw).ravel()
    if flat.size < 2:
        raise ValueError(f"{where} has {flat.size} value(s); an im2rec detection label starts with the header "
                         "length A and the values per object B (write it with im2rec.py --pack-label)")
    header, per_object = int(flat[0]), int(flat[1])
    if header < 2:
        raise ValueError(f"{where}: the header length (first value) is {flat[0]}; it counts itself and the object "
                         "width, so it is at least 2 (GluonCV's tutorial writes 4: A, B, width, height)")
    if per_object < 5:
        raise ValueError(f"{where}: each object needs at least 5 values (class, xmin, ymin, xmax, ymax), the label "
                         f"says {flat[1]} (its second value)")
    if flat.size < header or (flat.size - header) % per_object:
        raise ValueError(f"{where} has {flat.size} values: not a header of {header} plus whole objects of "
                         f"{per_object}; check the label columns")
    objects = flat[header:].reshape(-1, per_object)
    label = objects.copy()
    label[:, :4] = objects[:, 1:5]
    label[:, 4] = objects[:, 0]
    if width is not None:
        label[:, (0, 2)] *= width
        label[:, (1, 3)] *= height
    return label


class RecordFileDetection(Dataset):
    """Detection data in an MXNet RecordIO file (``.rec`` with its ``.idx``), GluonCV's ``RecordFileDetection``.

    Parameters
    ----------
    filename : str
        The ``.rec`` file; the ``.idx`` of the same name beside it gives random access (``im2rec.py`` writes
        both).
    coord_normalized : bool
        The boxes are normalized to [0, 1] (multiplied by the image size on reading).

    Notes
    -----
    Items as the module docstring says: an ``mx.nd.NDArray`` (H, W, 3) uint8 RGB image (MXNet's decoder) and
    an (N, B) float32 label.

    Raises
    ------
    MXNetMissing
        MXNet is not installed (RecordIO is MXNet's format; the ``.lst`` list and its images are read without
        it by :class:`LstDetection`).
    FileNotFoundError
        The ``.rec`` or its ``.idx`` does not exist.
    """

    def __init__(self, filename: str, coord_normalized: bool = True):
        mxnet = require("RecordFileDetection (reading an MXNet .rec file; LstDetection reads the .lst list and "
                        "its images without MXNet)")
        self.filename = os.path.expanduser(os.fspath(filename))
        index = os.path.splitext(self.filename)[0] + ".idx"
        for path, what in ((self.filename, "record file"), (index, "index file of the record file")):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{what} {path} does not exist; im2rec.py writes the .rec and its .idx "
                                        "side by side")
        self._coord_normalized = bool(coord_normalized)
        self._record = mxnet.recordio.MXIndexedRecordIO(index, self.filename, "r")
        self._keys = list(self._record.keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __getitem__(self, idx: int):
        header, buf = mx.recordio.unpack(self._record.read_idx(self._keys[idx]))
        img = mx.image.imdecode(buf, 1)
        where = f"record {self._keys[idx]} of {self.filename}"
        if self._coord_normalized:
            return img, im2rec_label(header.label, img.shape[1], img.shape[0], where)
        return img, im2rec_label(header.label, where=where)

    def __repr__(self) -> str:
        return f"RecordFileDetection({self.filename}: {len(self)} images)"


class LstDetection(Dataset):
    """Detection data listed in an im2rec ``.lst`` file, GluonCV's ``LstDetection``.

    Parameters
    ----------
    filename : str
        The ``.lst`` file: ``index<TAB>label values<TAB>...<TAB>image path`` per line (blank lines are skipped).
    root : str
        Folder the image paths are relative to.
    flag : {1, 0}
        1 reads colour images (H, W, 3) RGB, 0 grey ones (H, W, 1).
    coord_normalized : bool
        The boxes are normalized to [0, 1] (multiplied by the image size on reading).

    Notes
    -----
    Items as the module docstring says: the image as ``mx.image.imread`` decodes it (opencv-python's decoder
    without MXNet, a numpy array) and an (N, B) float64 label.

    Raises
    ------
    FileNotFoundError
        The ``.lst`` file does not exist.
    ValueError
        A line with fewer than 3 tab-separated fields, a label value that is not a number, or a malformed
        label; the message names the line.
    """

    def __init__(self, filename: str, root: str = "", flag: int = 1, coord_normalized: bool = True):
        if flag not in (0, 1):
            raise ValueError(f"flag must be 1 (colour) or 0 (grey), got {flag!r}")
        self.filename = os.path.expanduser(os.fspath(filename))
        if not os.path.isfile(self.filename):
            raise FileNotFoundError(f"list file {self.filename} does not exist")
        self._flag, self._coord_normalized = int(flag), bool(coord_normalized)
        self._items: list[str] = []
        self._labels: list[np.ndarray] = []
        with open(self.filename, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                fields = line.strip().split("\t")
                if fields == [""]:
                    continue
                where = f"line {number} of {self.filename}"
                if len(fields) < 3:
                    raise ValueError(f"{where} has {len(fields)} tab-separated field(s); an .lst line is "
                                     "index<TAB>label values<TAB>image path")
                try:
                    label = np.array([float(v) for v in fields[1:-1]], dtype=np.float64)
                except ValueError as err:
                    raise ValueError(f"{where}: a label value is not a number ({err})") from None
                im2rec_label(label, where=where)
                self._items.append(os.path.join(root, fields[-1]))
                self._labels.append(label)

    def __len__(self) -> int:
        return len(self._items)

    def image_path(self, idx: int) -> str:
        """Path of image ``idx`` (``root`` joined with the list's path)."""
        return self._items[idx]

    def __getitem__(self, idx: int):
        path = self._items[idx]
        img = read_image(path) if self._flag == 1 else _read_grey(path)
        where = f"item {idx} ({path}) of {self.filename}"
        if self._coord_normalized:
            return img, im2rec_label(self._labels[idx], img.shape[1], img.shape[0], where)
        return img, im2rec_label(self._labels[idx], where=where)

    def __repr__(self) -> str:
        return f"LstDetection({self.filename}: {len(self)} images)"


def _read_grey(path: str):
    """(H, W, 1) uint8 as ``mx.image.imread(path, 0)``; opencv-python's decoder without MXNet."""
    if mx is not None:
        return mx.image.imread(path, 0)
    import cv2

    img = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise BadImageError(f"cannot read image {path}; check that the file exists and is an image")
    return img[:, :, None]
