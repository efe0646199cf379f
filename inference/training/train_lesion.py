"""Train the compact 2-D U-Net lesion/lung segmenter on CPU and export it to ONNX.

Run (needs the ``train`` extra, in its own venv)::

    .venv-train/bin/python -m inference.training.train_lesion --minutes 20 \
        --out inference/model_repository/lesion_unet_onnx/1/model.onnx

The network sees one 256x256 slice in [0, 1] (``inference.segmentation`` makes the same input
from HU or from 8-bit images) and returns logit maps: lesion (ground glass or consolidation),
lung and, for a three-channel model, consolidation given lesion. ``main`` trains the original
two-channel model on COVID-19-CT-Seg 2-D slices only; :mod:`inference.training.crossval`
trains the three-channel model on both sources with k-fold cross-validation on MedSeg, using
:func:`fit` below.
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

from inference.training.data import SliceSet, load_covid_seg, split_internal
from inference.training.nets import SEED, UNet, export_onnx

logger = logging.getLogger(__name__)


def augment(
    images: np.ndarray, lesion: np.ndarray, lung: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random crop-zoom, rot90/flip, gamma, contrast, brightness and noise, per slice.

    The intensity changes bridge the sources' preprocessing (CLAHE PNG in training, lung-window
    JPG and windowed HU at test and run time); rot90 covers MedSeg's transposed slices.
    """
    n, s, _ = images.shape
    out_i = np.empty_like(images)
    out_les = np.empty_like(lesion)
    out_lung = np.empty_like(lung)
    for k in range(n):
        img, les, lu = images[k], lesion[k], lung[k]
        crop = int(s * rng.uniform(0.6, 1.0))
        y0, x0 = rng.integers(0, s - crop + 1, size=2)
        idx = (np.arange(s) * crop / s).astype(int)
        ys, xs = y0 + idx, x0 + idx
        img, les, lu = img[np.ix_(ys, xs)], les[np.ix_(ys, xs)], lu[np.ix_(ys, xs)]
        r = int(rng.integers(4))
        img, les, lu = np.rot90(img, r), np.rot90(les, r), np.rot90(lu, r)
        if rng.random() < 0.5:
            img, les, lu = img[:, ::-1], les[:, ::-1], lu[:, ::-1]
        img = np.clip(img, 0, 1) ** rng.uniform(0.6, 1.6)
        img = (img - 0.5) * rng.uniform(0.75, 1.3) + 0.5 + rng.uniform(-0.1, 0.1)
        img = img + rng.normal(0, rng.uniform(0, 0.03), img.shape)
        out_i[k], out_les[k], out_lung[k] = np.clip(img, 0, 1), les, lu
    return out_i, out_les, out_lung


def loss_fn(logits: torch.Tensor, lesion: torch.Tensor, lung: torch.Tensor) -> torch.Tensor:
    """Lesion: BCE + soft Dice (lesions are sparse); lung: BCE."""
    les_logit, lung_logit = logits[:, 0], logits[:, 1]
    bce = F.binary_cross_entropy_with_logits(les_logit, lesion)
    p = torch.sigmoid(les_logit)
    dice = 1 - (2 * (p * lesion).sum() + 1) / (p.sum() + lesion.sum() + 1)
    return bce + dice + F.binary_cross_entropy_with_logits(lung_logit, lung)


def dice_score(model: nn.Module, data: SliceSet) -> tuple[float, float]:
    """Pooled lesion and lung Dice on ``data`` (threshold 0.5)."""
    model.eval()
    inter = [0.0, 0.0]
    total = [0.0, 0.0]
    with torch.no_grad():
        for s in range(0, len(data.names), 32):
            x = torch.from_numpy(data.images[s : s + 32, None])
            pred = (model(x) > 0).numpy()
            for c, truth in enumerate((data.classes[s : s + 32] > 0, data.lung[s : s + 32] > 0)):
                inter[c] += float((pred[:, c] & truth).sum())
                total[c] += float(pred[:, c].sum() + truth.sum())
    model.train()
    return 2 * inter[0] / max(total[0], 1), 2 * inter[1] / max(total[1], 1)


def main() -> None:
    """Train for a time budget, keep the best internal-validation lesion Dice, export ONNX."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/ct-lesions"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--max-slices", type=int, default=0, help="smoke runs: use fewer slices")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    data = load_covid_seg(args.data, args.size)
    train, val = split_internal(data)
    if args.max_slices:
        keep = slice(0, args.max_slices)
        train = SliceSet(
            train.images[keep], train.classes[keep], train.lung[keep], True, train.names[keep]
        )
    logger.info("train %d slices, internal val %d slices", len(train.names), len(val.names))
    model = UNet()
    params = sum(p.numel() for p in model.parameters())
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    budget_s = args.minutes * 60
    started = time.monotonic()
    best, best_state, step, history = -1.0, None, 0, []
    epoch_steps = max(1, len(train.names) // args.batch)
    while time.monotonic() - started < budget_s:
        order = rng.permutation(len(train.names))
        for b in range(epoch_steps):
            frac = min(1.0, (time.monotonic() - started) / budget_s)
            for g in optimiser.param_groups:  # cosine decay over the time budget
                g["lr"] = 3e-3 * 0.5 * (1 + math.cos(math.pi * frac)) + 1e-5
            pick = order[b * args.batch : (b + 1) * args.batch]
            x, les, lung = augment(train.images[pick], train.classes[pick], train.lung[pick], rng)
            logits = model(torch.from_numpy(x[:, None].astype(np.float32)))
            loss = loss_fn(
                logits,
                torch.from_numpy((les > 0).astype(np.float32)),
                torch.from_numpy((lung > 0).astype(np.float32)),
            )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            step += 1
            if time.monotonic() - started > budget_s:
                break
        val_lesion, val_lung = dice_score(model, val)
        elapsed = time.monotonic() - started
        history.append({"step": step, "s": round(elapsed), "val_lesion_dice": val_lesion,
                        "val_lung_dice": val_lung, "loss": float(loss)})  # fmt: skip
        logger.info("step %d %.0fs loss %.3f val dice lesion %.3f lung %.3f",
                    step, elapsed, float(loss), val_lesion, val_lung)  # fmt: skip
        if val_lesion > best:
            best = val_lesion
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
    if best_state is not None:
        model.load_state_dict(best_state)
    export_onnx(model, args.out, args.size)
    summary = {"parameters": params, "steps": step, "best_internal_val_lesion_dice": best,
               "train_slices": len(train.names), "val_slices": len(val.names),
               "seed": SEED, "minutes": args.minutes, "history": history}  # fmt: skip
    (args.out.parent.parent / "training.json").write_text(json.dumps(summary, indent=1) + "\n")
    logger.info("exported %s (%d parameters, best val lesion Dice %.3f)", args.out, params, best)


if __name__ == "__main__":
    main()
