"""python -m convert: gluon_ssd/GluonCV parameters <-> PyTorch twin, verification, exports."""
from __future__ import annotations

import argparse
import os
import tempfile
import zipfile

import numpy as np

import gluon_ssd
from gluon_ssd.cli.common import ArgumentParser, UsageError, parse_classes, run_main, setup_logging
from gluon_ssd.predict import Preprocessor
from gluon_ssd.specs import resolve_model_name

from .nn.ssd import SSD, get_torch_model, spec_from_dict
from .runtime.export import export_onnx, export_torchscript
from .runtime.inference import resolve_device
from .runtime.onnxruntime import graph_meta, require, write_onnx_meta
from .runtime.openvino import quantize_openvino, require_nncf, write_ir
from .runtime.quantization import quantize_twin
from .runtime.verify import format_table, photo_batch, verify
from .weights.mapping import convert_gluon_file, read_torch_file, save_torch_model, write_gluon_file

PROG = "python -m convert"

EXAMPLES = """examples:
  python -m convert --network ssd_512_resnet50_v1_voc --params ssd_512_resnet50_v1_voc.params \\
      --out ssd_512_resnet50_v1_voc.pth --verify --torchscript r50.pt --onnx r50.onnx
  python -m convert --network ssd_300_vgg16_atrous_custom --classes cat,dog --params mine.params --out mine.pth
  python -m convert --reverse --params mine.pth --out mine.params
  python -m convert --network ssd_512_mobilenet1.0_voc --params m.params --quantize int8 --calib-images val/ \
      --out m-int8.onnx      # int8 twin (ONNX Runtime), calibrated on 8 images of val/ at 512x512
  python -m convert --network ssd_512_mobilenet1.0_voc --params m.params --openvino m-ir/   # OpenVINO IR, fp32
  python -m convert --network ssd_512_mobilenet1.0_voc --params m.params --openvino m-int8/ --quantize int8 \
      --calib-images val/    # OpenVINO int8 (NNCF), same calibration as ONNX Runtime's
"""


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog=PROG, description=__doc__, epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", help="zoo model name, e.g. ssd_512_resnet50_v1_voc (with --reverse: "
                        "default the one saved in the .pth)")
    parser.add_argument("--params", required=True, help="input: an MXNet .params file (GluonCV, either key "
                        "format, or gluon_ssd) or a gluon_ssd training checkpoint; with --reverse a .pth written "
                        "by this tool or a state dict")
    parser.add_argument("--out", help="output: .pth (default) or, with --reverse, .params")
    parser.add_argument("--classes", help="comma-separated class names or a file with one per line (required "
                        "for *_custom models; default the dataset's)")
    parser.add_argument("--reverse", action="store_true", help="PyTorch -> gluon_ssd parameters")
    parser.add_argument("--verify", action="store_true", help="compare the converted model with gluon_ssd "
                        "on real photos and print a table of differences (exit 1 on failure)")
    parser.add_argument("--device", default="cpu", help="where --verify runs the PyTorch twin: cpu or cuda[:N] "
                        "(float32; raw outputs held to 1e-3 on CUDA, 1e-4 on CPU)")
    parser.add_argument("--images", help="comma-separated photos for --verify (required with --verify; two or "
                        "more also compare the training-mode outputs)")
    parser.add_argument("--torchscript", metavar="OUT.pt", help="also write a scripted TorchScript model")
    parser.add_argument("--onnx", metavar="OUT.onnx", help="also write an ONNX model (opset 17; needs onnx)")
    parser.add_argument("--openvino", metavar="DIR", help="also write OpenVINO IR: DIR/model.xml, .bin and .json "
                        "(network, classes, input size, NMS, dtype); fp32, or int8 (NNCF) with --quantize int8; "
                        "needs openvino (and nncf for int8)")
    parser.add_argument("--quantize", choices=("int8",), help="write the twin's network as a calibrated int8 "
                        "ONNX Runtime graph (to --out, default PARAMS-int8.onnx; with --openvino only to --out "
                        "if given) and, with --openvino, the int8 OpenVINO IR; needs --calib-images")
    parser.add_argument("--calib-images", metavar="DIR", help="--quantize: a folder (or comma-separated files) of "
                        "calibration photos, resized like evaluation (fixed --data-shape, ImageNet mean/std)")
    parser.add_argument("--num-calib-images", type=int, default=8, help="--quantize: photos used (default 8)")
    parser.add_argument("--calib-mode", default="naive", choices=("naive", "entropy"),
                        help="--quantize: min/max (naive) or entropy ranges (default naive)")
    parser.add_argument("--data-shape", type=int, help="--quantize: input size of the int8 graph (default the "
                        "model's base size)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    return parser


def _check_network(name):
    if name is None:
        raise UsageError("--network is required: the zoo name of the model, e.g. ssd_512_resnet50_v1_voc")
    if not name.startswith("ssd_"):
        raise UsageError(f"--network {name!r} is not a zoo model: give its zoo name, e.g. ssd_512_resnet50_v1_voc "
                         f"(gluon_ssd.list_models())")
    try:
        resolve_model_name(name, int8=False)
    except ValueError as err:  # names close ones
        raise UsageError(f"--network {name!r} is not a zoo model: {err}") from None


def _forward(args) -> int:
    _check_network(args.network)
    if args.quantize:
        return _quantize(args)
    if not (args.out or args.verify or args.torchscript or args.onnx or args.openvino):
        raise UsageError("nothing to do: pass --out OUT.pth and/or --verify, --torchscript, --onnx, --openvino")
    if not os.path.isfile(args.params):
        raise UsageError(f"--params {args.params}: no such file")
    classes = parse_classes(args.classes)
    if args.verify:
        from gluon_ssd._mxnet import HAVE_MXNET, missing_message  # loads MXNet: only --verify needs it

        if not HAVE_MXNET:  # before any work: the comparison is against gluon_ssd's MXNet network
            raise UsageError(missing_message("--verify (a comparison with the gluon_ssd MXNet model)")
                             + "; without --verify the conversion itself needs no MXNet")
        try:
            resolve_device(args.device)
        except (RuntimeError, ValueError) as err:
            raise UsageError(f"--device {args.device}: {err}") from None
    if args.network.endswith("_custom") and classes is None:
        raise UsageError(f"{args.network} is a custom model: pass its class names with --classes a,b,c")
    model, ignored = convert_gluon_file(args.network, args.params, classes=classes)
    if args.out:
        save_torch_model(model, args.out, ignored, source=args.params)
        print(f"wrote {args.out}: {args.network}, {model.num_classes} classes, "
              f"{sum(v.numel() for v in model.state_dict().values()):,} values")
    status = 0
    if args.verify:
        status = _verify(model, args)
    if args.torchscript:
        print(f"wrote {export_torchscript(model, args.torchscript)} (TorchScript)")
    if args.onnx:
        export_onnx(model, args.onnx)
        write_onnx_meta(args.onnx, graph_meta(model))
        print(f"wrote {args.onnx} (ONNX opset 17)")
    if args.openvino:
        _write_openvino(model, args.openvino)
    return status


def _write_openvino(model, folder, calib=None, calib_mode="naive") -> None:
    """The fp32 IR of the twin's detection graph in ``folder`` or, given calibration images, its NNCF int8."""
    require("openvino", "--openvino")
    if calib is not None:
        require_nncf()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "detect.onnx")
        export_onnx(model, path)
        write_onnx_meta(path, graph_meta(model))
        if calib is None:
            xml = write_ir(path, graph_meta(model), folder)
        else:
            quantized, meta = quantize_openvino(model, path, [calib], calib_mode)
            xml = write_ir(quantized, meta, folder)
    print(f"wrote {xml} (OpenVINO IR {'int8' if calib is not None else 'fp32'}, with {os.path.splitext(xml)[0]}.json); "
          f"run it with --backend openvino --pretrained {xml}")


