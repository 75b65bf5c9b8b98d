"""Learning curves of several training runs on one figure, from their ``{prefix}_metrics.jsonl``.

    python bench/plot_learning.py --out curves.png "MXNet fp32=runs/lmx/ssd_512_mobilenet1.0_custom" \\
        "twin fp32=runs/lf32/ssd_512_mobilenet1.0_custom"

Left: validation mAP per epoch; middle: the same against the run's cumulative training time (the epochs'
``seconds``: data loading and steps, validation excluded); right: the training loss per epoch. Prints each run's
last and best mAP and its training minutes.
"""
from __future__ import annotations

import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_epochs(prefix: str) -> list[dict]:
    """The epoch entries of ``{prefix}_metrics.jsonl`` (a run's last entry per epoch, resumes included)."""
    path = prefix + "_metrics.jsonl"
    try:
        with open(path) as f:
            entries = [json.loads(line) for line in f if line.strip()]
    except OSError as err:
        raise SystemExit(f"{path}: {err.strerror}; give LABEL=PREFIX with the --save-prefix of a training run "
                         f"and the model name, e.g. runs/x/ssd_512_mobilenet1.0_custom") from None
    by_epoch = {e["epoch"]: e for e in entries if e.get("kind") == "epoch"}
    if not by_epoch:
        raise SystemExit(f"{path} holds no finished epoch")
    return [by_epoch[k] for k in sorted(by_epoch)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="LABEL=PREFIX")
    parser.add_argument("--out", required=True, help="PNG file to write")
    args = parser.parse_args(argv)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for spec in args.runs:
        label, sep, prefix = spec.partition("=")
        if not sep:
            raise SystemExit(f"{spec!r}: expected LABEL=PREFIX")
        epochs = read_epochs(prefix)
        minutes, elapsed = [], 0.0
        for e in epochs:
            elapsed += e["seconds"] / 60
            minutes.append(elapsed)
        maps = [(e["epoch"], m, e["map"]) for e, m in zip(epochs, minutes) if "map" in e]
        if maps:
            axes[0].plot([x for x, _, _ in maps], [v for _, _, v in maps], marker="o", label=label)
            axes[1].plot([m for _, m, _ in maps], [v for _, _, v in maps], marker="o", label=label)
            print(f"{label}: last mAP {maps[-1][2]:.4f} (epoch {maps[-1][0]}), best {max(v for *_, v in maps):.4f}, "
                  f"{elapsed:.1f} training minutes over {len(epochs)} epochs")
        axes[2].plot([e["epoch"] for e in epochs], [e["loss"] for e in epochs], marker=".", label=label)
    axes[0].set(title="validation mAP", xlabel="epoch", ylim=(0, 1))
    axes[1].set(title="validation mAP", xlabel="training minutes (validation excluded)", ylim=(0, 1))
    axes[2].set(title="training loss (per image)", xlabel="epoch")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
