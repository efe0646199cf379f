"""Evaluate the exported ONNX lesion model on held-out real data (runs on the main venv).

::

    .venv/bin/python -m inference.training.evaluate --data ../shared/data \
        --out inference/model_repository/lesion_unet_onnx/evaluation.json

- MedSeg (50 slices, never used in training; a different source from the training slices):
  infection Dice, sensitivity, specificity, mean over slices (as Inf-Net reports them) and
  pooled over all pixels; the same per class (ground glass / consolidation), the class being
  the density rule of :mod:`inference.segmentation` applied to the 8-bit image.
- COVID-CT-MD P001: per-slice lesion burden vs the radiologists' slice labels (ROC AUC);
  normal001: lesion % of lung (should be near 0). Also the threshold model on the same series.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from inference.biomarkers import threshold_masks
from inference.segmentation import (
    MODEL_PATH,
    OnnxSegmenter,
    lesion_classes,
    segment_slices,
    segment_volume,
    unit_to_hu,
)
from inference.training.data import load_medseg
from inference.volume import load_series


def overlap(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Dice, sensitivity, specificity of boolean masks (empty truth and prediction: Dice 1)."""
    tp = float((pred & truth).sum())
    fp = float((pred & ~truth).sum())
    fn = float((~pred & truth).sum())
    tn = float((~pred & ~truth).sum())
    return {
        "dice": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
        "sensitivity": tp / (tp + fn) if tp + fn else 1.0,
        "specificity": tn / (tn + fp) if tn + fp else 1.0,
    }


def _summary(preds: np.ndarray, truths: np.ndarray) -> dict[str, Any]:
    per_slice = [overlap(p, t) for p, t in zip(preds, truths, strict=True) if t.any()]
    return {
        "mean_over_slices": {k: float(np.mean([s[k] for s in per_slice])) for k in per_slice[0]},
        "pooled": overlap(preds, truths),
        "slices_with_class": len(per_slice),
    }


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC (ties count half)."""
    pos, neg = scores[positive], scores[~positive]
    return float(np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])))


def evaluate_medseg(data_root: Path, segmenter: OnnxSegmenter, size: int) -> dict[str, Any]:
    """Held-out MedSeg metrics (images and masks at ``size``)."""
    medseg = load_medseg(data_root / "ct-lesions", size)
    lesion, _ = segment_slices(medseg.images, segmenter)
    classes = lesion_classes(lesion, unit_to_hu(medseg.images))
    return {
        "slices": len(medseg.names),
        "size": size,
        "infection": _summary(lesion, medseg.classes > 0),
        "ground_glass": _summary(classes == 1, medseg.classes == 1),
        "consolidation": _summary(classes == 2, medseg.classes == 2),
    }


def evaluate_series(data_root: Path, segmenter: OnnxSegmenter) -> dict[str, Any]:
    """P001 slice-level AUC and normal001 burden, learned vs threshold."""
    folder = data_root / "dicom" / "covid-ct-md"
    with (folder / "P001-slice-labels.csv").open() as f:
        infected = np.array([int(r["infected"]) for r in csv.DictReader(f)], dtype=bool)
    out: dict[str, Any] = {}
    for name in ("P001", "normal001"):
        volume = load_series(folder / name)
        started = time.perf_counter()
        seg = segment_volume(volume.hu, volume.spacing_mm, segmenter)
        seconds = time.perf_counter() - started
        t_lung, t_lesion = threshold_masks(volume.hu, volume.spacing_mm)
        entry: dict[str, Any] = {
            "shape_zyx": list(volume.hu.shape),
            "seconds_in_process": round(seconds, 2),
            "biomarkers": seg.biomarkers.as_dict(),
            "regional": seg.regional.as_dict(),
            "threshold_lesion_percent": 100 * float(t_lesion.sum()) / max(1, int(t_lung.sum())),
        }
        if name == "P001":
            # slice labels count from the highest z; our z ascends
            for method, lung, les in (
                ("learned", seg.lung, seg.lesion),
                ("threshold", t_lung, t_lesion),
            ):
                burden = les.sum(axis=(1, 2)) / np.maximum(lung.sum(axis=(1, 2)), 1)
                entry[f"slice_auc_{method}"] = auc(burden[::-1], infected)
            entry["infected_slices"] = int(infected.sum())
        out[name] = entry
    return out


def main() -> None:
    """Write the evaluation JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--model", type=Path, default=MODEL_PATH)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    segmenter = OnnxSegmenter(args.model)
    result = {
        "model": str(args.model.name),
        "medseg_heldout": evaluate_medseg(args.data, segmenter, 256),
        "covid_ct_md": evaluate_series(args.data, segmenter),
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