def _verify(model, args) -> int:
    photos = [p.strip() for p in args.images.split(",") if p.strip()] if args.images else []
    if not photos:
        raise UsageError("--verify needs photos to compare on: pass --images a.jpg,b.jpg (two or more also "
                         "compare the training-mode outputs)")
    missing = [p for p in photos if not os.path.isfile(p)]
    if missing:
        raise UsageError(f"--images: no such file: {', '.join(missing)}")
    with tempfile.TemporaryDirectory() as folder:
        params = args.params
        if zipfile.is_zipfile(params):  # a training checkpoint: gluon_ssd loads its network weights
            from gluon_ssd.params import atomic_save_ndarrays  # needs MXNet, as --verify does
            from gluon_ssd.train.checkpoint import load_checkpoint  # needs MXNet, as --verify does

            params = os.path.join(folder, "checkpoint.params")
            atomic_save_ndarrays(params, load_checkpoint(args.params).params)
        net = gluon_ssd.get_model(args.network, pretrained=params, classes=list(model.classes))
    size = model.spec.base_size
    x = photo_batch(photos, size, size)
    # Training mode (BatchNorm on batch statistics) needs a batch of two or more.
    checks = verify(model, net, x, train=len(photos) > 1, device=args.device)
    print(format_table(checks, f"verify {args.network} on {len(photos)} photo(s) at {size}x{size} "
                               f"(PyTorch twin on {args.device} vs gluon_ssd; train_* in float64)"))
    if len(photos) < 2:
        print("note: training mode not compared (BatchNorm batch statistics need 2+ photos)")
    failed = [c.name for c in checks if not c.passed]
    print("verification " + ("FAILED: " + ", ".join(failed) if failed else "passed"))
    return 1 if failed else 0


