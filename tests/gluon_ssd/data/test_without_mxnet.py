"""The data pipeline, the metrics and the evaluation loop where MXNet is not installed (the GPU machines).

Each test runs the MXNet-free code in a subprocess whose imports of mxnet fail (tests.helpers.WITHOUT_MXNET),
writes what it got to a file, and compares it here against the same code with MXNet: images decoded by
opencv-python against MXNet's decoder, the validation resize of opencv-python against MXNet's bundled OpenCV,
the training augmentation, and a whole evaluation.
"""
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import DATA, ROOT, WITHOUT_MXNET


def without_mxnet(code: str, timeout: int = 300) -> str:
    out = subprocess.run([sys.executable, "-c", WITHOUT_MXNET + code], cwd=ROOT, capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return out.stdout


def _images():
    paths = sorted(str(p) for p in DATA.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    assert len(paths) >= 50, paths
    return paths


def _common_chroma(path) -> bool:
    """A PNG, or a JPEG with 4:4:4, 4:2:2 or 4:2:0 chroma subsampling (PIL: -1 for any other)."""
    from PIL import Image, JpegImagePlugin

    with Image.open(path) as im:
        return im.format == "PNG" or JpegImagePlugin.get_sampling(im) != -1


def test_opencv_decodes_the_pixels_mxnet_decodes(tmp_path):
    """Every JPEG and PNG of the shared data, as (H, W, 3) uint8 RGB: PNGs and the JPEGs of 4:4:4 / 4:2:0
    chroma (every VOC and COCO photo) bit for bit; the JPEGs of an unusual subsampling (4 of the darknet demo
    photos) within 2 grey levels: the libjpeg of opencv-python and MXNet's upsample that chroma with different
    rounding (the JPEG standard fixes a decoder's output only to within such rounding)."""
    from gluon_ssd.data.custom import read_image

    paths = _images()
    without_mxnet(f"""
import numpy as np
from gluon_ssd.data.custom import read_image
arrays = [read_image(p) for p in {paths!r}]
assert all(type(a) is np.ndarray for a in arrays)
np.savez({str(tmp_path / 'decoded.npz')!r}, *arrays)
""")
    got = np.load(tmp_path / "decoded.npz")
    exact = 0
    for i, path in enumerate(paths):
        expected = read_image(path).asnumpy()
        if _common_chroma(path):
            np.testing.assert_array_equal(got[f"arr_{i}"], expected, err_msg=path)
            exact += 1
        else:
            assert got[f"arr_{i}"].shape == expected.shape, path
            assert np.abs(got[f"arr_{i}"].astype(int) - expected).max() <= 2, path
    assert exact >= 100


def test_bad_images_are_reported_without_mxnet(tmp_path):
    good = open(_images()[0], "rb").read()
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "cut.jpg").write_bytes(good[:len(good) // 2])
    (tmp_path / "noise.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    without_mxnet(f"""
from gluon_ssd.data.custom import BadImageError, read_image
for name, words in (("empty.jpg", "is empty"), ("cut.jpg", "truncated"), ("noise.png", "cannot decode")):
    path = {str(tmp_path)!r} + "/" + name
    try:
        read_image(path)
    except BadImageError as err:
        assert words in str(err) and path in str(err), str(err)
    else:
        raise AssertionError(name + " was read")
""")


def test_validation_resize_is_opencv_within_one_grey_level(tmp_path):
    """The validation transform without MXNet resizes with opencv-python, MXNet with its bundled OpenCV: on
    uint8 images the two differ by at most one grey level (rounding of the bicubic), which after the
    normalization is at most 1 / (255 * std) per value; the labels are the same."""
    from gluon_ssd.data.custom import read_image
    from gluon_ssd.data.transforms import SSDDefaultValTransform
    from gluon_ssd.specs import IMAGENET_STD

    paths = [p for p in _images() if _common_chroma(p)][:12]
    # 300: shrinks the VOC photos (area); 700 x 600 enlarges them (bicubic); 500 x 300 one side of each (bilinear).
    sizes = [(300, 300), (700, 600), (500, 300)]
    label = np.array([[10, 20, 200, 150, 1, 0]], np.float32)
    without_mxnet(f"""
import numpy as np
from gluon_ssd.data.custom import read_image
from gluon_ssd.data.transforms import SSDDefaultValTransform
label = np.array([[10, 20, 200, 150, 1, 0]], np.float32)
out = []
for w, h in {sizes!r}:
    t = SSDDefaultValTransform(w, h)
    for p in {paths!r}:
        image, boxes = t(read_image(p), label)
        assert type(image) is np.ndarray
        out += [image, boxes]
np.savez({str(tmp_path / 'val.npz')!r}, *out)
""")
    got = np.load(tmp_path / "val.npz")
    bound = 1.0 / (255 * min(IMAGENET_STD)) + 1e-6
    worst, k = 0.0, 0
    for w, h in sizes:
        transform = SSDDefaultValTransform(w, h)
        for path in paths:
            image, boxes = transform(read_image(path), label)
            diff = np.abs(got[f"arr_{k}"] - image.asnumpy())
            assert diff.max() <= bound, (path, w, h, diff.max())
            worst = max(worst, float(diff.max()))
            np.testing.assert_array_equal(got[f"arr_{k + 1}"], boxes)
            k += 2
    assert worst > 0  # the two OpenCVs do differ (if this fails, tighten the bound and the docstrings)


def test_training_batches_are_the_same_without_mxnet(tiny_train_dataset, tmp_path):
    """The augmentation (numpy and opencv-python) of the same (seed, epoch, index) gives the same batch with
    and without MXNet, through gluon's DataLoader here and PyTorch's there (2 worker processes)."""
    from gluon_ssd.data.batchify import batchify_detection
    from gluon_ssd.data.open import open_dataset
    from gluon_ssd.data.transforms import SSDDefaultTrainTransform
    from gluon_ssd.train.loop import EpochBatchSampler, SeededAugmentation

    code = f"""
import numpy as np
from gluon_ssd.data.batchify import batchify_detection, torch_loader
from gluon_ssd.data.open import open_dataset
from gluon_ssd.data.transforms import SSDDefaultTrainTransform
from gluon_ssd.train.loop import EpochBatchSampler, SeededAugmentation
ds = SeededAugmentation(open_dataset("custom", {tiny_train_dataset!r}, purpose="train"),
                        SSDDefaultTrainTransform(300, 300), 7)
sampler = EpochBatchSampler(len(ds), 4, 7)
sampler.epoch = 1
out = []
for images, labels in torch_loader(ds, sampler, batchify_detection, num_workers=2):
    assert type(images) is np.ndarray
    out += [images, labels]
np.savez({str(tmp_path / 'train.npz')!r}, *out)
"""
    without_mxnet(code)
    got = np.load(tmp_path / "train.npz")
    ds = SeededAugmentation(open_dataset("custom", tiny_train_dataset, purpose="train"),
                            SSDDefaultTrainTransform(300, 300), 7)
    sampler = EpochBatchSampler(len(ds), 4, 7)
    sampler.epoch = 1
    batches = list(sampler)
    assert len(got.files) == 2 * len(batches) == 6
    for b, keys in enumerate(batches):
        images, labels = batchify_detection([ds[key] for key in keys])
        np.testing.assert_array_equal(got[f"arr_{2 * b}"], images.asnumpy())
        np.testing.assert_array_equal(got[f"arr_{2 * b + 1}"], labels.asnumpy())


TINYCOCO_VAL = (f"COCODetection({str(DATA / 'coco_sample' / 'tinycoco')!r}, 'instances_val2017', "
                f"image_dir='images/val2017', skip_empty=False)")


@pytest.mark.parametrize("metric", ["voc07", "coco"])
def test_evaluation_without_mxnet_gives_the_same_numbers(tiny_train_dataset, metric):
    """evaluate() with a detector callable (any backend's interface) on a dataset, with 2 loader workers, VOC07
    and COCO metrics: the same per-class values as with MXNet. The detector ignores the pixels (which the two
    resizes make differ slightly)."""
    from gluon_ssd.eval.loop import evaluate

    make = TINYCOCO_VAL if metric == "coco" else f"open_dataset('custom', {tiny_train_dataset!r}, purpose='eval')"
    detector = """
import numpy as np
class Detector:
    # The ground truth of the images in loader order (boxes scaled to the 300 px input, shifted by 6 px),
    # each with a false box scored between them, so the APs are neither 0 nor 1.
    def __init__(self, ds):
        self.ds, self.classes, self.calls, self.seen = ds, ds.classes, 0, 0
    def __call__(self, batch):
        rows = []
        for i in range(self.seen, self.seen + len(batch)):
            label = self.ds.label(i)
            w, h = self.ds.image_size(i)
            boxes = label[:, :4] * np.array([300 / w, 300 / h] * 2) + 6
            k = np.arange(len(label))
            fake = [[label[0, 4]], [0.7 + 0.2 * (i % 2)], [[5, 5, 40, 60]]]
            rows.append((np.r_[label[:, 4], fake[0]], np.r_[0.9 - 0.3 * (k % 2), fake[1]],
                         np.r_[boxes, fake[2]]))
        self.seen += len(batch)
        self.calls += 1
        n = max(len(r[0]) for r in rows)
        ids = np.full((len(batch), n), -1.0)
        scores, boxes = np.full((len(batch), n), -1.0), np.full((len(batch), n, 4), -1.0)
        for b, (i, sc, bx) in enumerate(rows):
            ids[b, :len(i)], scores[b, :len(i)], boxes[b, :len(i)] = i, sc, bx
        return ids, scores, boxes
"""
    code = detector + f"""
import json
from gluon_ssd.data import COCODetection, open_dataset
from gluon_ssd.eval.loop import evaluate
ds = {make}
det = Detector(ds)
result = evaluate(det, ds, 300, batch_size=3, metric={metric!r}, num_workers=2, progress=False)
print(json.dumps([result.names, result.values, result.num_images]))
"""
    import json

    names, values, images = json.loads(without_mxnet(code).strip().splitlines()[-1])
    scope: dict = {}
    exec(detector + "from gluon_ssd.data import COCODetection, open_dataset\n", scope)
    ds = eval(make, scope)
    det = scope["Detector"](ds)
    result = evaluate(det, ds, 300, batch_size=3, metric=metric, num_workers=0, progress=False)
    assert det.calls == 2 and images == len(ds) >= 4
    assert names == result.names and len(values) > 1
    np.testing.assert_allclose(values, result.values, rtol=0, atol=1e-12)
    assert 0 < result.map < 1


@pytest.mark.parametrize("last_batch", ["keep", "discard", "rollover"])
def test_batches_of_the_torch_loader_are_gluons(last_batch):
    """The index lists the loader without MXNet uses equal gluon's BatchSampler's, over three epochs."""
    import mxnet as mx

    from gluon_ssd.data.batchify import _BatchIndices

    ours, gluons = _BatchIndices(range(10), 4, last_batch), mx.gluon.data.BatchSampler(
        mx.gluon.data.SequentialSampler(10), 4, last_batch)
    for _ in range(3):
        assert len(ours) == len(gluons)
        assert list(ours) == list(gluons)
