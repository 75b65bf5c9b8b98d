"""Detect objects in images, folders and videos with an SSD; draw, save and export the detections.

Examples::

    python demo_ssd.py --network ssd_512_mobilenet1.0_voc --images dog.jpg,street.jpg    # GluonCV's usage
    python demo_ssd.py --images dog.jpg 'photos/*.jpg' photos2/ --out-dir out
    python demo_ssd.py --network ssd_512_resnet50_v1_voc --images street.jpg --classes person,car --out-dir out
    python demo_ssd.py --network ssd_300_vgg16_atrous_custom --pretrained run/ssd_best.params \\
        --classes circle,square,triangle,cross,ring --data-shape 300 --images val/ --out-dir out
    python demo_ssd.py --video clip.mp4 --every 10 --out-dir out

--images takes GluonCV's comma-separated list (``a.jpg,b.jpg``) as well as one file, folder or quoted glob per
argument; an existing file whose name holds a comma is one file.

Outputs in --out-dir (default ``./{network}_demo``, named in one line; without --out-dir each image is also shown
in a matplotlib window where there is a display, as GluonCV's demo shows it, close the window to go on): one
annotated image per input image (same name and format, same size as the input), for a video the processed frames
as PNGs in ``<video name>_frames/frame_<index>.png``, and ``detections.jsonl`` with one line per image or frame::

    {"image": path, "width": W, "height": H, "annotated": output path,
     "detections": [{"class": name, "class_id": i, "score": s, "box": [x1, y1, x2, y2]}, ...]}

Boxes are in the original image's pixels, clipped to the image, sorted by score (:mod:`gluon_ssd.annotate`).

Exit status: 0 when at least one image or frame was processed (inputs that could not be read are
reported and skipped), 1 when none could be read, 2 for a usage error or a model that cannot be loaded.
"""
from __future__ import annotations

import os
import sys

from .. import predict
from ..specs import NMS_THRESH, NMS_TOPK
from .common import (
    ArgumentParser,
    UsageError,
    backend_options,
    check_at_least,
    contexts,
    load_model,
    parse_classes,
    resolve_backend,
    run_main,
    setup_logging,
)

PROG = "demo_ssd.py"
EXIT_NOTHING_READ = 1


def parse_args(argv=None):
    p = ArgumentParser(
        prog=PROG,
        description="Detect objects with an SSD on images, folders and videos; write annotated images "
                    "and detections.jsonl.",
        epilog="Exit status: 0 if at least one image/frame was processed, 1 if no input could be read, "
               "2 for usage or model-loading errors.")
    p.add_argument("--network", default="ssd_300_vgg16_atrous_coco",
                   help="model zoo name (default: %(default)s)")
    p.add_argument("--pretrained", default="True",
                   help="'True' for GluonCV's published weights (model store), a parameter file path "
                        "(GluonCV's or from training), or 'False' for random weights (smoke tests)")
    p.add_argument("--images", nargs="+", default=[], metavar="PATH",
                   help="image files, folders (their images, not recursive) and quoted glob patterns, one per "
                        "argument or comma-separated as GluonCV's (a.jpg,b.jpg)")
    p.add_argument("--video", nargs="+", default=[], metavar="VIDEO", help="video files")
    p.add_argument("--every", type=int, default=1, metavar="N",
                   help="process every N-th video frame, starting at frame 0 (default: %(default)s)")
    p.add_argument("--out-dir", default=None,
                   help="folder for annotated images and detections.jsonl (default: ./{network}_demo; without "
                        "--out-dir each image is also shown in a window where there is a display, as GluonCV's "
                        "demo does)")
    p.add_argument("--thresh", type=float, default=0.5,
                   help="keep detections with a score at least this (default: %(default)s)")
    p.add_argument("--nms-thresh", type=float, default=NMS_THRESH,
                   help="per-class NMS IoU threshold (default: %(default)s)")
    p.add_argument("--topk", type=int, default=NMS_TOPK,
                   help="candidates kept before NMS, -1 for all (default: %(default)s)")
    p.add_argument("--classes", default=None,
                   help="comma-separated class names, or a file with one per line: the classes a "
                        "*_custom network was trained with (in order), or a subset of a VOC/COCO network's "
                        "classes to detect only those")
    p.add_argument("--short", type=int, default=None,
                   help="resize the short side to this, keeping the aspect ratio (default 512)")
    p.add_argument("--max-size", type=int, default=None,
                   help="...unless the long side would exceed this (default 1024)")
    p.add_argument("--data-shape", type=int, default=None, metavar="S",
                   help="instead: resize to SxS, ignoring the aspect ratio (the evaluation preprocessing)")
    p.add_argument("--batch-size", type=int, default=8,
                   help="images per network call; only images of the same input shape share a batch "
                        "(default: %(default)s)")
    p.add_argument("--gpus", default="", help="GPU ids, e.g. '0' or '0,1'; empty for CPU (default)")
    p.add_argument("--backend", default=None,
                   help="inference backend: mxnet, torch (the PyTorch twin), onnxruntime or openvino (the twin's "
                        "graph in that runtime, CPU); default: mxnet where MXNet is installed, else torch")
    p.add_argument("--device", default="cpu",
                   help="--backend torch: cpu or cuda[:N] (MXNet uses --gpus) (default: %(default)s)")
    p.add_argument("--deploy", action="store_true",
                   help="run an exported model (--model-prefix), float32 or int8 (gluon_ssd.export, eval_ssd.py "
                        "--calibration); its classes come from PREFIX-meta.json or --classes")
    p.add_argument("--model-prefix", default=None, help="prefix of the exported model for --deploy")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "tf32", "fp16", "bf16", "int8"),
                   help="network precision: torch all of these; onnxruntime fp32, int8; openvino fp32, bf16, "
                        "int8 (default: %(default)s)")
    p.add_argument("--show", action="store_true",
                   help="also show each annotated image (and video frame) in an OpenCV window")
    p.add_argument("-v", "--verbose", action="store_true", help="log library messages at INFO level")
    return p.parse_args(argv)