def _calibration_photos(spec) -> list[str]:
    from gluon_ssd.data.custom import IMAGE_EXTS  # loads MXNet where installed: only --quantize reads photos

    if spec is None:
        raise UsageError("--quantize int8 needs --calib-images DIR (photos like those the model will see)")
    if os.path.isdir(spec):
        photos = sorted(os.path.join(spec, n) for n in os.listdir(spec) if n.lower().endswith(IMAGE_EXTS))
    else:
        photos = [p.strip() for p in spec.split(",") if p.strip()]
    missing = [p for p in photos if not os.path.isfile(p)]
    if missing:
        raise UsageError(f"--calib-images: no such file: {', '.join(missing[:3])}")
    if not photos:
        raise UsageError(f"--calib-images {spec}: no images found ({', '.join(IMAGE_EXTS)})")
    return photos


def _quantize(args) -> int:
    from gluon_ssd.data.custom import BadImageError, read_image  # loads MXNet where installed: only --quantize

    if args.num_calib_images < 1:
        raise UsageError(f"--num-calib-images must be at least 1, got {args.num_calib_images}")
    if not os.path.isfile(args.params):
        raise UsageError(f"--params {args.params}: no such file")
    classes = parse_classes(args.classes)
    if args.network.endswith("_custom") and classes is None:
        raise UsageError(f"{args.network} is a custom model: pass its class names with --classes a,b,c")
    photos = _calibration_photos(args.calib_images)[:args.num_calib_images]
    model, _ = convert_gluon_file(args.network, args.params, classes=classes)
    size = args.data_shape or model.spec.base_size
    preprocess = Preprocessor(data_shape=size)
    batch = []
    for path in photos:
        try:
            batch.append(preprocess(read_image(path)))
        except BadImageError as err:
            raise UsageError(f"--calib-images: {err}") from None
    if args.openvino:
        _write_openvino(model, args.openvino, np.stack(batch), args.calib_mode)
        if not args.out:
            return 0
    out = args.out or os.path.splitext(args.params)[0] + "-int8.onnx"
    if not out.endswith(".onnx"):
        raise UsageError(f"--quantize writes an ONNX file: --out {out} should end in .onnx")
    quantize_twin(model, [np.stack(batch)], out, calib_mode=args.calib_mode)
    print(f"wrote {out}: {args.network} int8 (ONNX Runtime, {args.calib_mode} calibration on {len(batch)} images "
          f"at {size}x{size}); run it with --backend torch --pretrained {out}")
    return 0


def _reverse(args) -> int:
    if not args.out:
        raise UsageError("--reverse needs --out OUT.params")
    payload = read_torch_file(args.params)
    network = args.network or payload.get("network")
    classes = parse_classes(args.classes) or payload.get("classes")
    if args.network and payload.get("network") and args.network != payload["network"]:
        raise UsageError(f"--network {args.network} but {args.params} holds {payload['network']}: drop --network "
                         "or pass the right file")
    if network is None:
        raise UsageError(f"{args.params} is a bare state dict: pass --network (and --classes for custom models)")
    _check_network(network)
    if "spec" in payload:
        model = SSD(spec_from_dict(payload["spec"]), classes, name=network)
    else:
        if network.endswith("_custom") and classes is None:
            raise UsageError(f"{network} is a custom model: pass its class names with --classes a,b,c")
        model = get_torch_model(network, classes=classes)
    write_gluon_file(model, payload["state_dict"], args.out, payload.get("mxnet_ignored"))
    print(f"wrote {args.out}: {network}, {model.num_classes} classes (gluon_ssd/GluonCV structural keys)")
    if args.verify or args.torchscript or args.onnx:
        print("note: --verify/--torchscript/--onnx apply to the forward conversion; ignored with --reverse")
    return 0


def run(args) -> int:
    setup_logging(verbose=args.verbose)
    try:
        return _reverse(args) if args.reverse else _forward(args)
    except (ValueError, FileNotFoundError, ImportError) as err:  # the file or the model does not fit
        raise UsageError(str(err)) from None


def main(argv=None) -> int:
    """``python -m convert``: 0 success, 1 --verify failed, 2 bad input (gluon_ssd.cli.common), 130 interrupted."""
    return run_main(PROG, build_parser().parse_args, run, argv)
