"""Weight-space ensembles of the shipped model and a fine-tuned one (WiSE-FT), scored as the folds.

Fine-tuning the shipped weights on MedSeg gains benchmark Dice and loses the other hospital's
series (docs/lesion-model.md). Wortsman et al. (CVPR 2022, "Robust fine-tuning of zero-shot
models") keep most of both by interpolating the weights of the starting and the fine-tuned
model: ``(1 - alpha) * start + alpha * fine_tuned``, one network, no extra inference cost. Here
the start is the shipped two-channel ONNX loaded as crossval loads it (batch norm folded, a
zero consolidation head) and the fine-tuned models are a campaign's; both keep the same frozen
batch-norm statistics, so every tensor interpolates. ``alpha`` is fixed before any measurement
(0.5, the paper's middle), not chosen on a test slice.

Run (train venv)::

    .venv-train/bin/python -m inference.training.wise --run-dir .train-runs/finetune-6k \
        --init inference/model_repository/lesion_unet_onnx/1/model.onnx --alpha 0.5 \
        --out-dir .train-runs/finetune-6k-wise50

For each model the campaign has finished: ``OUT/fold<k>.onnx`` scored on the fold's held-out
MedSeg slices (``fold<k>.json``), ``crossval.json`` once every fold is in, ``final.onnx``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import torch

from inference.training.campaign import report
from inference.training.crossval import load_onnx_init, measure_fold
from inference.training.data import load_medseg_native
from inference.training.nets import CHANNELS, UNet, export_onnx

logger = logging.getLogger(__name__)


def interpolate(init: Path, fine_tuned: Path, alpha: float, widths: tuple[int, ...]) -> UNet:
    """``(1 - alpha) * init + alpha * fine_tuned``, tensor by tensor (counters kept)."""
    start = UNet(widths, channels=CHANNELS)
    load_onnx_init(start, init)
    tuned = torch.load(fine_tuned, weights_only=True)["model"]
    mixed = {}
    for name, value in start.state_dict().items():
        if value.is_floating_point():
            mixed[name] = (1 - alpha) * value + alpha * tuned[name]
        else:
            mixed[name] = tuned[name]
    start.load_state_dict(mixed)
    return start.eval()


def run(args: argparse.Namespace) -> int:
    """Every finished model of ``--run-dir``, interpolated, exported and (folds) scored."""
    config = json.loads((args.run_dir / "config.json").read_text())
    if hashlib.sha256(args.init.read_bytes()).hexdigest() != config.get("init_sha256"):
        logger.error("%s is not the model %s was fine-tuned from", args.init, args.run_dir)
        return 2
    widths = tuple(config["widths"])
    args.out_dir.mkdir(parents=True, exist_ok=True)
    images, classes = load_medseg_native(args.data)
    blocks = np.array_split(np.arange(len(images)), config["folds"])  # the campaign's folds
    for k, held in enumerate(blocks):
        done = args.run_dir / f"fold{k}.json"
        if not done.exists():
            continue
        model = interpolate(args.init, args.run_dir / f"fold{k}.pt", args.alpha, widths)
        export_onnx(model, args.out_dir / f"fold{k}.onnx", 256)
        held_names = json.loads(done.read_text())["test_slices"]
        rows = measure_fold(args.out_dir / f"fold{k}.onnx", [images[i] for i in held],
                            [classes[i] for i in held])  # fmt: skip
        result = {"fold": k, "test_slices": held_names, "per_slice": rows}
        (args.out_dir / f"fold{k}.json").write_text(json.dumps(result, indent=1) + "\n")
        logger.info("fold %d: infection Dice %.3f", k,
                    sum(r["dice"] for r in rows["infection"]) / len(rows["infection"]))  # fmt: skip
    if (args.run_dir / "final.onnx").exists():
        model = interpolate(args.init, args.run_dir / "final.pt", args.alpha, widths)
        export_onnx(model, args.out_dir / "final.onnx", 256)
    if all((args.out_dir / f"fold{k}.json").exists() for k in range(config["folds"])):
        result = report(args.out_dir, {**config, "wise_alpha": args.alpha})
        (args.out_dir / "crossval.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


def main() -> None:
    """Parse the command line and run."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/ct-lesions"))
    parser.add_argument("--run-dir", type=Path, required=True, help="a campaign's folder")
    parser.add_argument("--init", type=Path, required=True, help="the campaign's --init ONNX")
    parser.add_argument("--alpha", type=float, default=0.5, help="weight of the fine-tuned model")
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    raise SystemExit(run(args))


if __name__ == "__main__":
    main()
