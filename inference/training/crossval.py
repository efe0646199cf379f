"""The three-class lesion model: k-fold cross-validation on MedSeg, then the shipped weights.

Run (needs the ``train`` extra, in its own venv; CPU, about 6 x ``--minutes``)::

    .venv-train/bin/python -m inference.training.crossval --data ../shared/data/ct-lesions \
        --init inference/model_repository/lesion_unet_onnx/1/model.onnx --minutes 5 \
        --out inference/model_repository/lesion_unet_onnx/1/model.onnx

Protocol, fixed before any fold was measured (docs/lesion-model.md, "Cross-validation"):

- Sources: COVID-19-CT-Seg 2-D slices (lesion and lung masks, no classes) and the 50 MedSeg
  slices (background / ground glass / consolidation, no lung mask): the benchmark's own style.
- Folds: the MedSeg slices sorted by number in ``FOLDS`` contiguous blocks. MedSeg gives no
  patient ids; neighbouring numbers are the closest thing to a patient grouping it has, so a
  block keeps them on one side. For each fold the model trains on every COVID-19-CT-Seg slice and
  the other MedSeg slices, and is measured on the fold's slices at each image's own size through
  the inference code (:func:`inference.segmentation.segment_images` on the exported ONNX), so
  every MedSeg slice is scored once by a model that never saw it.
- Recipe: start from ``--init`` (the two-channel model trained on COVID-19-CT-Seg only, which
  never saw MedSeg), add a consolidation channel, fine-tune for a fixed time with half of every
  batch drawn from MedSeg, keep the last weights: there is no early stopping, since anything to
  stop on would be a test slice. Batch norm keeps the initial model's statistics (folded into
  its convolutions by the ONNX export), only the affine parameters learn.
- Loss: lesion BCE + soft Dice on every slice; lung BCE only on slices with a lung mask;
  consolidation BCE only inside the true lesion of slices with classes (the channel is
  consolidation *given* lesion; ground glass is the rest of the lesion).
- The shipped model: the same recipe on all MedSeg slices. Its new-hospital figures (COVID-CT-MD,
  never seen) come from :mod:`inference.training.evaluate`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from inference.training.data import SliceSet, load_covid_seg, load_medseg, load_medseg_native
from inference.training.evaluate import overlap
from inference.training.nets import (
    CHANNELS,
    CONSOLIDATION_LOSS_WEIGHT,
    CONSOLIDATION_POS_WEIGHT,
    SEED,
    UNet,
    export_onnx,
    load_onnx_init,
    loss_3ch,
)
from inference.training.train_lesion import augment

logger = logging.getLogger(__name__)

FOLDS = 5
CLASS_NAMES = ("infection", "ground_glass", "consolidation")
LEARNING_RATE = 1e-3
MEDSEG_SHARE = 0.5
WARMUP = 0.05


def freeze_norm_statistics(model: nn.Module) -> None:
    """Batch norm keeps its (folded) statistics; only its affine parameters learn."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eval()


def mixed_batch(
    medseg: SliceSet, covid: SliceSet, size: int, rng: np.random.Generator
) -> tuple[torch.Tensor, ...]:
    """An augmented batch, ``MEDSEG_SHARE`` of it MedSeg: images and the targets of loss_3ch."""
    n_med = max(1, round(size * MEDSEG_SHARE))
    pick_m = rng.integers(0, len(medseg.names), size=n_med)
    pick_c = rng.integers(0, len(covid.names), size=size - n_med)
    images = np.concatenate([medseg.images[pick_m], covid.images[pick_c]])
    classes = np.concatenate([medseg.classes[pick_m], covid.classes[pick_c]])
    lung = np.concatenate([medseg.lung[pick_m], covid.lung[pick_c]])
    x, cls, lu = augment(images, classes, lung, rng)
    known = np.array([False] * n_med + [True] * (size - n_med))
    return (
        torch.from_numpy(x[:, None].astype(np.float32)),
        torch.from_numpy(cls.astype(np.int64)),
        torch.from_numpy(lu.astype(np.float32)),
        torch.from_numpy(known),
        torch.from_numpy(~known),
    )


