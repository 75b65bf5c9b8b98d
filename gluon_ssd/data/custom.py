"""A detection dataset over lists of image files and labels; the base of the VOC and COCO readers.

Every dataset in :mod:`gluon_ssd.data` yields ``(image, label)``:

* ``image``: ``mx.nd.NDArray`` (H, W, 3) uint8 RGB, decoded with MXNet's OpenCV decoder, the pixels
  GluonCV sees. Without MXNet (torch-only machines) a numpy array of the same shape, decoded by
  opencv-python: the same pixels for PNGs and 4:4:4 / 4:2:0 JPEGs (every VOC and COCO photo tested), within 2
  grey levels for JPEGs of rarer chroma subsamplings (tests/gluon_ssd/data/test_without_mxnet.py).
* ``label``: ``numpy.ndarray`` (N, 6) float32 rows ``[x1, y1, x2, y2, class, difficult]`` in 0-based
  pixel coordinates of the original image; ``class`` is the index into ``dataset.classes``. An image
  without objects has a (0, 6) label.

Bad images. A file that is missing, empty, not decodable or a JPEG cut short (its bytes do not end with
the JPEG end-of-image marker) is *bad*. With ``on_error='skip'`` (the default, for training) a bad item
is logged once per file and per process, counted in :attr:`DetectionDataset.num_skipped`, and the next
readable item (``idx + 1``, ``idx + 2``, ... wrapping around) is returned instead, so one broken file
never ends an epoch. With ``on_error='raise'`` the error is raised; use it for evaluation, where a
substituted image would be scored against the wrong ground truth.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

import numpy as np

from .._mxnet import Dataset, mx

__all__ = ["DetectionDataset", "BadImageError", "read_image", "empty_label"]

logger = logging.getLogger(__name__)

_ON_ERROR = ("skip", "raise")
_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"


class BadImageError(OSError):
    """An image file that is missing, empty, truncated or cannot be decoded."""


def empty_label() -> np.ndarray:
    """The label of an image without objects: (0, 6) float32."""
    return np.zeros((0, 6), dtype=np.float32)


# File name endings read as images (the demo's folders, calibration folders).
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")


def read_image(path: str):
    """Decode an image file to RGB the way GluonCV does (``mx.image.imread(path, 1)``; opencv-python's
    ``imdecode`` where MXNet is not installed).

    Parameters
    ----------
    path : str
        Image file (JPEG, PNG, ... whatever OpenCV decodes).

    Returns
    -------
    mx.nd.NDArray (numpy array without MXNet)
        (H, W, 3) uint8, RGB.

    Raises
    ------
    BadImageError
        The file is missing, empty, a JPEG without its end-of-image marker (cut short), or not
        decodable. The message names the file.
    """
    try:
        with open(path, "rb") as f:
            buf = f.read()
    except OSError as e:
        raise BadImageError(f"cannot read image {path}: {e.strerror or e}; check that the file exists") from e
    if not buf:
        raise BadImageError(f"image file {path} is empty (0 bytes); replace it or remove it from the split")
    if buf.startswith(_JPEG_SOI) and not buf.rstrip(b"\x00\r\n\t ").endswith(_JPEG_EOI):
        raise BadImageError(
            f"JPEG {path} does not end with the end-of-image marker: it is truncated (or has data appended "
            "after the image); re-download or re-encode it"
        )
    if mx is None:
        return _cv2_decode(buf, path)
    try:
        img = mx.image.imdecode(buf, flag=1, to_rgb=True)
        img.wait_to_read()
    except mx.base.MXNetError as e:
        first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise BadImageError(f"cannot decode image {path} ({first}); replace or re-encode the file") from e
    return img


def _cv2_decode(buf: bytes, path: str) -> np.ndarray:
    import cv2

    img = cv2.imdecode(np.frombuffer(buf, dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise BadImageError(f"cannot decode image {path} (OpenCV reads no image from it); replace or re-encode "
                            "the file")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


class DetectionDataset(Dataset):
    """Detection dataset over image files with preloaded labels.

    Parameters
    ----------
    image_paths : sequence of str, length L
        Image files.
    labels : sequence of array-like, length L
        Each (N_i, 6) ``[x1, y1, x2, y2, class, difficult]`` in 0-based pixels (a (N_i, 5) label gets
        difficult 0). Stored as float32.
    classes : sequence of str
        Class names; ``class`` in the labels indexes this.
    image_sizes : sequence of (int, int), optional
        (width, height) of each image as the annotations state it. Read lazily from the file header when
        not given.
    image_ids : sequence, optional
        An identifier for each image (file stem, COCO image id, ...). Defaults to the index.
    transform : callable, optional
        ``transform(image, label)`` applied in ``__getitem__`` (GluonCV's convention); ``dataset.transform``
        from MXNet works too.
    on_error : {'skip', 'raise'}
        What ``__getitem__`` does with a bad image (see the module docstring).
    """

    def __init__(
        self,
        image_paths: Sequence[str],
        labels: Sequence[np.ndarray],
        classes: Sequence[str],
        image_sizes: Sequence[tuple[int, int]] | None = None,
        image_ids: Sequence | None = None,
        transform: Callable | None = None,
        on_error: str = "skip",
    ):
        if on_error not in _ON_ERROR:
            raise ValueError(f"on_error must be one of {_ON_ERROR}, got {on_error!r}")
        if len(image_paths) != len(labels):
            raise ValueError(
                f"got {len(image_paths)} image paths but {len(labels)} labels; give one label per image"
            )
        for name, seq in (("image_sizes", image_sizes), ("image_ids", image_ids)):
            if seq is not None and len(seq) != len(image_paths):
                raise ValueError(f"got {len(seq)} {name} for {len(image_paths)} images; give one per image")
        self._classes = tuple(str(c) for c in classes)
        if len(set(self._classes)) != len(self._classes):
            raise ValueError(f"class names must be unique, got {self._classes}")
        self._paths = [os.fspath(p) for p in image_paths]
        self._labels = [_as_label(lab, p) for lab, p in zip(labels, self._paths)]
        self._sizes = None if image_sizes is None else [(int(w), int(h)) for w, h in image_sizes]
        self._ids = list(range(len(self._paths))) if image_ids is None else list(image_ids)
        self._transform = transform
        self.on_error = on_error
        self.num_skipped = 0
        self._reported: set[str] = set()

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names, in label index order."""
        return self._classes

    @property
    def num_class(self) -> int:
        """Number of classes."""
        return len(self._classes)

    def __len__(self) -> int:
        return len(self._paths)

    def image_path(self, idx: int) -> str:
        """Path of image ``idx``."""
        return self._paths[idx]

    def image_id(self, idx: int):
        """Identifier of image ``idx`` (file stem for VOC layouts, image id for COCO)."""
        return self._ids[idx]

    @property
    def image_ids(self) -> list:
        """Identifiers of all images, in index order."""
        return list(self._ids)

    def image_size(self, idx: int) -> tuple[int, int]:
        """(width, height) of image ``idx`` from the annotation, else from the file header."""
        if self._sizes is not None:
            return self._sizes[idx]
        return _header_size(self._paths[idx])

    def label(self, idx: int) -> np.ndarray:
        """Label of image ``idx`` without decoding the image: (N, 6) float32, a copy."""
        return self._labels[idx].copy()

    def __getitem__(self, idx: int):
        n = len(self._paths)
        if not -n <= idx < n:
            raise IndexError(f"index {idx} out of range for a dataset of {n} images")
        idx %= n
        for step in range(n):
            j = (idx + step) % n
            try:
                img = read_image(self._paths[j])
            except BadImageError as e:
                if self.on_error == "raise":
                    raise
                self.num_skipped += 1
                if self._paths[j] not in self._reported:
                    self._reported.add(self._paths[j])
                    logger.warning("skipping item %d: %s (on_error='skip' returns the next item)", j, e)
                continue
            self._check_size(j, img)
            label = self._labels[j].copy()
            if self._transform is not None:
                return self._transform(img, label)
            return img, label
        raise RuntimeError(f"none of the {n} images of this dataset can be read; see the warnings above")

    def _check_size(self, idx: int, img) -> None:
        if self._sizes is None:
            return
        w, h = self._sizes[idx]
        if (img.shape[1], img.shape[0]) != (w, h) and self._paths[idx] not in self._reported:
            self._reported.add(self._paths[idx])
            logger.warning(
                "image %s is %dx%d but its annotation says %dx%d; its boxes may be wrong",
                self._paths[idx], img.shape[1], img.shape[0], w, h,
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} images, {self.num_class} classes)"


def _as_label(label, path: str) -> np.ndarray:
    arr = np.asarray(label, dtype=np.float32)
    if arr.size == 0:
        return empty_label()
    if arr.ndim != 2 or arr.shape[1] not in (5, 6):
        raise ValueError(
            f"label of {path} must be (N, 6) [x1, y1, x2, y2, class, difficult], got shape {arr.shape}"
        )
    if arr.shape[1] == 5:
        arr = np.concatenate([arr, np.zeros((len(arr), 1), np.float32)], axis=1)
    return np.ascontiguousarray(arr)


def _header_size(path: str) -> tuple[int, int]:
    """(width, height) from the image header, without decoding the pixels."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except OSError as e:
        raise BadImageError(f"cannot read the size of image {path}: {e}; check the file") from e
