"""The lesion network, its loss, its ONNX export and back: torch, numpy and onnx only.

An exported network reads back as a torch module (:func:`network_of`), several as their output
ensemble (:class:`LogitMean`).

Kept apart from the data loading (PIL) and the scoring (the ``inference`` runtime) so that
:mod:`inference.training.device_run` runs on a machine that has nothing else (the lent GPU
machine: Python, torch, numpy, onnx).
"""

from __future__ import annotations

from pathlib import Path

import onnx
import torch
from onnx import numpy_helper
from torch import nn
from torch.nn import functional as F

SEED = 20200405
CHANNELS = 3  # lesion, lung, consolidation given lesion
#: Channels every lesion network has (lesion, lung); a third is consolidation given lesion.
BASE_CHANNELS = 2
#: MedSeg's lesion pixels are 63 % ground glass, 37 % consolidation: BCE balanced by 1.7, and
#: weighted 2 so the new channel learns within a CPU budget (both fixed before any fold ran)
CONSOLIDATION_POS_WEIGHT = 1.7
CONSOLIDATION_LOSS_WEIGHT = 2.0


def block(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3x3 convolutions with batch norm and ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-Net with ``len(widths)`` levels; input (n, 1, h, w), output (n, channels, h, w) logits."""

    def __init__(self, widths: tuple[int, ...] = (8, 16, 32, 64), channels: int = 2) -> None:
        super().__init__()
        self.down = nn.ModuleList()
        c_in = 1
        for w in widths:
            self.down.append(block(c_in, w))
            c_in = w
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.up.append(nn.ConvTranspose2d(c_in, w, 2, stride=2))
            self.merge.append(block(2 * w, w))
            c_in = w
        self.head = nn.Conv2d(c_in, channels, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last decoder block's output (n, widths[0], h, w), what the head reads."""
        skips = []
        for i, down in enumerate(self.down):
            x = down(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1]), strict=True):
            x = merge(torch.cat([up(x), skip], dim=1))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (n, channels, h, w): lesion, lung[, consolidation given lesion]."""
        return self.head(self.features(x))


def loss_3ch(
    logits: torch.Tensor,
    classes: torch.Tensor,
    lung: torch.Tensor,
    lung_known: torch.Tensor,
    class_known: torch.Tensor,
) -> torch.Tensor:
    """Lesion BCE + soft Dice, lung BCE (at lesions where no mask), consolidation BCE.

    Consolidation only inside the known lesions of slices with classes.
    """
    lesion = (classes > 0).float()
    les_logit = logits[:, 0]
    loss = F.binary_cross_entropy_with_logits(les_logit, lesion)
    p = torch.sigmoid(les_logit)
    loss = loss + 1 - (2 * (p * lesion).sum() + 1) / (p.sum() + lesion.sum() + 1)
    if bool(lung_known.any()):
        loss = loss + F.binary_cross_entropy_with_logits(
            logits[lung_known, 1], (lung[lung_known] > 0).float()
        )
    # slices without a lung mask still say where lung is: every lesion pixel (inference keeps
    # lesion & lung, so a lung head that never saw MedSeg's style cut its lesions away)
    in_lesion = (classes > 0) & ~lung_known[:, None, None]
    if bool(in_lesion.any()):
        target = torch.ones(int(in_lesion.sum()), device=logits.device)
        loss = loss + F.binary_cross_entropy_with_logits(logits[:, 1][in_lesion], target)
    inside = (classes > 0) & class_known[:, None, None]
    if bool(inside.any()):
        target = (classes == 2).float()[inside]
        balance = torch.tensor(CONSOLIDATION_POS_WEIGHT, device=logits.device)
        loss = loss + CONSOLIDATION_LOSS_WEIGHT * F.binary_cross_entropy_with_logits(
            logits[:, 2][inside], target, pos_weight=balance
        )
    return loss


def export_onnx(model: nn.Module, path: Path, size: int) -> None:
    """ONNX, input ``SLICES`` (n,1,h,w), output ``LOGITS`` (n,c,h,w), traced at ``size``.

    Batch, height and width are free (h and w multiples of 8: the network pools three times),
    so inference can run the network on lung crops (``inference.segmentation``).
    """
    model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model,
        (torch.zeros(1, 1, size, size),),
        str(path),
        input_names=["SLICES"],
        output_names=["LOGITS"],
        dynamic_axes={"SLICES": {0: "n", 2: "h", 3: "w"}, "LOGITS": {0: "n", 2: "h", 3: "w"}},
        opset_version=17,
    )


def _convs_in_forward_order(model: UNet) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    blocks = list(model.down) + list(model.merge)
    return [(block[i], block[i + 1]) for block in blocks for i in (0, 3)]


def load_onnx_init(model: UNet, path: Path) -> None:
    """Copy the exported two-channel model's weights into ``model`` (batch norm folded).

    The ONNX export folds each batch norm into its convolution; the folded convolutions appear
    in forward order, so each gets its weight and the batch norm after it becomes the identity
    plus the folded bias (mean 0, variance 1 - eps, scale 1).
    """
    graph = onnx.load(str(path)).graph
    weights = {i.name: numpy_helper.to_array(i).copy() for i in graph.initializer}  # writable
    folded = [
        node.input[1:3]
        for node in graph.node
        if node.op_type == "Conv" and not node.input[1].startswith("head.")
    ]
    pairs = _convs_in_forward_order(model)
    if len(folded) != len(pairs):
        raise ValueError(f"{path}: {len(folded)} convolutions, the network has {len(pairs)}")
    with torch.no_grad():
        for (conv, norm), (w_name, b_name) in zip(pairs, folded, strict=True):
            conv.weight.copy_(torch.from_numpy(weights[w_name]))
            norm.weight.fill_(1.0)
            norm.bias.copy_(torch.from_numpy(weights[b_name]))
            norm.running_mean.zero_()
            norm.running_var.fill_(1.0 - norm.eps)
        for name in ("up.0", "up.1", "up.2"):
            index = int(name[-1])
            model.up[index].weight.copy_(torch.from_numpy(weights[f"{name}.weight"]))
            model.up[index].bias.copy_(torch.from_numpy(weights[f"{name}.bias"]))
        head_w, head_b = weights["head.weight"], weights["head.bias"]
        model.head.weight.zero_()
        model.head.bias.zero_()
        model.head.weight[: head_w.shape[0]] = torch.from_numpy(head_w)
        model.head.bias[: head_b.shape[0]] = torch.from_numpy(head_b)


class LogitMean(nn.Module):
    """Members' logits averaged: lesion and lung over all, consolidation over those with it."""

    def __init__(self, members: list[UNet]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        #: which members have the class channel: fixed here, not a branch on a traced shape
        self.with_classes = [m.head.out_channels > BASE_CHANNELS for m in members]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (n, 3 or 2, h, w), as one lesion network's."""
        outputs = [member(x) for member in self.members]
        base = torch.stack([o[:, :BASE_CHANNELS] for o in outputs]).mean(dim=0)
        kept = zip(outputs, self.with_classes, strict=True)
        classes = [o[:, BASE_CHANNELS:] for o, c in kept if c]
        if not classes:
            return base
        return torch.cat([base, torch.stack(classes).mean(dim=0)], dim=1)


def network_of(path: Path) -> UNet:
    """The exported network at ``path`` as a torch module (widths and channels read from it)."""
    weights = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    ups = sorted(name for name in weights if name.startswith("up.") and name.endswith(".weight"))
    if not ups or "head.weight" not in weights:
        raise ValueError(f"{path}: not an exported lesion U-Net (no up.* / head weights)")
    first = weights[ups[0]]  # (deepest width, next width, 2, 2)
    widths = [int(weights[name].shape[1]) for name in reversed(ups)] + [int(first.shape[0])]
    model = UNet(tuple(widths), channels=int(weights["head.weight"].shape[0]))
    load_onnx_init(model, path)
    return model.eval()