def fit(
    init: Path | None,
    medseg: SliceSet,
    covid: SliceSet,
    minutes: float,
    batch: int,
    seed: int,
    widths: tuple[int, ...] = (8, 16, 32, 64),
    learning_rate: float = LEARNING_RATE,
) -> tuple[UNet, dict[str, Any]]:
    """The recipe: ``init``'s weights + a consolidation channel, fine-tuned for ``minutes``.

    ``init`` None: from scratch (random weights of ``widths``, batch norm learning its
    statistics), the same batches, loss and schedule.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = UNet(widths, channels=CHANNELS)
    model.train()
    if init is not None:
        load_onnx_init(model, init)
        freeze_norm_statistics(model)
    optimiser = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=1e-4)
    budget_s = minutes * 60
    started = time.monotonic()
    step, losses = 0, []
    while (elapsed := time.monotonic() - started) < budget_s:
        frac = elapsed / budget_s  # linear warm-up over the first 5 %, then cosine decay
        scale = min(1.0, frac / WARMUP) * 0.5 * (1 + math.cos(math.pi * frac))
        for group in optimiser.param_groups:
            group["lr"] = learning_rate * scale + 1e-5
        x, *targets = mixed_batch(medseg, covid, batch, rng)
        loss = loss_3ch(model(x), *targets)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss))
        step += 1
        if step % 50 == 0:
            logger.info("step %d %.0fs loss %.3f", step, elapsed, float(np.mean(losses[-50:])))
    model.eval()
    return model, {"steps": step, "presentations": step * batch, "seconds": round(elapsed)}


def _per_slice(preds: list[np.ndarray], truths: list[np.ndarray]) -> list[dict[str, float]]:
    return [overlap(p, t) for p, t in zip(preds, truths, strict=True) if t.any()]


def measure_fold(onnx_path: Path, images: list[np.ndarray], classes: list[np.ndarray]) -> dict:
    """Per-slice Dice/sensitivity/specificity (infection, ground glass, consolidation)."""
    from inference.segmentation import OnnxSegmenter, segment_images

    segmenter = OnnxSegmenter(onnx_path)
    out: dict[str, list[dict[str, float]]] = {name: [] for name in CLASS_NAMES}
    for image, truth in zip(images, classes, strict=True):
        seg = segment_images(image[None], segmenter)
        predicted = seg.classes[0]
        out["infection"] += _per_slice([predicted > 0], [truth > 0])
        out["ground_glass"] += _per_slice([predicted == 1], [truth == 1])
        out["consolidation"] += _per_slice([predicted == 2], [truth == 2])
    return out


def mean_rows(rows: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over per-slice rows ({} for none)."""
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]} if rows else {}


def without(medseg: SliceSet, held: np.ndarray) -> SliceSet:
    """The MedSeg slices a fold trains on: all but the ``held`` indices."""
    keep = np.setdiff1d(np.arange(len(medseg.names)), held)
    return SliceSet(medseg.images[keep], medseg.classes[keep], medseg.lung[keep], False,
                    tuple(medseg.names[i] for i in keep))  # fmt: skip


def load_sources(
    data: Path, max_slices: int = 0
) -> tuple[SliceSet, SliceSet, tuple[list[np.ndarray], list[np.ndarray]]]:
    """COVID-19-CT-Seg (the first ``max_slices`` for smoke runs), MedSeg at 256, MedSeg native."""
    covid = load_covid_seg(data, 256)
    if max_slices:
        keep = slice(0, max_slices)
        covid = SliceSet(covid.images[keep], covid.classes[keep], covid.lung[keep], True,
                         covid.names[keep])  # fmt: skip
    return covid, load_medseg(data, 256), load_medseg_native(data)