def check_args(args):
    resolve_backend(args, mxnet_only=("deploy",))
    if args.data_shape is not None and (args.short is not None or args.max_size is not None):
        raise UsageError("--data-shape (fixed SxS resize) and --short/--max-size (aspect-preserving "
                         "resize) exclude each other; give one of them")
    check_at_least(args, 1, "every", "batch_size", "short", "max_size", "data_shape")
    if not 0.0 <= args.thresh <= 1.0:
        raise UsageError(f"--thresh must be in [0, 1], got {args.thresh}")
    if args.deploy and not args.model_prefix:
        raise UsageError("--deploy needs --model-prefix PREFIX (PREFIX-symbol.json and PREFIX-0000.params)")
    if args.deploy and args.backend != "mxnet":
        raise UsageError("--deploy runs an MXNet export; for the twin's int8 graph use --backend torch "
                         "--pretrained MODEL-int8.onnx")
    if not args.images and not args.video:
        raise UsageError("nothing to do: give --images and/or --video")


def load_detector(args, classes, ctx):
    """The detector of --network/--pretrained on --backend, or the export of --deploy."""
    options = backend_options(args.backend, args.device, args.dtype, "--gpus")
    if args.deploy:
        try:
            return predict.load_deployed_detector(args.model_prefix, classes, ctx)
        except (ValueError, FileNotFoundError) as err:
            raise UsageError(f"--deploy --model-prefix {args.model_prefix}: {err}") from None
    hint = f" (--classes gives {len(classes)} classes: are they the classes the file was trained with?)" \
        if classes else ""
    return load_model(args.backend, args.network, mismatch_hint=hint,
                      pretrained=predict.parse_pretrained(args.pretrained), classes=classes, ctx=ctx,
                      nms_thresh=args.nms_thresh, nms_topk=args.topk, **options)


def summary_line(name, rec, limit=5):
    dets = rec["detections"]
    words = ", ".join(f"{d['class']} {d['score']:.2f}" for d in dets[:limit])
    more = f", +{len(dets) - limit} more" if len(dets) > limit else ""
    noun = "detection" if len(dets) == 1 else "detections"
    return f"{name}: {len(dets)} {noun}" + (f" ({words}{more})" if dets else "")


def has_display() -> bool:
    """Whether windows can open: on Linux an X11 or Wayland display is named (macOS and Windows always have one)."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def interactive_matplotlib() -> bool:
    """Whether matplotlib's backend opens windows (not Agg and the other file backends, e.g. MPLBACKEND=Agg)."""
    import matplotlib
    from matplotlib import pyplot  # noqa: F401  (resolves matplotlib's automatic backend choice)

    try:
        from matplotlib.backends import BackendFilter, backend_registry

        interactive = backend_registry.list_builtin(BackendFilter.INTERACTIVE)
    except ImportError:  # matplotlib < 3.9
        from matplotlib import rcsetup

        interactive = rcsetup.interactive_bk
    return matplotlib.get_backend().lower() in {name.lower() for name in interactive}


