"""The served lesion networks' time per study on a device (the lent GPU, or this CPU).

torch, numpy and onnx only, like :mod:`inference.training.device_run`, whose ``time`` command
this is: the exported files (as the Triton folders hold them) are read back as torch modules
(:func:`inference.training.nets.network_of`), so a machine without onnxruntime times the same
weights the servers run, one by one and as their output ensemble (``lesion_unet_large``).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from typing import Any

import numpy as np
import torch

from inference.training.nets import LogitMean, network_of

logger = logging.getLogger(__name__)

STUDY_SLICES = 300


def pick_device(name: str) -> torch.device:
    """``--device``: a torch device name, or ``auto`` (CUDA when there is one)."""
    if name != "auto":
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_name(device: torch.device) -> str:
    """What a report says ran: the GPU's name, or ``cpu``."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def time_network(model: torch.nn.Module, device: torch.device, slices: int) -> dict[str, float]:
    """Median seconds for a ``slices``-slice 256 x 256 study through the network, fp32 and bf16."""
    model = model.to(device, memory_format=torch.channels_last).eval()
    study = torch.rand(slices, 1, 256, 256, device=device)
    out: dict[str, float] = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        enabled = dtype is not None and device.type == "cuda"
        if dtype is not None and not enabled:
            continue
        times = []
        for _ in range(4):
            start = time.perf_counter()
            with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=enabled):
                for b in range(0, slices, 64):
                    model(study[b : b + 64].contiguous(memory_format=torch.channels_last))
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        out[f"{name}_s_per_study"] = float(np.median(times[1:]))  # the first warms up
    model.to("cpu")
    return out


def time_members(args: argparse.Namespace) -> int:
    """The served networks' time per study on this device: each member, then their ensemble.

    The exported files (``--member``, as the Triton folders hold them) are read back as torch
    modules, so the lent machine (no onnxruntime) times the same weights the servers run.
    """
    device = pick_device(args.device)
    members = [network_of(path) for path in args.member]
    report: dict[str, Any] = {
        "device": device_name(device), "torch": torch.__version__, "slices": args.study_slices,
        "networks": {},
    }  # fmt: skip
    for path, model in zip(args.member, members, strict=True):
        report["networks"][path.name] = time_network(model, device, args.study_slices)
    if len(members) > 1:
        timing = time_network(LogitMean(members), device, args.study_slices)
        report["networks"]["ensemble"] = timing
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    logger.info("%s", json.dumps(report))
    return 0
