"""The real annotated CT slices of ``shared/data/ct-lesions`` as arrays, split by source.

- ``covid19-ct-seg-2d`` (COVID-19-CT-Seg, 20 volumes, CLAHE-normalised 8-bit PNG, lung and
  infection masks): the training source. Its slices are stored volume by volume in file order
  and carry no patient id, so the internal validation set is the last contiguous
  ``INTERNAL_VAL_FRACTION`` of the files (mostly whole volumes; at most one volume straddles it).
- ``medseg-train`` (MedSeg, 50 slices, lung-windowed 8-bit JPG, radiologist masks with
  background / ground-glass / consolidation): never seen in training; the held-out test source.

Images are returned as float32 in [0, 1] (8-bit value / 255) at ``size`` x ``size``; masks as
uint8 at the same size (nearest neighbour).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

INTERNAL_VAL_FRACTION = 0.15
COVID_SEG = "covid19-ct-seg-2d"
MEDSEG = "medseg-train"


@dataclass(frozen=True)
class SliceSet:
    """Images (n, s, s) float32 in [0, 1], lesion classes (n, s, s) uint8, lung (n, s, s) uint8.

    ``lung`` is all 255 where the source has no lung mask (``has_lung`` False).
    """

    images: np.ndarray
    classes: np.ndarray
    lung: np.ndarray
    has_lung: bool
    names: tuple[str, ...]


def _gray(path: Path, size: int) -> np.ndarray:
    from PIL import Image  # here only: the packed data's readers run where PIL is absent

    with Image.open(path) as image:
        resized = image.convert("L").resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32) / 255.0


def _mask(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as opened:
        # palette masks (MedSeg multiclass) keep their indices 0/1/2
        image = opened if opened.mode == "P" else opened.convert("L")
        return np.asarray(image.resize((size, size), Image.Resampling.NEAREST))


def load_covid_seg(root: Path, size: int = 256) -> SliceSet:
    """All COVID-19-CT-Seg slices: lesion class 1 (class unknown: counted as 'lesion')."""
    folder = root / COVID_SEG
    names = tuple(sorted(p.name for p in (folder / "ct").glob("*.png")))
    images = np.stack([_gray(folder / "ct" / n, size) for n in names])
    lesion = np.stack([(_mask(folder / "covid" / n, size) > 127).astype(np.uint8) for n in names])
    lung = np.stack([(_mask(folder / "lungs" / n, size) > 127).astype(np.uint8) for n in names])
    return SliceSet(images, lesion, lung, True, names)


def medseg_names(root: Path) -> tuple[str, ...]:
    """The MedSeg slices' names, by number: the order of both loaders below."""
    folder = root / MEDSEG / "multiclass" / "Imgs"
    return tuple(sorted((p.stem for p in folder.glob("*.jpg")), key=int))


def load_medseg(root: Path, size: int = 256) -> SliceSet:
    """The 50 MedSeg slices with 0/1/2 = background / ground-glass / consolidation."""
    folder = root / MEDSEG / "multiclass"
    names = medseg_names(root)
    images = np.stack([_gray(folder / "Imgs" / f"{n}.jpg", size) for n in names])
    classes = np.stack([_mask(folder / "GT" / f"{n}.png", size) for n in names])
    lung = np.full_like(classes, 255)
    return SliceSet(images, classes, lung, False, names)


def load_medseg_native(root: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The 50 MedSeg slices at their own sizes: images in [0, 1] and 0/1/2 classes, by number."""
    from PIL import Image

    folder = root / MEDSEG / "multiclass"
    images, classes = [], []
    for n in medseg_names(root):
        with Image.open(folder / "Imgs" / f"{n}.jpg") as image:
            images.append(np.asarray(image.convert("L"), dtype=np.float32) / 255.0)
        with Image.open(folder / "GT" / f"{n}.png") as mask:
            classes.append(np.asarray(mask if mask.mode == "P" else mask.convert("L")))
    return images, classes


def split_internal(data: SliceSet) -> tuple[SliceSet, SliceSet]:
    """(train, internal validation): the last contiguous fraction of the files is validation."""
    cut = int(round(len(data.names) * (1 - INTERNAL_VAL_FRACTION)))

    def part(s: slice) -> SliceSet:
        return SliceSet(data.images[s], data.classes[s], data.lung[s], data.has_lung, data.names[s])

    return part(slice(0, cut)), part(slice(cut, None))
