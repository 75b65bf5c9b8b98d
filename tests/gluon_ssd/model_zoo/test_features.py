"""Model-zoo behaviour beyond plain parity: errors, anchors, reset_class, set_nms, export, big inputs,
pretrained download end to end."""
import hashlib
import http.server
import io
import threading
import zipfile

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

import gluon_ssd
from gluon_ssd import model_store
from gluon_ssd.nn.anchors import anchor_grid
from tests.helpers import build_reference, photo_batch, randomize

NAME = "ssd_300_mobilenet0.25_voc"  # the cheapest model: these tests are about behaviour


@pytest.fixture(scope="module")
def reference(gcv, photo_paths, tmp_path_factory):
    x = photo_batch(gcv, photo_paths, 300, 300)
    ref = randomize(build_reference(gcv, NAME), seed=3, probe=x)
    path = tmp_path_factory.mktemp("ref") / "ref.params"
    ref.save_parameters(str(path))
    return ref, str(path), x


def _equal(a, b):
    for u, v in zip(a, b):
        np.testing.assert_allclose(u.asnumpy(), v.asnumpy(), rtol=1e-5, atol=1e-5)


def test_file_of_another_model_is_refused_with_keys(gcv, reference, tmp_path):
    _, path, _ = reference
    with pytest.raises(ValueError) as err:
        gluon_ssd.get_model("ssd_512_mobilenet1.0_voc", pretrained=path)
    msg = str(err.value)
    assert "ssd_512_mobilenet1.0_voc" in msg and path in msg
    assert "features.mobilenet0_conv0_weight: (8, 3, 3, 3) vs (32, 3, 3, 3)" in msg and "more" in msg


def test_file_with_another_class_count_is_refused_with_shapes(reference):
    _, path, _ = reference
    with pytest.raises(ValueError) as err:
        gluon_ssd.get_model("ssd_300_mobilenet0.25_coco", pretrained=path)
    msg = str(err.value)
    assert "class_predictors.0.predictor.weight: (84, 128, 3, 3) vs (324, 128, 3, 3)" in msg
    assert "for 20 classes" in msg and "80 classes" in msg and path in msg


def test_not_a_parameter_file(tmp_path):
    bad = tmp_path / "notes.params"
    bad.write_text("hello")
    with pytest.raises(ValueError, match="not an MXNet parameter file"):
        gluon_ssd.get_model(NAME, pretrained=str(bad))
    with pytest.raises(FileNotFoundError, match="missing.params"):
        gluon_ssd.get_model(NAME, pretrained=str(tmp_path / "missing.params"))


def test_unknown_model_and_custom_without_classes():
    with pytest.raises(ValueError, match="unknown model 'ssd_300_vgg_voc'"):
        gluon_ssd.get_model("ssd_300_vgg_voc")
    with pytest.raises(ValueError, match="classes="):
        gluon_ssd.get_model("ssd_300_mobilenet0.25_custom", pretrained_base=False)


def test_stored_anchors_are_honored(gcv, reference, tmp_path):
    ref, path, x = reference
    arrays = mx.nd.load(path)
    key = "anchor_generators.1.anchors"
    edited = arrays[key].asnumpy()
    edited[..., 2::4] *= 1.5  # widen every anchor of layer 1
    arrays[key] = mx.nd.array(edited)
    edited_path = str(tmp_path / "edited.params")
    mx.nd.save(edited_path, arrays)
    theirs = build_reference(gcv, NAME)
    theirs.load_parameters(edited_path)
    ours = gluon_ssd.get_model(NAME, pretrained=edited_path)
    assert ours.anchor_generators[1].use_stored and not ours.anchor_generators[0].use_stored
    _equal(theirs(x), ours(x))
    with autograd.train_mode():
        assert not np.allclose(ref(x)[2].asnumpy(), ours(x)[2].asnumpy())


