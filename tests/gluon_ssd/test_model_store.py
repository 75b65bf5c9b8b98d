"""Pretrained download path against an HTTP server on 127.0.0.1 started by the test."""
import hashlib
import http.server
import io
import os
import threading
import zipfile

import pytest

from gluon_ssd import model_store


class _Files(http.server.SimpleHTTPRequestHandler):
    payloads: dict = {}

    def do_GET(self):  # noqa: N802 (http.server's naming)
        body = self.payloads.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    _Files.payloads = {}


def _zip(member, data):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(member, data)
    return buf.getvalue()


@pytest.fixture
def fake_entry(monkeypatch):
    """A model-store entry whose sha1 matches a small payload."""
    payload = os.urandom(4096)
    sha1 = hashlib.sha1(payload).hexdigest()
    monkeypatch.setitem(model_store.MODEL_SHA1, "ssd_test_model", sha1)
    return "ssd_test_model", payload, sha1


def test_naming_is_gluoncvs(gcv):
    from gluoncv.model_zoo import model_store as theirs

    for name in model_store.MODEL_SHA1:
        store_name = name.replace("_lite", "")
        assert model_store.file_stem(name) == f"{store_name}-{theirs.short_hash(store_name)}"


def test_good_file_is_downloaded_verified_and_cached(server, fake_entry, tmp_path, monkeypatch):
    name, payload, sha1 = fake_entry
    stem = f"{name}-{sha1[:8]}"
    _Files.payloads = {f"/gluon/models/{stem}.zip": _zip(f"{stem}.params", payload)}
    monkeypatch.setenv("MXNET_GLUON_REPO", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("MXNET_HOME", str(tmp_path))
    path = model_store.get_model_file(name, progress=False)
    assert path == str(tmp_path / "models" / f"{stem}.params")
    assert open(path, "rb").read() == payload
    assert sorted(os.listdir(tmp_path / "models")) == [f"{stem}.params"]  # no temp leftovers
    # Cached: works with the server gone.
    _Files.payloads = {}
    assert model_store.get_model_file(name, progress=False) == path


def test_corrupted_download_is_rejected_and_nothing_cached(server, fake_entry, tmp_path, monkeypatch):
    name, payload, sha1 = fake_entry
    stem = f"{name}-{sha1[:8]}"
    damaged = payload[:-1] + bytes([payload[-1] ^ 1])  # the last byte changed (a constant could equal it)
    _Files.payloads = {f"/gluon/models/{stem}.zip": _zip(f"{stem}.params", damaged)}
    monkeypatch.setenv("MXNET_GLUON_REPO", f"http://127.0.0.1:{server.server_port}/")
    with pytest.raises(model_store.ModelStoreError, match="sha1"):
        model_store.get_model_file(name, root=str(tmp_path), progress=False)
    assert os.listdir(tmp_path) == []


def test_corrupted_cache_is_replaced(server, fake_entry, tmp_path, monkeypatch):
    name, payload, sha1 = fake_entry
    stem = f"{name}-{sha1[:8]}"
    (tmp_path / f"{stem}.params").write_bytes(b"half a file")
    _Files.payloads = {f"/gluon/models/{stem}.zip": _zip(f"{stem}.params", payload)}
    monkeypatch.setenv("MXNET_GLUON_REPO", f"http://127.0.0.1:{server.server_port}")
    path = model_store.get_model_file(name, root=str(tmp_path), progress=False)
    assert open(path, "rb").read() == payload


def test_server_down_gives_a_clear_error(fake_entry, tmp_path, monkeypatch):
    name, _, sha1 = fake_entry
    monkeypatch.setenv("MXNET_GLUON_REPO", "http://127.0.0.1:9/")  # discard port: nothing listens
    with pytest.raises(model_store.ModelStoreError) as err:
        model_store.get_model_file(name, root=str(tmp_path), progress=False)
    message = str(err.value)
    assert f"{name}-{sha1[:8]}.params" in message and str(tmp_path) in message
    assert os.listdir(tmp_path) == []


def test_model_without_published_weights():
    with pytest.raises(model_store.ModelStoreError, match="no pretrained weights"):
        model_store.get_model_file("ssd_512_resnet18_v1_voc")