def main() -> None:
    """Cross-validate the recipe on MedSeg, then train the shipped model on everything."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/ct-lesions"))
    parser.add_argument("--init", type=Path, help="ONNX to fine-tune; omitted: from scratch")
    parser.add_argument("--widths", default="8,16,32,64", help="from scratch: channels/level")
    parser.add_argument("--lr", type=float, default=LEARNING_RATE)
    parser.add_argument("--no-final", action="store_true", help="folds only, no shipped model")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--folds", type=int, default=FOLDS)
    parser.add_argument("--only-folds", type=int, default=0, help="smoke runs: fewer folds")
    parser.add_argument("--max-slices", type=int, default=0, help="smoke runs: fewer CT-Seg")
    parser.add_argument("--report", type=Path, help="JSON report (default: next to --out)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    work = Path(tempfile.mkdtemp())
    init: Path | None = None
    if args.init is not None:
        init = work / "init.onnx"
        init.write_bytes(args.init.read_bytes())  # --out may be --init: keep the start weights
    widths = tuple(int(w) for w in args.widths.split(","))
    covid, medseg, (native_images, native_classes) = load_sources(args.data, args.max_slices)
    blocks = np.array_split(np.arange(len(medseg.names)), args.folds)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in CLASS_NAMES}
    folds = []
    baseline: dict[str, list[dict[str, float]]] = {name: [] for name in CLASS_NAMES}
    for k, held in enumerate(blocks[: args.only_folds or None]):
        if init is not None:  # the starting model on the same slices, through the same code
            before = measure_fold(
                init, [native_images[i] for i in held], [native_classes[i] for i in held]
            )
            for name, rows in before.items():
                baseline[name] += rows
        part = without(medseg, held)
        model, info = fit(init, part, covid, args.minutes, args.batch, SEED + k, widths, args.lr)
        path = work / f"fold{k}.onnx"
        export_onnx(model, path, 256)
        fold = measure_fold(
            path, [native_images[i] for i in held], [native_classes[i] for i in held]
        )
        for name, rows in fold.items():
            results[name] += rows
        folds.append({"fold": k, "test_slices": [medseg.names[i] for i in held], **info,
                      **{name: mean_rows(rows) for name, rows in fold.items()}})  # fmt: skip
        logger.info("fold %d: infection Dice %.3f, consolidation Dice %.3f", k,
                    folds[-1]["infection"].get("dice", float("nan")),
                    folds[-1]["consolidation"].get("dice", float("nan")))  # fmt: skip
    shipped: dict[str, Any] = {"skipped": "--no-final"}
    if not args.no_final:
        model, info = fit(init, medseg, covid, args.minutes, args.batch, SEED, widths, args.lr)
        export_onnx(model, args.out, 256)
        shipped = {**info, "parameters": sum(p.numel() for p in model.parameters())}
    report = {
        "protocol": "MedSeg k-fold (contiguous blocks by slice number), each slice scored once "
        "by a model that never saw it; masks at the image's own size; mean over slices with the "
        "class (Inf-Net's convention)",
        "folds": folds,
        "mean_over_slices": {name: mean_rows(rows) for name, rows in results.items()},
        "slices_with_class": {name: len(rows) for name, rows in results.items()},
        "init_model_same_slices": {name: mean_rows(rows) for name, rows in baseline.items()},
        "recipe": {
            "init": str(args.init),
            "minutes_per_model": args.minutes,
            "batch": args.batch,
            "medseg_share": MEDSEG_SHARE,
            "learning_rate": args.lr,
            "widths": list(widths),
            "seed": SEED,
            "folds": args.folds,
            "warmup": WARMUP,
            "consolidation_pos_weight": CONSOLIDATION_POS_WEIGHT,
            "consolidation_loss_weight": CONSOLIDATION_LOSS_WEIGHT,
            "covid_seg_slices": len(covid.names),
            "channels": CHANNELS,
        },  # fmt: skip
        "shipped": shipped,
    }
    report_path = args.report or args.out.parent.parent / "crossval.json"
    report_path.write_text(json.dumps(report, indent=1) + "\n")
    logger.info("cross-validated: %s", json.dumps(report["mean_over_slices"]))


if __name__ == "__main__":
    main()