class Shower:
    """Shows the annotated images: ``--show`` in an OpenCV window (a video plays in it), or without --out-dir
    (``gluoncv=True``) GluonCV's way, a matplotlib window per image that the run waits on (``plt.show()``).

    Without a display (or with a matplotlib backend that draws to files only) it is off: with a warning for
    --show, silently for GluonCV's way (the images are written into the folder the demo named).
    """

    def __init__(self, enabled, gluoncv=False):
        self.mode = "opencv" if enabled else ("matplotlib" if gluoncv else None)
        if self.mode is not None and not has_display():
            if self.mode == "opencv":
                self._off("--show needs a display (DISPLAY is not set); the annotated images are only saved")
            self.mode = None
        if self.mode == "matplotlib" and not interactive_matplotlib():
            self.mode = None

    @property
    def enabled(self) -> bool:
        return self.mode is not None

    def _off(self, why):
        from tqdm import tqdm

        tqdm.write(f"warning: {why}", file=sys.stderr)
        self.mode = None

    def __call__(self, rgb, is_frame):
        if self.mode == "opencv":
            self._opencv(rgb, 1 if is_frame else 0)
        elif self.mode == "matplotlib":
            self._matplotlib(rgb, is_frame)

    def _opencv(self, rgb, wait_ms):
        import cv2

        try:
            cv2.imshow("demo_ssd", rgb[:, :, ::-1])
            cv2.waitKey(wait_ms)
        except cv2.error as err:
            self._off(f"--show: cannot open a window ({str(err).strip().splitlines()[-1]}); the annotated images "
                      "are only saved")

    def _matplotlib(self, rgb, is_frame):
        from matplotlib import pyplot as plt

        from gluon_ssd.utils.viz import plot_image  # imports MXNet (gluon_ssd.utils): only to show an image

        try:
            ax = plot_image(rgb)
            if is_frame:  # a video's frames pass by instead of each waiting for its window to close
                plt.show(block=False)
                plt.pause(0.001)
            else:
                plt.show()
            plt.close(ax.figure)
        except Exception as err:  # GUI toolkits raise their own types (TclError, RuntimeError, ...)
            self._off(f"cannot show the image in a matplotlib window ({type(err).__name__}: {err}); the annotated "
                      "images are only saved")


def default_out_dir(args) -> str:
    """``./{network}_demo`` (for --deploy the export's name): where the outputs go without --out-dir."""
    name = os.path.basename(os.path.normpath(args.model_prefix)) if args.deploy else args.network
    return os.path.join(os.curdir, f"{name}_demo")


def run(args) -> int:
    from tqdm import tqdm

    from gluon_ssd.annotate import annotate, expand_images, split_comma_lists  # loads MXNet: not for --help

    setup_logging(verbose=args.verbose)
    check_args(args)
    classes = parse_classes(args.classes)
    preprocess = predict.Preprocessor(short=args.short or 512, max_size=args.max_size or 1024,
                                      data_shape=args.data_shape)
    images = expand_images(split_comma_lists(args.images))
    ctx = contexts("--gpus", args.gpus, cpu_hint="leave --gpus out to run on the CPU")
    detector = load_detector(args, classes, ctx)
    fixed = getattr(detector, "data_shape", None)  # a graph quantized at one input size (int8 ONNX/OpenVINO)
    if fixed and (preprocess.data_shape is None or tuple(preprocess.data_shape[::-1]) != tuple(fixed)):
        given = f"--data-shape {args.data_shape}" if args.data_shape else "aspect-preserving resizes"
        again = f" (or quantize at {args.data_shape})" if args.data_shape else ""
        raise UsageError(f"{args.pretrained} is an int8 graph of {fixed[0]}x{fixed[1]} inputs, got {given}: pass "
                         f"--data-shape {fixed[1]}{again}")
    out_dir = args.out_dir or default_out_dir(args)
    show = Shower(args.show, gluoncv=args.out_dir is None)
    if args.out_dir is None:
        shown = "; each image is shown too (close its window to go on)" if show.mode == "matplotlib" else ""
        print(f"no --out-dir: writing the annotated images and detections.jsonl to {out_dir}{shown}")

    def on_image(rec, drawn, is_frame):
        tqdm.write(summary_line(rec["image"], rec))
        show(drawn, is_frame)

    try:
        done = annotate(detector, images, args.video, out_dir, preprocess, batch_size=args.batch_size,
                        thresh=args.thresh, every=args.every, on_image=on_image)
    except OSError as err:
        which = "--out-dir" if args.out_dir else "the default --out-dir"
        raise UsageError(f"cannot write into {which} {out_dir}: {err}") from None
    if done.unreadable:
        print(f"{len(done.unreadable)} input(s) could not be read: {', '.join(done.unreadable)}", file=sys.stderr)
    if done.images + done.frames == 0:
        print(f"{PROG}: error: no image or frame could be read, nothing was detected (outputs in {out_dir})",
              file=sys.stderr)
        return EXIT_NOTHING_READ
    parts = [f"{n} annotated {what}" for n, what in ((done.images, "image(s)"), (done.frames, "video frame(s)")) if n]
    print(f"{done.detections} detection(s); wrote {' and '.join(parts)} and {done.jsonl_path} to {out_dir}")
    return 0


def main(argv=None) -> int:
    return run_main(PROG, parse_args, run, argv)


if __name__ == "__main__":
    import sys

    sys.exit(main())
