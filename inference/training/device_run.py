"""The imaging issue's from-scratch recipe in one call on a lent GPU, then scored here.

The lent machine runs a command for at most 10 minutes, out of 15 minutes of device time per
task, with Python, torch (CUDA), numpy and onnx and nothing else. ``train`` runs there (or on
a CPU, slowly) from the packed slices (:mod:`inference.training.packed`); ``score`` runs here,
through the inference code, on what comes back.

``train``: for each ``--variant NAME=WIDTHS@STEPS`` (the compact default first), the MedSeg
folds of :mod:`inference.training.crossval` (5 contiguous blocks by slice number) and then the
model on all data, each **from scratch** for a fixed number of steps: batches of ``--batch``
with ``--medseg-share`` of them MedSeg, augmented on the device (crop-zoom, rot90, flip, gamma,
contrast, brightness, noise: :func:`augment_batch`), loss :func:`inference.training.nets.loss_3ch`,
AdamW, 5 % warm-up then cosine, bf16 autocast on CUDA. Each model's weights are saved
(``<variant>/<model>.pt``, tensors only) the moment it is done and ``run.json`` rewritten, so
a run stopped at ``--deadline-s`` (or killed) still returns every finished model; a model that
would end past the deadline is not started. It also times each variant's network on a
300-slice study (256 x 256, torch on the device).

``time`` (there too): the served networks' time per study, each exported file given as
``--member`` and their output ensemble (:mod:`inference.training.device_time`).

``score``: exports each returned model to ONNX here (this venv's torch, not whichever exporter
the lent machine's newer torch defaults to), then scores every ``fold<k>.onnx`` on its
held-out MedSeg slices at their own size through
:func:`inference.segmentation.segment_images` (crossval's scoring), written as ``fold<k>.json``
and ``crossval.json`` like :mod:`inference.training.campaign`'s.

On the GPU machine (no runtime dependencies there: the launcher skips ``inference/__init__``)::

    python inference/training/on_device.py train --pack .train-data/lesions.npz.xz \
        --out $OUT/run --variant compact=16,32,64,128@4000 --deadline-s 500
    python inference/training/on_device.py time --out $OUT/served.json \
        --member inference/model_repository/lesion_unet_onnx/1/model.onnx \
        --member inference/model_repository/lesion_unet_large/members/medseg_scratch_fold0.onnx

Here (the train venv: torch and the inference runtime)::

    .venv-train/bin/python -m inference.training.device_run score --run-dir RUN
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inference.training.data import SliceSet
from inference.training.device_time import (
    STUDY_SLICES,
    device_name,
    pick_device,
    time_members,
    time_network,
)
from inference.training.nets import CHANNELS, SEED, UNet, export_onnx, loss_3ch

logger = logging.getLogger(__name__)

FOLDS = 5
WARMUP = 0.05


def crop_turn_flip_index(
    s: int, crop: torch.Tensor, y0: torch.Tensor, x0: torch.Tensor, turns: torch.Tensor,
    flip: torch.Tensor,
) -> torch.Tensor:  # fmt: skip
    """Flat source index (n, s * s) of each output pixel, as train_lesion.augment moves them.

    A ``crop`` x ``crop`` window at (``y0``, ``x0``) stretched to ``s`` (nearest), then
    ``np.rot90`` ``turns`` times, then mirrored left-right where ``flip``; all per slice (n,).
    """
    n = len(crop)
    i = torch.arange(s, device=crop.device).view(1, s, 1).expand(n, s, s)
    j = torch.arange(s, device=crop.device).view(1, 1, s).expand(n, s, s)
    j = torch.where(flip.view(n, 1, 1), s - 1 - j, j)
    # np.rot90(window, k)[i, j] is window[row, col] with, for k = 0..3:
    row_by_turn = (i, j, s - 1 - i, s - 1 - j)
    col_by_turn = (j, s - 1 - i, s - 1 - j, i)
    rows = torch.zeros_like(i)
    cols = torch.zeros_like(j)
    for k in range(4):
        rows = torch.where(turns.view(n, 1, 1) == k, row_by_turn[k], rows)
        cols = torch.where(turns.view(n, 1, 1) == k, col_by_turn[k], cols)
    scale = crop.view(n, 1, 1)
    src = (y0.view(n, 1, 1) + rows * scale // s) * s + x0.view(n, 1, 1) + cols * scale // s
    return src.view(n, -1)


def augment_batch(
    images: torch.Tensor, classes: torch.Tensor, lung: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per slice: crop-zoom (0.6-1.0, nearest), rot90, flip, gamma, contrast, brightness, noise.

    The batched, on-device form of :func:`inference.training.train_lesion.augment` (same
    ranges); one gather moves images and masks together.
    """
    n, s, _ = images.shape
    dev = images.device

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, device=dev, generator=gen)

    crop = (s * uniform(0.6, 1.0)).long()
    y0 = (torch.rand(n, device=dev, generator=gen) * (s - crop + 1)).long()
    x0 = (torch.rand(n, device=dev, generator=gen) * (s - crop + 1)).long()
    turns = torch.randint(0, 4, (n,), device=dev, generator=gen)
    flip = torch.rand(n, device=dev, generator=gen) < 0.5
    flat = crop_turn_flip_index(s, crop, y0, x0, turns, flip)

    def take(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(n, -1).gather(1, flat).view(n, s, s)

    img = take(images).clamp(0, 1) ** uniform(0.6, 1.6).view(n, 1, 1)
    img = (img - 0.5) * uniform(0.75, 1.3).view(n, 1, 1) + 0.5 + uniform(-0.1, 0.1).view(n, 1, 1)
    noise = torch.randn(img.shape, device=dev, generator=gen) * uniform(0, 0.03).view(n, 1, 1)
    return (img + noise).clamp(0, 1), take(classes), take(lung)


def random_patch(
    stacks: tuple[torch.Tensor, ...], patch: int, gen: torch.Generator
) -> tuple[torch.Tensor, ...]:
    """The same random ``patch`` x ``patch`` window of each slice (n, s, s) of every stack.

    Training on windows of the slices at their inference scale buys more steps per second on a
    CPU (docs/lesion-model.md: pixels per second are the limit there).
    """
    n, s = stacks[0].shape[0], stacks[0].shape[-1]
    dev = stacks[0].device
    y0 = torch.randint(0, s - patch + 1, (n, 1, 1), device=dev, generator=gen)
    x0 = torch.randint(0, s - patch + 1, (n, 1, 1), device=dev, generator=gen)
    grid = torch.arange(patch, device=dev)
    flat = ((y0 + grid.view(1, patch, 1)) * s + x0 + grid.view(1, 1, patch)).view(n, -1)
    return tuple(t.reshape(n, -1).gather(1, flat).view(n, patch, patch) for t in stacks)


class Sources:
    """Both sources on the device; draws augmented mixed batches for :func:`loss_3ch`."""

    def __init__(self, covid: SliceSet, medseg: SliceSet, device: torch.device) -> None:
        self.device = device
        self.medseg = self._on(medseg)
        self.covid = self._on(covid)

    def _on(self, data: SliceSet) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (torch.from_numpy(data.images).to(self.device),
                torch.from_numpy(data.classes.astype(np.int64)).to(self.device),
                torch.from_numpy(data.lung.astype(np.float32)).to(self.device))  # fmt: skip

    def batch(
        self, size: int, share: float, keep: torch.Tensor, gen: torch.Generator, patch: int = 0
    ) -> tuple[torch.Tensor, ...]:
        """``size`` slices, ``share`` of them from the MedSeg indices ``keep``.

        ``patch``: a random ``patch`` x ``patch`` window of each augmented slice (0: whole).
        """
        n_med = max(1, round(size * share))
        pick_m = keep[torch.randint(0, len(keep), (n_med,), device=self.device, generator=gen)]
        pick_c = torch.randint(0, len(self.covid[0]), (size - n_med,), device=self.device,
                               generator=gen)  # fmt: skip
        images, classes, lung = (torch.cat([m[pick_m], c[pick_c]])
                                 for m, c in zip(self.medseg, self.covid, strict=True))  # fmt: skip
        x, cls, lung = augment_batch(images, classes, lung, gen)
        if patch:
            x, cls, lung = random_patch((x, cls, lung), patch, gen)
        known = torch.arange(size, device=self.device) >= n_med
        return x[:, None], cls, lung, known, ~known


def train_model(
    sources: Sources, keep: torch.Tensor, widths: tuple[int, ...], steps: int, args: Any,
    seed: int, deadline: float,
) -> tuple[UNet | None, dict[str, Any]]:  # fmt: skip
    """One model from scratch; None if ``deadline`` (monotonic) came first."""
    device = sources.device
    torch.manual_seed(seed)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    model = UNet(widths, channels=CHANNELS).to(device, memory_format=torch.channels_last)
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    on_gpu = device.type == "cuda"
    started = time.monotonic()
    losses: list[float] = []
    model.train()
    for step in range(steps):
        if time.monotonic() >= deadline:
            return None, {"stopped_at_step": step, "seconds": time.monotonic() - started}
        frac = step / steps
        scale = min(1.0, frac / WARMUP) * 0.5 * (1 + math.cos(math.pi * frac))
        for group in optimiser.param_groups:
            group["lr"] = args.lr * scale + 1e-5
        x, *targets = sources.batch(args.batch, args.medseg_share, keep, gen, args.patch)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=on_gpu):
            logits = model(x.contiguous(memory_format=torch.channels_last))
        loss = loss_3ch(logits.float(), *targets)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if step % 100 == 99:
            losses.append(float(loss))
            logger.info("step %d/%d loss %.3f", step + 1, steps, losses[-1])
    seconds = time.monotonic() - started
    model.eval()
    return model.to("cpu", memory_format=torch.contiguous_format), {
        "steps": steps, "batch": args.batch, "presentations": steps * args.batch,
        "seconds": round(seconds, 1), "images_per_s": round(steps * args.batch / seconds, 1),
        "loss_every_100": losses,
    }  # fmt: skip


