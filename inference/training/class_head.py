"""A learned consolidation channel on the shipped, frozen lesion network.

Fine-tuning the whole network on MedSeg learns consolidation but loses the other hospital's
series (docs/lesion-model.md). This keeps every weight of the shipped network, so its lesion and
lung channels (and with them every HU-series figure) stay exactly what they are, and trains
only a small branch for the third channel, consolidation given lesion, which inference reads on
8-bit images (HU series keep the density rule: :mod:`inference.segmentation`).

Branch: the input slice and the network's last features (1 + widths[0] channels) -> 3x3 conv
to 8, ReLU, 3x3 conv to 8, ReLU, 1x1 conv to 1 (1,305 parameters for the shipped widths).
Loss: crossval's consolidation term (BCE inside the true lesions of MedSeg slices, positive
weight 1.7). Data: the MedSeg slices only (the only class labels), augmented as in training.
Protocol, fixed before any fold was measured: crossval's 5 MedSeg folds, 1,000 steps of 8
per model, AdamW at 3e-3, 5 % warm-up then cosine, the last weights; then the model on all 50.

Run (train venv; about 5 minutes per model on 2 quiet cores)::

    .venv-train/bin/python -m inference.training.class_head \
        --init inference/model_repository/lesion_unet_onnx/1/model.onnx \
        --out-dir .train-runs/class-head
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from inference.training.campaign import report
from inference.training.crossval import FOLDS, load_onnx_init, mean_rows, measure_fold, without
from inference.training.data import SliceSet, load_medseg, load_medseg_native
from inference.training.nets import CONSOLIDATION_POS_WEIGHT, SEED, UNet, export_onnx
from inference.training.train_lesion import augment

logger = logging.getLogger(__name__)

STEPS = 1000
BATCH = 8
LEARNING_RATE = 3e-3
WARMUP = 0.05
BRANCH_WIDTH = 8


class ClassHeadNet(nn.Module):
    """The frozen two-channel network plus a trained consolidation-given-lesion branch."""

    def __init__(self, base: UNet) -> None:
        super().__init__()
        self.base = base.eval()
        for parameter in self.base.parameters():
            parameter.requires_grad_(False)
        c_in = 1 + base.head.in_channels
        self.branch = nn.Sequential(
            nn.Conv2d(c_in, BRANCH_WIDTH, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(BRANCH_WIDTH, BRANCH_WIDTH, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(BRANCH_WIDTH, 1, 1),
        )

    def train(self, mode: bool = True) -> ClassHeadNet:
        """Only the branch ever trains; the base keeps its (folded) batch-norm statistics."""
        super().train(mode)
        self.base.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (n, 3, h, w): the base's lesion and lung, the branch's consolidation."""
        features = self.base.features(x)
        lesion_lung = self.base.head(features)
        return torch.cat([lesion_lung, self.branch(torch.cat([x, features], dim=1))], dim=1)


def fit_head(init: Path, medseg: SliceSet, seed: int, steps: int = STEPS) -> ClassHeadNet:
    """The branch trained on ``medseg`` on top of ``init``'s frozen weights."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    base = UNet(channels=2)
    load_onnx_init(base, init)
    model = ClassHeadNet(base).train()
    optimiser = torch.optim.AdamW(model.branch.parameters(), lr=LEARNING_RATE, weight_decay=1e-4)
    balance = torch.tensor(CONSOLIDATION_POS_WEIGHT)
    for step in range(steps):
        frac = step / steps
        scale = min(1.0, frac / WARMUP) * 0.5 * (1 + math.cos(math.pi * frac))
        for group in optimiser.param_groups:
            group["lr"] = LEARNING_RATE * scale + 1e-5
        pick = rng.integers(0, len(medseg.names), size=BATCH)
        x, classes, _ = augment(medseg.images[pick], medseg.classes[pick], medseg.lung[pick], rng)
        cls = torch.from_numpy(classes.astype(np.int64))
        inside = cls > 0
        if not bool(inside.any()):
            continue
        logits = model(torch.from_numpy(x[:, None].astype(np.float32)))[:, 2]
        loss = F.binary_cross_entropy_with_logits(
            logits[inside], (cls == 2).float()[inside], pos_weight=balance
        )
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % 200 == 199:
            logger.info("step %d/%d loss %.3f", step + 1, steps, float(loss))
    return model.eval()


def run(args: argparse.Namespace) -> int:
    """The folds (and the shipped network's density rule on the same slices), then all 50."""
    out: Path = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    medseg = load_medseg(args.data)
    images, classes = load_medseg_native(args.data)
    blocks = np.array_split(np.arange(len(medseg.names)), FOLDS)
    baseline: dict[str, list[dict[str, float]]] = {}
    for k, held in enumerate(blocks):
        held_images, held_classes = [images[i] for i in held], [classes[i] for i in held]
        for name, rows in measure_fold(args.init, held_images, held_classes).items():
            baseline.setdefault(name, []).extend(rows)
        started = time.monotonic()
        model = fit_head(args.init, without(medseg, held), SEED + k, args.steps)
        export_onnx(model, out / f"fold{k}.onnx", 256)
        rows = measure_fold(out / f"fold{k}.onnx", held_images, held_classes)
        result = {"fold": k, "test_slices": [medseg.names[i] for i in held], "per_slice": rows,
                  "seconds": round(time.monotonic() - started)}  # fmt: skip
        (out / f"fold{k}.json").write_text(json.dumps(result, indent=1) + "\n")
        logger.info("fold %d: %s", k, {n: mean_rows(r).get("dice") for n, r in rows.items()})
    config = {"folds": FOLDS, "steps": args.steps, "batch": BATCH, "lr": LEARNING_RATE,
              "branch_width": BRANCH_WIDTH, "init": str(args.init), "seed": SEED}  # fmt: skip
    cross = report(out, config)
    cross["protocol"] += "; only a consolidation branch trained, the shipped network frozen"
    cross["shipped_density_rule_same_slices"] = {n: mean_rows(r) for n, r in baseline.items()}
    (out / "crossval.json").write_text(json.dumps(cross, indent=1) + "\n")
    if not args.no_final:
        export_onnx(fit_head(args.init, medseg, SEED, args.steps), out / "final.onnx", 256)
    return 0


def main() -> None:
    """Parse the command line and run."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/ct-lesions"))
    parser.add_argument("--init", type=Path, required=True, help="the shipped two-channel ONNX")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--no-final", action="store_true", help="folds only")
    parser.add_argument("--steps", type=int, default=STEPS, help="per model (smoke runs: fewer)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    raise SystemExit(run(args))


if __name__ == "__main__":
    main()