def test_reset_class_and_set_nms_match_gluoncv(gcv, reference):
    ref, path, x = reference
    theirs = build_reference(gcv, NAME)
    theirs.load_parameters(path)
    ours = gluon_ssd.get_model(NAME, pretrained=path)
    for net in (theirs, ours):
        net.reset_class(["dog", "person", "car"], reuse_weights=["dog", "person", "car"])
        net.set_nms(nms_thresh=0.3, nms_topk=100, post_nms=30)
    assert ours.classes == ("dog", "person", "car")
    out = ours(x)
    assert out[0].shape == (2, 30, 1)
    _equal(theirs(x), out)
    for net in (theirs, ours):
        net.reset_class(["person", "dog"], reuse_weights={"person": "person", 1: "dog"})
        net.set_nms(nms_thresh=2)  # outside (0, 1): no NMS, no cut
    out = ours(x)
    # No NMS and no cut: one detection per anchor and class. GluonCV's ssd_300_mobilenet0.25 has ratios
    # [1, 2, .5] on its first and last two maps (4 anchors a cell) and [1, 2, .5, 3, 1/3] on the middle three
    # (6): 19x19x4 + (10x10 + 5x5 + 3x3)x6 + (2x2 + 1x1)x4 = 1444 + 804 + 20 = 2268 anchors, two classes.
    assert out[0].shape[1] == 2 * 2268
    _equal(theirs(x), out)


def test_export_round_trip(reference, tmp_path):
    _, path, x = reference
    ours = gluon_ssd.get_model(NAME, pretrained=path)
    sym_file, params_file = gluon_ssd.export(ours, str(tmp_path / "exported"))
    loaded = mx.gluon.SymbolBlock.imports(sym_file, ["data"], params_file)
    _equal(ours(x), loaded(x))
    bigger = mx.nd.random.uniform(-2, 2, (1, 3, 416, 352))
    _equal(ours(bigger), loaded(bigger))


def test_input_beyond_gluoncv_anchor_allocation(gcv, reference):
    """GluonCV fails above its precomputed anchor grid (128 cells at step 8 here, ~2048 px at /16);
    our anchors come from the formula. Checked against gluoncv built with a larger allocation."""
    ref, path, _ = reference
    x = mx.nd.random.uniform(-2, 2, (1, 3, 2112, 2112), ctx=mx.cpu())
    with pytest.raises(mx.base.MXNetError):
        ref(x).asnumpy()
    big = gcv.model_zoo.get_model(NAME, pretrained_base=False, anchor_alloc_size=256)
    big.initialize()
    big(mx.nd.zeros((1, 3, 300, 300)))
    src = ref._collect_params_with_prefix()
    for key, p in big._collect_params_with_prefix().items():
        if not key.startswith("anchor_generators"):
            p.set_data(src[key].data())
    ours = gluon_ssd.get_model(NAME, pretrained=path)
    with autograd.train_mode():
        anchors = ours(x)[2].asnumpy()
    first = ours.anchor_generators[0]
    np.testing.assert_array_equal(anchors[0, : 132 * 132 * first.num_depth],
                                  anchor_grid(first._shapes, 8, 132, 132).reshape(-1, 4))
    _equal(big(x), ours(x))


def test_pretrained_true_downloads_from_the_model_store(reference, tmp_path, monkeypatch):
    _, path, x = reference
    payload = open(path, "rb").read()
    sha1 = hashlib.sha1(payload).hexdigest()
    monkeypatch.setitem(model_store.MODEL_SHA1, NAME, sha1)
    stem = f"{NAME}-{sha1[:8]}"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"{stem}.params", payload)
    body = buf.getvalue()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            ok = self.path == f"/gluon/models/{stem}.zip"
            self.send_response(200 if ok else 404)
            self.send_header("Content-Length", str(len(body) if ok else 0))
            self.end_headers()
            if ok:
                self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("MXNET_GLUON_REPO", f"http://127.0.0.1:{httpd.server_port}/")
        monkeypatch.setenv("MXNET_HOME", str(tmp_path))
        net = gluon_ssd.get_model(NAME, pretrained=True)
    finally:
        httpd.shutdown()
        httpd.server_close()
    _equal(gluon_ssd.get_model(NAME, pretrained=path)(x), net(x))
    assert (tmp_path / "models" / f"{stem}.params").is_file()


def test_pretrained_base_loads_the_backbone(gcv, tmp_path):
    """A classifier file written by mxnet's model zoo (the backbone store format) lands in the SSD."""
    from mxnet.gluon.model_zoo import vision

    clf = vision.get_model("mobilenet0.25")
    clf.initialize(mx.init.Normal(0.5))
    clf(mx.nd.zeros((1, 3, 224, 224)))
    path = tmp_path / "mobilenet0.25.params"
    clf.save_parameters(str(path))
    net = gluon_ssd.get_model(NAME, pretrained_base=str(path))
    ours = net._collect_params_with_prefix()
    np.testing.assert_array_equal(ours["features.mobilenet0_conv0_weight"].data().asnumpy(),
                                  clf.features[0].weight.data().asnumpy())
    out = net(mx.nd.zeros((1, 3, 300, 300)))
    assert out[0].shape == (1, 100, 1)
