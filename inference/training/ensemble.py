"""An output ensemble of exported lesion networks as one ONNX file: the served large variant.

The shipped compact network (COVID-19-CT-Seg only) reads a new hospital's series well and
MedSeg's style poorly; a network trained with MedSeg does the reverse. Their weights cannot be
averaged (no shared basin: WiSE-FT, docs/lesion-model.md), their outputs can. The ensemble's
logits are the members' mean on the lesion and lung channels (logit averaging: a geometric mean
of the odds) and, on the consolidation-given-lesion channel, the mean over the members that
have one. Equal weights, chosen before any ensemble was scored (the rule is in the doc).

One ONNX graph, same input ``SLICES`` (n, 1, h, w) and output ``LOGITS`` (n, 3, h, w) as every
lesion network, with free height and width: the study model (``lesion_unet``'s code, Triton
or ``--local``) runs it on lung crops unchanged. The build checks the file against the members
run one by one on onnxruntime, on whole slices and on a crop, before writing it.

Run (needs the ``train`` extra)::

    .venv-train/bin/python -m inference.training.ensemble \
        --member inference/model_repository/lesion_unet_onnx/1/model.onnx \
        --member inference/model_repository/lesion_unet_large/members/medseg_scratch_fold0.onnx \
        --out inference/model_repository/lesion_unet_large/1/network.onnx \
        --held-out .train-runs/scratch-16k/fold0.json --data ../shared/data

``--held-out`` (a campaign fold's JSON: the MedSeg slices no member was trained on) also scores
the written file through the inference code, as the campaign scores its folds (benchmark
protocol: mean per-slice Dice at each slice's own size), and on the COVID-CT-MD series (the new
hospital: P001 slice AUC, normal001 lesion %), into ``evaluation.json`` next to the version
folder.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

from inference.segmentation import OnnxSegmenter
from inference.training.crossval import CLASS_NAMES, mean_rows, measure_fold
from inference.training.data import load_medseg_native, medseg_names
from inference.training.evaluate import evaluate_series
from inference.training.nets import BASE_CHANNELS, LogitMean, export_onnx, network_of

#: Largest difference allowed between the file and its members' mean (float32 arithmetic).
TOLERANCE = 1e-4


def mean_of_members(members: list[Path], slices: np.ndarray) -> np.ndarray:
    """What the ensemble must compute, from the member files on onnxruntime one by one."""
    outputs = [_run(path, slices) for path in members]
    base = np.mean([o[:, :BASE_CHANNELS] for o in outputs], axis=0)
    classes = [o[:, BASE_CHANNELS:] for o in outputs if o.shape[1] > BASE_CHANNELS]
    return np.concatenate([base, np.mean(classes, axis=0)], axis=1) if classes else base


def build(members: list[Path], out: Path) -> float:
    """Write the ensemble of ``members`` to ``out`` after checking it; the largest difference."""
    ensemble = LogitMean([network_of(path) for path in members]).eval()
    rng = np.random.default_rng(0)
    whole = rng.random((2, 1, 256, 256), dtype=np.float32)
    crop = whole[:, :, 40:200, 24:232]
    with tempfile.TemporaryDirectory() as tmp:
        candidate = Path(tmp) / "network.onnx"
        export_onnx(ensemble, candidate, 256)
        worst = 0.0
        for slices in (whole, np.ascontiguousarray(crop)):
            got, want = _run(candidate, slices), mean_of_members(members, slices)
            if got.shape != want.shape:
                raise ValueError(f"ensemble gives {got.shape}, its members {want.shape}")
            worst = max(worst, float(np.abs(got - want).max()))
        if worst > TOLERANCE:
            raise ValueError(f"ensemble differs from its members' mean by {worst:.2e}")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(candidate.read_bytes())
    return worst


def evaluate(network: Path, held_out: Path, data: Path) -> dict[str, object]:
    """Benchmark protocol on the fold's held-out MedSeg slices; the new hospital's series."""
    names = json.loads(held_out.read_text())["test_slices"]
    order = medseg_names(data / "ct-lesions")
    images, classes = load_medseg_native(data / "ct-lesions")
    held = [order.index(name) for name in names]
    rows = measure_fold(network, [images[i] for i in held], [classes[i] for i in held])
    series = evaluate_series(data, OnnxSegmenter(network))
    return {
        "model": network.name,
        "held_out_medseg_slices": names,
        "mean_per_slice_dice": {n: round(mean_rows(rows[n])["dice"], 4) for n in CLASS_NAMES},
        "per_slice": rows,
        "covid_ct_md": series,
    }


def _run(path: Path, slices: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(["LOGITS"], {"SLICES": slices})[0])


def main() -> None:
    """Build, check and write the ensemble file."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--member", type=Path, action="append", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--held-out", type=Path, help="fold JSON: score the file on its slices")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    args = parser.parse_args()
    if len(args.member) < 2:
        parser.error("an ensemble needs at least two --member files")
    worst = build(args.member, args.out)
    print(f"{args.out}: mean of {len(args.member)} networks, largest difference {worst:.1e}")
    if args.held_out is not None:
        result = evaluate(args.out, args.held_out, args.data)
        target = args.out.parent.parent / "evaluation.json"
        target.write_text(json.dumps(result, indent=1) + "\n")
        p001 = result["covid_ct_md"]["P001"]  # type: ignore[index]
        normal = result["covid_ct_md"]["normal001"]  # type: ignore[index]
        print(f"{target}: held-out Dice {result['mean_per_slice_dice']}, P001 slice AUC"
              f" {p001['slice_auc_learned']:.3f}, normal001"
              f" {normal['biomarkers']['lesion_percent']:.2f} % of lung")  # fmt: skip


if __name__ == "__main__":
    main()