def parse_variant(text: str) -> tuple[str, tuple[int, ...], int]:
    """``NAME=W1,W2,W3,W4@STEPS`` -> (name, widths, steps)."""
    name, rest = text.split("=", 1)
    widths, steps = rest.split("@", 1)
    return name, tuple(int(w) for w in widths.split(",")), int(steps)


#: what must match for a run to add models to an earlier run's folder (sessions on a CPU)
SAME_RECIPE = ("seed", "folds", "batch", "lr", "medseg_share", "warmup", "patch", "medseg_names")


def _earlier_run(path: Path, report: dict[str, Any]) -> dict[str, Any]:
    """The variants of an earlier run in the same folder, which this run adds models to."""
    if not path.exists():
        return {}
    earlier = json.loads(path.read_text())
    changed = [k for k in SAME_RECIPE if earlier.get(k) != report.get(k)]
    if changed or earlier.get("covid_slices") != report["covid_slices"]:
        raise SystemExit(f"{path}: an earlier run with another recipe ({changed or 'data'})")
    return earlier["variants"]


def train(args: argparse.Namespace) -> int:
    """Every variant's folds, then its model on all data; see the module doc."""
    from inference.training.packed import read_pack

    deadline = time.monotonic() + args.deadline_s
    device = pick_device(args.device)
    torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
    covid, medseg = read_pack(args.pack)
    sources = Sources(covid, medseg, device)
    blocks = np.array_split(np.arange(len(medseg.names)), args.folds)
    report: dict[str, Any] = {
        "device": device_name(device),
        "torch": torch.__version__, "seed": SEED, "folds": args.folds, "batch": args.batch,
        "lr": args.lr, "medseg_share": args.medseg_share, "warmup": WARMUP, "patch": args.patch,
        "covid_slices": len(covid.names), "medseg_names": list(medseg.names),
        "recipe": "from scratch, fixed steps, AdamW + cosine, on-device augmentation, loss_3ch",
        "variants": {},
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    earlier = _earlier_run(args.out / "run.json", report)
    for variant in args.variant:
        name, widths, steps = parse_variant(variant)
        folder = args.out / name
        entry: dict[str, Any] = {"widths": list(widths), "steps": steps, "models": {}}
        kept = earlier.get(name, {})
        if kept and (kept["widths"], kept["steps"]) != (entry["widths"], steps):
            raise SystemExit(f"{args.out}: variant {name} was trained with other widths or steps")
        entry.update(kept)
        report["variants"][name] = entry
        jobs = [(f"fold{k}", np.setdiff1d(np.arange(len(medseg.names)), held), SEED + k,
                 [medseg.names[i] for i in held]) for k, held in enumerate(blocks)]  # fmt: skip
        jobs.append(("final", np.arange(len(medseg.names)), SEED, []))
        for label, keep, seed, held_names in jobs[args.skip_folds :][: args.max_models]:
            expected = entry.get("seconds_per_model")
            if expected and time.monotonic() + expected > deadline:
                entry["models"][label] = {"skipped": "would end past --deadline-s"}
                continue
            logger.info("%s %s: %d steps of %d", name, label, steps, args.batch)
            keep_t = torch.from_numpy(keep).to(device)
            model, info = train_model(sources, keep_t, widths, steps, args, seed, deadline)
            if model is None:
                entry["models"][label] = {"stopped": "--deadline-s", **info}
                break
            folder.mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), folder / f"{label}.pt")
            entry["parameters"] = sum(p.numel() for p in model.parameters())
            entry["seconds_per_model"] = info["seconds"]
            entry["models"][label] = {**info, "held_out": held_names, "device": report["device"]}
            if "network" not in entry:
                timing = time_network(model, device, args.study_slices)
                entry["network"] = {"device": report["device"], "slices": args.study_slices}
                entry["network"].update(timing)
            (args.out / "run.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "run.json").write_text(json.dumps(report, indent=1) + "\n")
    return 0


def score(args: argparse.Namespace) -> int:
    """Each returned fold model on its held-out MedSeg slices through the inference code."""
    from inference.training.campaign import report as cross_report
    from inference.training.crossval import measure_fold
    from inference.training.data import load_medseg_native

    run = json.loads((args.run_dir / "run.json").read_text())
    images, classes = load_medseg_native(args.data)
    order = {n: i for i, n in enumerate(run["medseg_names"])}
    for name, entry in run["variants"].items():
        folder = args.run_dir / name
        for weights in sorted(folder.glob("*.pt")):
            model = UNet(tuple(entry["widths"]), channels=CHANNELS)
            model.load_state_dict(torch.load(weights, weights_only=True))
            export_onnx(model, weights.with_suffix(".onnx"), 256)
        for k in range(run["folds"]):
            model = folder / f"fold{k}.onnx"
            if not model.exists():
                continue
            held = [order[n] for n in entry["models"][f"fold{k}"]["held_out"]]
            rows = measure_fold(model, [images[i] for i in held], [classes[i] for i in held])
            names = [run["medseg_names"][i] for i in held]
            result = {"fold": k, "test_slices": names, "per_slice": rows}
            (folder / f"fold{k}.json").write_text(json.dumps(result, indent=1) + "\n")
        if all((folder / f"fold{k}.json").exists() for k in range(run["folds"])):
            config = {key: run[key] for key in ("folds", "batch", "lr", "device", "medseg_share")}
            config.update(steps=entry["steps"], widths=entry["widths"])
            cv = cross_report(folder, config)
            (folder / "crossval.json").write_text(json.dumps(cv, indent=1) + "\n")
            logger.info("%s: %s", name, json.dumps(cv["mean_over_slices"]))
    return 0


def main() -> None:
    """``train`` (the lent machine), ``time`` (the lent machine) or ``score`` (here)."""
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train")
    tr.add_argument("--pack", type=Path, default=Path(".train-data/lesions.npz.xz"))
    tr.add_argument("--out", type=Path, required=True)
    tr.add_argument("--variant", action="append", required=True, help="NAME=W1,W2,W3,W4@STEPS")
    tr.add_argument("--batch", type=int, default=32)
    tr.add_argument("--lr", type=float, default=3e-3)
    tr.add_argument("--medseg-share", type=float, default=0.25)
    tr.add_argument("--folds", type=int, default=FOLDS)
    tr.add_argument("--skip-folds", type=int, default=0, help="start at this job (0-5, 5: final)")
    tr.add_argument("--max-models", type=int, default=None, help="train at most this many jobs")
    tr.add_argument("--patch", type=int, default=0, help="train on random windows this size")
    tr.add_argument("--deadline-s", type=float, default=500.0)
    tr.add_argument("--device", default="auto")
    tr.add_argument("--study-slices", type=int, default=STUDY_SLICES, help="network timing")
    tm = sub.add_parser("time")
    tm.add_argument("--member", type=Path, action="append", required=True, help="exported .onnx")
    tm.add_argument("--out", type=Path, required=True, help="JSON")
    tm.add_argument("--device", default="auto")
    tm.add_argument("--study-slices", type=int, default=STUDY_SLICES)
    sc = sub.add_parser("score")
    sc.add_argument("--run-dir", type=Path, required=True)
    sc.add_argument("--data", type=Path, default=Path("../shared/data/ct-lesions"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    commands = {"train": train, "time": time_members, "score": score}
    raise SystemExit(commands[args.command](args))


if __name__ == "__main__":
    main()
