"""The training slices packed into one small file for a machine without ``shared/data`` or PIL.

The lent GPU machine gets only the working tree (64 MiB in all) and has Python, torch, numpy
and onnx. This writes the two sources as 8-bit arrays, lzma-compressed, and reads them back
with numpy alone:

- COVID-19-CT-Seg at 256 x 256: every ``every``-th slice (default 2: the 1,614 CLAHE slices
  are noisy and compress poorly, 79 MB for all of them; neighbouring slices of a volume are
  nearly the same picture, so every second one keeps the volumes and halves the bytes);
- the 50 MedSeg slices at 256 x 256 with their classes, in number order (the folds' order).

Pack (here, runtime venv)::

    .venv/bin/python -m inference.training.packed --data ../shared/data/ct-lesions \
        --out .train-data/lesions.npz.xz
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import lzma
from pathlib import Path

import numpy as np

from inference.training.data import SliceSet

logger = logging.getLogger(__name__)


def _to_bytes(images: np.ndarray) -> np.ndarray:
    return np.round(images * 255).astype(np.uint8)


def write_pack(path: Path, covid: SliceSet, medseg: SliceSet, every: int = 2) -> dict[str, int]:
    """Write both sources (COVID-19-CT-Seg thinned to every ``every``-th slice); sizes back."""
    keep = slice(0, None, every)
    buffer = io.BytesIO()
    np.savez(
        buffer,
        covid_images=_to_bytes(covid.images[keep]),
        covid_lesion=np.packbits(covid.classes[keep] > 0, axis=-1),
        covid_lung=np.packbits(covid.lung[keep] > 0, axis=-1),
        medseg_images=_to_bytes(medseg.images),
        medseg_classes=medseg.classes.astype(np.uint8),
        names=np.array(json.dumps({"covid": covid.names[keep], "medseg": medseg.names})),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(lzma.compress(buffer.getvalue(), preset=6))
    return {"covid_slices": len(covid.names[keep]), "medseg_slices": len(medseg.names),
            "bytes": path.stat().st_size}  # fmt: skip


def read_pack(path: Path) -> tuple[SliceSet, SliceSet]:
    """(COVID-19-CT-Seg, MedSeg) as :func:`inference.training.data.load_covid_seg` gives them."""
    with np.load(io.BytesIO(lzma.decompress(path.read_bytes()))) as packed:
        names = json.loads(str(packed["names"]))
        width = packed["covid_images"].shape[-1]
        covid = SliceSet(
            packed["covid_images"].astype(np.float32) / 255.0,
            np.unpackbits(packed["covid_lesion"], axis=-1, count=width),
            np.unpackbits(packed["covid_lung"], axis=-1, count=width),
            True,
            tuple(names["covid"]),
        )
        classes = packed["medseg_classes"]
        medseg = SliceSet(
            packed["medseg_images"].astype(np.float32) / 255.0,
            classes,
            np.full_like(classes, 255),
            False,
            tuple(names["medseg"]),
        )
    return covid, medseg


def main() -> None:
    """Pack ``--data`` into ``--out``."""
    from inference.training.data import load_covid_seg, load_medseg

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/ct-lesions"))
    parser.add_argument("--out", type=Path, default=Path(".train-data/lesions.npz.xz"))
    parser.add_argument("--every", type=int, default=2, help="keep every n-th CT-Seg slice")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    sizes = write_pack(args.out, load_covid_seg(args.data), load_medseg(args.data), args.every)
    logger.info("packed %s: %s", args.out, sizes)


if __name__ == "__main__":
    main()
