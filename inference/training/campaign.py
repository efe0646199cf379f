"""The benchmark protocol trained on CPU in a fixed number of steps per model, resumable.

:mod:`inference.training.crossval` with what a CPU needs for the imaging issue's training size
(the 0.5 M-parameter model reached Dice 0.745 after about 130 k image presentations on a GPU;
this machine trains the 121 k model at about 16 per second): the same folds, data, batches
and loss, but

- from scratch, or from ``--init`` (crossval's fine-tuning start, batch norm statistics kept);
- a fixed number of **steps** per model (learning rate: 5 % warm-up, then cosine over the
  steps), so the result does not depend on how loaded the machine was, and a seed per model;
- the state on disk (``RUN_DIR/<model>.pt``: weights, optimiser, both random generators, step;
  tensors and numbers only, loaded with ``weights_only``) written every
  :data:`CHECKPOINT_EVERY_S` seconds and when ``--hours`` is up: the same command run again
  continues every model where it stopped, bit for bit (a session ending or a kill loses at
  most the steps since the last checkpoint);
- each fold's per-slice scores in ``RUN_DIR/fold<k>.json`` as soon as it is done, and the
  cross-validated report ``RUN_DIR/crossval.json`` when all are;
- ``--channels-last`` (a new run's choice, kept in its config): channels-last memory format,
  16 % more images per second on the 2-core build machine (docs/lesion-model.md).

Run (train venv; ``nice`` leaves the machine to everything else)::

    nice -n 19 .venv-train/bin/python -m inference.training.campaign \
        --run-dir .train-runs/compact-16k --steps 16000 --hours 1.5

Exit code 0 when every model is done, 3 when ``--hours`` stopped it (run it again).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inference.training.crossval import (
    CLASS_NAMES,
    FOLDS,
    MEDSEG_SHARE,
    WARMUP,
    freeze_norm_statistics,
    load_onnx_init,
    load_sources,
    mean_rows,
    measure_fold,
    mixed_batch,
    without,
)
from inference.training.data import SliceSet
from inference.training.nets import CHANNELS, SEED, UNet, export_onnx, loss_3ch

logger = logging.getLogger(__name__)

CHECKPOINT_EVERY_S = 300.0
PAUSED = 3


def _save(path: Path, state: dict[str, Any]) -> None:
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    os.replace(partial, path)  # a kill while writing leaves the previous checkpoint


def train_steps(
    config: dict[str, Any],
    medseg: SliceSet,
    covid: SliceSet,
    seed: int,
    state_path: Path,
    stop: Callable[[], bool],
) -> UNet | None:
    """Train one model to ``config["steps"]`` from its checkpoint; None when ``stop()`` said so.

    ``stop`` is asked before every step (``--hours``); the checkpoint is then written.
    """
    torch.manual_seed(seed)
    model = UNet(tuple(config["widths"]), channels=CHANNELS)
    if config.get("init"):  # crossval's fine-tuning start: the shipped two-channel weights
        load_onnx_init(model, Path(config["init"]))
    layout = torch.channels_last if config.get("channels_last") else torch.contiguous_format
    model = model.to(memory_format=layout)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=1e-4)
    rng = np.random.default_rng(seed)
    step, seconds = 0, 0.0
    if state_path.exists():
        state = torch.load(state_path, weights_only=True)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        step, seconds = int(state["step"]), float(state["seconds"])
        logger.info("%s: resumed at step %d", state_path.stem, step)
    model.train()
    if config.get("init"):
        freeze_norm_statistics(model)
    total = int(config["steps"])
    started = last_save = time.monotonic()

    def checkpoint() -> None:
        _save(state_path, {
            "model": model.state_dict(), "optimiser": optimiser.state_dict(),
            "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
            "step": step, "seconds": seconds + time.monotonic() - started,
        })  # fmt: skip

    while step < total:
        if stop():
            checkpoint()
            return None
        frac = step / total
        scale = min(1.0, frac / WARMUP) * 0.5 * (1 + math.cos(math.pi * frac))
        for group in optimiser.param_groups:
            group["lr"] = config["lr"] * scale + 1e-5
        x, *targets = mixed_batch(medseg, covid, config["batch"], rng)
        loss = loss_3ch(model(x.contiguous(memory_format=layout)), *targets)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        step += 1
        if step % 100 == 0:
            logger.info("%s: step %d/%d loss %.3f", state_path.stem, step, total, float(loss))
        if time.monotonic() - last_save >= CHECKPOINT_EVERY_S:
            checkpoint()
            last_save = time.monotonic()
    checkpoint()
    model.eval()
    return model.to(memory_format=torch.contiguous_format)


def run(args: argparse.Namespace) -> int:
    """Every fold, then the model on all data (unless ``--no-final``); see the module doc."""
    config = {"steps": args.steps, "batch": args.batch, "widths": [int(w) for w in
              args.widths.split(",")], "lr": args.lr, "folds": args.folds, "seed": SEED,
              "medseg_share": MEDSEG_SHARE, "max_slices": args.max_slices,
              "init": str(args.init) if args.init else None,
              "init_sha256": hashlib.sha256(args.init.read_bytes()).hexdigest()
              if args.init else None}  # fmt: skip
    if args.channels_last:  # only when asked: runs started without it keep their config
        config["channels_last"] = True
    run_dir: Path = args.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    saved = run_dir / "config.json"
    if saved.exists() and json.loads(saved.read_text()) != config:
        logger.error("%s holds another run (%s): use another --run-dir", run_dir, saved.read_text())
        return 2
    saved.write_text(json.dumps(config, indent=1) + "\n")
    stop_at = time.time() + args.hours * 3600

    def stop() -> bool:
        return time.time() >= stop_at

    covid, medseg, (images, classes) = load_sources(args.data, args.max_slices)
    blocks = np.array_split(np.arange(len(medseg.names)), args.folds)
    for k, held in enumerate(blocks):
        result = run_dir / f"fold{k}.json"
        if result.exists():
            continue
        state = run_dir / f"fold{k}.pt"
        model = train_steps(config, without(medseg, held), covid, SEED + k, state, stop)
        if model is None:
            logger.info("paused in fold %d: run the same command again to continue", k)
            return PAUSED
        export_onnx(model, run_dir / f"fold{k}.onnx", 256)
        rows = measure_fold(run_dir / f"fold{k}.onnx", [images[i] for i in held],
                            [classes[i] for i in held])  # fmt: skip
        result.write_text(json.dumps({"fold": k, "test_slices": [medseg.names[i] for i in held],
                                      "per_slice": rows}, indent=1) + "\n")  # fmt: skip
        logger.info("fold %d: %s", k, {n: mean_rows(r).get("dice") for n, r in rows.items()})
    if not args.no_final and not (run_dir / "final.onnx").exists():
        model = train_steps(config, medseg, covid, SEED, run_dir / "final.pt", stop)
        if model is None:
            logger.info("paused in the final model: run the same command again to continue")
            return PAUSED
        export_onnx(model, run_dir / "final.onnx", 256)
    (run_dir / "crossval.json").write_text(json.dumps(report(run_dir, config), indent=1) + "\n")
    return 0


def report(run_dir: Path, config: dict[str, Any]) -> dict[str, Any]:
    """Mean per-slice Dice / sensitivity / specificity over every fold's held-out slices."""
    folds = [json.loads((run_dir / f"fold{k}.json").read_text()) for k in range(config["folds"])]
    pooled = {name: [row for f in folds for row in f["per_slice"][name]] for name in CLASS_NAMES}
    return {
        "protocol": "MedSeg k-fold (contiguous blocks by slice number), each slice scored once "
        "by a model that never saw it; masks at the image's own size; mean over slices with the "
        "class (Inf-Net's convention); fixed steps per model, "
        + (f"fine-tuned from {config['init']}" if config.get("init") else "from scratch"),
        "mean_over_slices": {name: mean_rows(rows) for name, rows in pooled.items()},
        "slices_with_class": {name: len(rows) for name, rows in pooled.items()},
        "folds": [
            {"fold": f["fold"], **{n: mean_rows(r) for n, r in f["per_slice"].items()}}
            for f in folds
        ],  # fmt: skip
        "config": config,
        "presentations_per_model": config["steps"] * config["batch"],
    }


def main() -> None:
    """Parse the command line and run (exit 0 done, 3 paused, 2 another run in the folder)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/ct-lesions"))
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=16000, help="per model (x batch images)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--widths", default="8,16,32,64", help="channels per level")
    parser.add_argument(
        "--init", type=Path, help="ONNX to fine-tune (crossval's start); omitted: from scratch"
    )
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--folds", type=int, default=FOLDS)
    parser.add_argument("--hours", type=float, default=1.0, help="stop (resumable) after this")
    parser.add_argument("--no-final", action="store_true", help="folds only")
    parser.add_argument(
        "--channels-last", action="store_true", help="faster on CPU; a new run's choice"
    )
    parser.add_argument("--max-slices", type=int, default=0, help="smoke runs: fewer CT-Seg")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    sys.exit(run(args))


if __name__ == "__main__":
    main()
