"""Pretrained parameter files: GluonCV's model-store names, download, sha1 check and cache.

A file ``{name}-{sha1[:8]}.params`` is looked up in ``$MXNET_HOME/models`` (default ~/.mxnet/models).
When missing or corrupted it is downloaded as ``{repo}gluon/models/{name}-{sha1[:8]}.zip``, where repo is
``$MXNET_GLUON_REPO`` (default Apache MXNet's public bucket), verified against the sha1 and only then
moved into the cache: the cache never holds a half or unverified file.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile

from .fileio import atomic_path

log = logging.getLogger(__name__)

DEFAULT_REPO = "https://apache-mxnet.s3-accelerate.dualstack.amazonaws.com/"

# sha1 of GluonCV's published files (GluonCV 0.10.5 model store).
MODEL_SHA1 = {
    "ssd_300_vgg16_atrous_voc": "0e169fbb64efdee6985c3c175ec4298c4bda0298",
    "ssd_300_vgg16_atrous_coco": "b302ad8a8660345c368448141d8acf30b5a3801d",
    "ssd_512_vgg16_atrous_voc": "daf8181b615b480236fcb8474545077891276945",
    "ssd_512_vgg16_atrous_coco": "5c86064290c05eccbdd88475376c71c595c8325c",
    "ssd_512_resnet50_v1_voc": "9c8b225a552614e4284a0f647331bfdc6940eb4a",
    "ssd_512_resnet50_v1_coco": "c48351620d4f0cbc49e4f7a84c8e67ef8fdc6e09",
    "ssd_512_resnet101_v2_voc": "2cc0f93edf1467f428018cc7261d3246dfa15259",
    "ssd_512_mobilenet1.0_voc": "37c180765a4eb3e67751d6bacac47bb9156f5fff",
    "ssd_512_mobilenet1.0_coco": "da9756faa5b9b4e34dedcf83ee0733d5895796ad",
    "ssd_300_resnet34_v1b_coco": "ade34ff72a2418fac94afe1048bc305b980c83c5",
    # ImageNet backbones
    "vgg16_atrous": "4fa2e1ad96b8c8d1ba9e5a43556cd909d70b3985",
    "resnet18_v1": "a0666292f0a30ff61f857b0b66efc0228eb6a54b",
    "resnet50_v1": "cc729d95031ca98cf2ff362eb57dee4d9994e4b2",
    "resnet101_v2": "18e93e4f48947e002547f50eabbcc9c83e516aa6",
    "resnet152_v2": "f2695542de38cf7e71ed58f02893d82bb409415e",
    "mobilenet1.0": "efbb2ca3881998d5a8c5cb6c457a28c1e085fed5",
    "mobilenet1.0_lite": "efbb2ca3881998d5a8c5cb6c457a28c1e085fed5",
    "mobilenet0.25": "f0046a3da4e150b85da58ea31913dbb86e7540d1",
    "resnet34_v1b": "8e16b84814e84f64d897854003f049872991eaa6",
}


class ModelStoreError(RuntimeError):
    """A pretrained file could not be had; the message says which file and where to put it."""


def default_root() -> str:
    home = os.environ.get("MXNET_HOME")
    return os.path.join(home, "models") if home else os.path.join(os.path.expanduser("~"), ".mxnet", "models")


def file_stem(name: str) -> str:
    """GluonCV's stored name: ``{name}-{short sha1}``."""
    if name not in MODEL_SHA1:
        raise ModelStoreError(f"no pretrained weights are published for {name!r}; those that are: "
                              + ", ".join(k for k in MODEL_SHA1 if k.startswith("ssd")))
    store_name = name.replace("_lite", "")
    return f"{store_name}-{MODEL_SHA1[name][:8]}"


def sha1_of(path, chunk=1 << 20) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def repo_url() -> str:
    url = os.environ.get("MXNET_GLUON_REPO", DEFAULT_REPO)
    return url if url.endswith("/") else url + "/"


def _download(url, dest, progress=True, timeout=30):
    """Stream ``url`` to ``dest`` with a progress bar."""
    from tqdm import tqdm

    with urllib.request.urlopen(url, timeout=timeout) as resp, open(dest, "wb") as out:
        total = int(resp.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=os.path.basename(url),
                  disable=not progress, leave=False) as bar:
            for block in iter(lambda: resp.read(1 << 16), b""):
                out.write(block)
                bar.update(len(block))


def get_model_file(name: str, root=None, progress=True) -> str:
    """Path of the verified pretrained file for ``name``, downloading it into the cache if needed."""
    root = os.path.expanduser(root) if root else default_root()
    stem = file_stem(name)
    expected = MODEL_SHA1[name]
    path = os.path.join(root, stem + ".params")
    if os.path.isfile(path):
        if sha1_of(path) == expected:
            return path
        log.warning("%s does not match its sha1 (%s); downloading it again", path, expected[:8])
    os.makedirs(root, exist_ok=True)
    url = f"{repo_url()}gluon/models/{stem}.zip"
    with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as tmp:
        zpath = os.path.join(tmp, stem + ".zip")
        try:
            _download(url, zpath, progress)
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            raise ModelStoreError(
                f"could not download the pretrained weights for {name} from {url} ({reason}). "
                f"On a machine with internet access fetch that zip (or run gluoncv's get_model({name!r}, "
                f"pretrained=True)), and put {stem}.params into {root}; or set MXNET_GLUON_REPO to a "
                "mirror that has gluon/models/.") from None
        try:
            with zipfile.ZipFile(zpath) as zf:
                member = f"{stem}.params"
                if member not in zf.namelist():
                    raise ModelStoreError(f"{url} holds no {member} (it has {zf.namelist()[:3]})")
                zf.extract(member, tmp)
        except zipfile.BadZipFile:
            raise ModelStoreError(f"{url} is not a valid zip file; nothing was cached") from None
        got = sha1_of(os.path.join(tmp, member))
        if got != expected:
            raise ModelStoreError(f"the file downloaded from {url} has sha1 {got}, expected {expected}: "
                                  "it is corrupted or not the published one; nothing was cached")
        with atomic_path(path) as target:
            shutil.move(os.path.join(tmp, member), target)
    log.info("downloaded %s to %s", name, path)
    return path
