"""Learned lesion segmentation (compact 2-D U-Net, ONNX on onnxruntime) of slices and volumes.

Input mapping, the same in training and at run time (see the model card):

- 8-bit lung-windowed images (PNG/JPG, the training and test slices): ``value / 255``.
- HU volumes: the lung window, level ``WINDOW_HU`` -> [0, 1] linearly, clipped:
  ``(HU + 1350) / 1500``. An 8-bit image is taken to use the same window, so its
  approximate HU (for the ground-glass / consolidation split) is ``value / 255 * 1500 - 1350``.

Each slice is resized to ``INPUT_SIZE`` squared (bilinear), the network returns lesion and lung
logits, which are resized back (bilinear on logits) and thresholded at 0. Lesion voxels are
split into ground glass and consolidation:

- HU volumes: by density (< -300 HU ground glass, >= -300 HU consolidation), the definition of
  :mod:`inference.biomarkers`, with the model's lesions.
- 8-bit images, which carry no HU (the window and the JPEG make density a guess): by the
  model's third channel, consolidation given lesion, when it has one (``CLASS_CHANNEL``); a
  two-channel model falls back to the density rule on the approximate HU.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from inference.biomarkers import (
    CONSOLIDATION_HU,
    GGO_HU,
    WELL_AERATED_HU,
    Biomarkers,
    check_volume,
)
from inference.exceptions import InvalidVolume
from inference.lungmask import Box, close_and_fill, lung_mask_in_box
from inference.regional import RegionalBiomarkers, regional_biomarkers
from inference.slabs import run_each

logger = logging.getLogger(__name__)

INPUT_SIZE = 256
WINDOW_HU = (-1350.0, 150.0)  # level -600, width 1500
REPOSITORY = Path(__file__).parent / "model_repository"
MODEL_PATH = REPOSITORY / "lesion_unet_onnx" / "1" / "model.onnx"
#: The large variant's network: the compact one and a MedSeg-trained one, logits averaged.
LARGE_MODEL_PATH = REPOSITORY / "lesion_unet_large" / "1" / "network.onnx"
BATCH_SLICES = 16
#: The network halves its input three times: a crop starts and ends on multiples of 8.
CROP_MULTIPLE = 8
#: Context around the lung, in network-input pixels, for a crop's lesions to match the whole
#: slice's (measured: docs/imaging-performance.md, "Crop before the network").
CROP_MARGIN = 40
GGO_BELOW_HU = GGO_HU[1]  # -300
#: Logit channels: lesion, lung, and (three-channel models) consolidation given lesion.
LESION_CHANNEL, LUNG_CHANNEL, CLASS_CHANNEL = 0, 1, 2

#: (n, 1, s, s) float32 -> (n, 2 or 3, s, s) float32 logits; onnxruntime locally, Triton remotely.
LogitsFn = Callable[[np.ndarray], np.ndarray]


def hu_to_unit(hu: np.ndarray) -> np.ndarray:
    """HU -> network input scale [0, 1] through the lung window."""
    low, high = WINDOW_HU
    return np.clip((hu.astype(np.float32) - low) / (high - low), 0.0, 1.0)


def unit_to_hu(unit: np.ndarray) -> np.ndarray:
    """Inverse of :func:`hu_to_unit` inside the window (for 8-bit images: approximate HU)."""
    low, high = WINDOW_HU
    return unit.astype(np.float32) * (high - low) + low


def _down2(stack: np.ndarray) -> np.ndarray:
    """Halve (y, x) by 2x2 means: what bilinear zoom by 0.5 with grid_mode computes, faster.

    Row pairs first (contiguous rows), then column pairs: 8x faster than a mean over the axes
    of a (n, h/2, 2, w/2, 2) view, and bit-identical on the integer HU the study path gives it.
    """
    values = stack.astype(np.float32, copy=False)
    rows = values[:, 0::2] + values[:, 1::2]
    out = rows[:, :, 0::2] + rows[:, :, 1::2]
    out *= 0.25
    return out


def _up2(stack: np.ndarray) -> np.ndarray:
    """Double (y, x): bilinear zoom by 2 with grid_mode and edge clamping, vectorised."""
    for axis in (1, 2):
        size = stack.shape[axis]
        before = np.take(stack, np.r_[0, np.arange(size - 1)], axis=axis)
        after = np.take(stack, np.r_[np.arange(1, size), size - 1], axis=axis)
        even, odd = 0.75 * stack + 0.25 * before, 0.75 * stack + 0.25 * after
        stack = np.stack([even, odd], axis=axis + 1).reshape(
            *stack.shape[:axis], 2 * size, *stack.shape[axis + 1 :]
        )
    return stack.astype(np.float32, copy=False)


def _resize(stack: np.ndarray, shape: tuple[int, int], order: int) -> np.ndarray:
    """Resize (n, y, x) to ``shape``; exact factors of 2 take the fast equivalent paths."""
    h, w = stack.shape[1], stack.shape[2]
    if (h, w) == shape:
        return stack.astype(np.float32, copy=False)
    if order == 1 and (h, w) == (2 * shape[0], 2 * shape[1]):
        return _down2(stack)
    if order == 1 and (2 * h, 2 * w) == shape:
        return _up2(stack.astype(np.float32, copy=False))
    factors = (1.0, shape[0] / h, shape[1] / w)
    return ndimage.zoom(stack.astype(np.float32, copy=False), factors, order=order, grid_mode=True,
                        mode="nearest")  # fmt: skip


def network_input(unit: np.ndarray) -> np.ndarray:
    """(n, h, w) slices in [0, 1] -> (n, 1, INPUT_SIZE, INPUT_SIZE) float32."""
    return _resize(unit, (INPUT_SIZE, INPUT_SIZE), order=1)[:, None]


class OnnxSegmenter:
    """The ONNX network on onnxruntime (CPU), as a :data:`LogitsFn`.

    ``threads`` is onnxruntime's intra-op thread count (0: one per physical core);
    ``allow_spinning`` lets idle threads busy-wait for the next operator, which is faster on a
    dedicated CPU and slower where the cores are shared (a 2-core worker: numpy, scipy and the
    server run there too), so it is off unless asked for.
    """

    def __init__(
        self,
        model_path: Path = MODEL_PATH,
        threads: int = 0,
        inter_op_threads: int = 1,
        allow_spinning: bool = False,
    ) -> None:
        import onnxruntime as ort  # imported here: only segmentation needs it

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = inter_op_threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if allow_spinning else "0"
        )
        options.log_severity_level = 3
        self.session = ort.InferenceSession(
            str(model_path), options, providers=["CPUExecutionProvider"]
        )
        height, width = self.session.get_inputs()[0].shape[2:]
        #: the model declares free spatial dimensions (inference/training/free_dims.py)
        self.accepts_crops = not isinstance(height, int) and not isinstance(width, int)

    def __call__(self, slices: np.ndarray) -> np.ndarray:
        """Logits (n, 2 or 3, s, s) of network inputs (n, 1, s, s)."""
        return np.asarray(self.session.run(["LOGITS"], {"SLICES": slices})[0])


@dataclass(frozen=True)
class SliceMaps:
    """Boolean masks of (n, h, w) slices at their own size."""

    lesion: np.ndarray
    lung: np.ndarray
    #: consolidation given lesion (three-channel models); None: the model has no class channel
    consolidation: np.ndarray | None


def slice_maps(unit: np.ndarray, logits_fn: LogitsFn) -> SliceMaps:
    """The network's masks for (n, h, w) inputs in [0, 1], resized back to the slices' size."""
    if unit.ndim != 3 or min(unit.shape) < 1:
        raise InvalidVolume(f"expected (n, h, w) slices, got shape {unit.shape}")
    maps: list[np.ndarray] = []
    for start in range(0, unit.shape[0], BATCH_SLICES):
        chunk = unit[start : start + BATCH_SLICES]
        logits = logits_fn(network_input(chunk))
        channels = logits.shape[1]
        size = (unit.shape[1], unit.shape[2])
        back = _resize(logits.reshape(-1, INPUT_SIZE, INPUT_SIZE), size, order=1)
        maps.append(back.reshape(len(chunk), channels, *unit.shape[1:]) > 0)
    stacked = np.concatenate(maps)
    has_classes = stacked.shape[1] > CLASS_CHANNEL
    return SliceMaps(
        stacked[:, LESION_CHANNEL],
        stacked[:, LUNG_CHANNEL],
        stacked[:, CLASS_CHANNEL] if has_classes else None,
    )


def segment_slices(unit: np.ndarray, logits_fn: LogitsFn) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (lesion, lung) masks at the slices' own size for (n, h, w) inputs in [0, 1]."""
    maps = slice_maps(unit, logits_fn)
    return maps.lesion, maps.lung


def lesion_classes(
    lesion: np.ndarray, hu: np.ndarray, consolidation: np.ndarray | None = None
) -> np.ndarray:
    """uint8 classes: 0 background, 1 ground glass, 2 consolidation.

    By density (< -300 HU ground glass) or, where given, by the learned ``consolidation`` mask.
    """
    dense = hu >= GGO_BELOW_HU if consolidation is None else consolidation
    classes = np.zeros(lesion.shape, dtype=np.uint8)
    classes[lesion & ~dense] = 1
    classes[lesion & dense] = 2
    return classes


@dataclass(frozen=True)
class Segmentation:
    """Masks of a volume or a stack of slices, and what was measured on them."""

    lung: np.ndarray  # bool (z, y, x)
    classes: np.ndarray  # uint8 (z, y, x): 0 background, 1 ground glass, 2 consolidation
    biomarkers: Biomarkers
    regional: RegionalBiomarkers

    @property
    def lesion(self) -> np.ndarray:
        """Boolean lesion mask (ground glass or consolidation)."""
        return self.classes > 0


def measure(
    hu: np.ndarray,
    spacing_mm: tuple[float, float, float],
    lung: np.ndarray,
    lesion: np.ndarray,
    consolidation: np.ndarray | None = None,
    threads: int = 1,
) -> Segmentation:
    """Biomarkers of given lung and lesion masks (lesion is clipped to the lung).

    Ground glass vs consolidation by density, or by ``consolidation`` where given.
    """
    lesion = lesion & lung
    classes = lesion_classes(lesion, hu, consolidation)
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    total = int(lung.sum())

    def pct(count: int) -> float:
        return 100.0 * count / total if total else 0.0

    lung_hu = hu[lung]
    ggo, dense = int((classes == 1).sum()), int((classes == 2).sum())
    aerated = int(((lung_hu >= WELL_AERATED_HU[0]) & (lung_hu < WELL_AERATED_HU[1])).sum())
    biomarkers = Biomarkers(
        lung_volume_ml=total * voxel_ml,
        lesion_volume_ml=(ggo + dense) * voxel_ml,
        lesion_percent=pct(ggo + dense),
        ggo_percent=pct(ggo),
        consolidation_percent=pct(dense),
        well_aerated_percent=pct(aerated),
    )
    regional = regional_biomarkers(hu, spacing_mm, lung, lesion, threads)
    return Segmentation(lung, classes, biomarkers, regional)


def _lung_box(box: Box, shape: tuple[int, ...], margin: int) -> tuple[slice, slice, slice]:
    """``box`` grown in-plane by ``margin`` and started on even rows and columns, in ``shape``."""
    rows, cols = (
        slice(max(0, (s.start - margin) // 2 * 2), min(n, s.stop + margin))
        for s, n in ((box[1], shape[1]), (box[2], shape[2]))
    )
    return box[0], rows, cols


def crop_window(present: np.ndarray, offset: int, scale: float, margin: int) -> slice:
    """Network-input rows (or columns) covering ``present``, the lung along one axis.

    ``present`` starts at ``offset`` of the slices' own pixels; ``scale`` is input pixels per
    slice pixel. Grown by ``margin`` input pixels of context, started and ended on multiples of
    ``CROP_MULTIPLE`` so the network's pooling grid is that of the whole slice.
    """
    found = np.flatnonzero(present) + offset
    start = max(0, int(found[0] * scale) - margin) // CROP_MULTIPLE * CROP_MULTIPLE
    stop = -(-min(INPUT_SIZE, int(np.ceil((found[-1] + 1) * scale)) + margin) // CROP_MULTIPLE)
    return slice(start, min(INPUT_SIZE, stop * CROP_MULTIPLE))


def _lesion_in_box(
    hu: np.ndarray,
    box: tuple[slice, slice, slice],
    lung: np.ndarray,
    logits_fn: LogitsFn,
    margin: int,
    threads: int = 1,
) -> np.ndarray:
    """Network lesion mask of ``hu[box]``.

    Whole slices are down-sampled (the network's scale is that of the full field of view), only
    slices with lung are run, only the box is resized back. A network that accepts any input
    size (:attr:`OnnxSegmenter.accepts_crops`) sees only the part of each batch's slices that
    holds lung, plus ``margin`` input pixels of context; outside it there is no lesion.
    ``threads`` batches go through at once (each writes its own slices of the mask).
    """
    z, rows, cols = box
    lesion = np.zeros(lung.shape, dtype=bool)
    size = (hu.shape[1], hu.shape[2])
    crops = isinstance(logits_fn, OnnxSegmenter) and logits_fn.accepts_crops
    todo = np.flatnonzero(lung.any(axis=(1, 2)))

    def batch(picked: np.ndarray) -> None:
        # hu_to_unit's clip before the resize, its linear map after: fewer pixels to map
        window = np.clip(hu[z][picked], int(WINDOW_HU[0]), int(WINDOW_HU[1]))
        unit = (_resize(window, (INPUT_SIZE, INPUT_SIZE), order=1) - WINDOW_HU[0]) / (
            WINDOW_HU[1] - WINDOW_HU[0]
        )
        crop_rows = crop_cols = slice(0, INPUT_SIZE)
        if crops:
            here, scale = lung[picked], (INPUT_SIZE / size[0], INPUT_SIZE / size[1])
            crop_rows = crop_window(here.any(axis=(0, 2)), rows.start, scale[0], margin)
            crop_cols = crop_window(here.any(axis=(0, 1)), cols.start, scale[1], margin)
        logits = np.full((len(picked), INPUT_SIZE, INPUT_SIZE), -1e4, dtype=np.float32)
        logits[:, crop_rows, crop_cols] = logits_fn(
            unit[:, None, crop_rows, crop_cols].astype(np.float32, copy=False)
        )[:, 0]
        lesion[picked] = _resize_box(logits, size, rows, cols) > 0

    batches = [todo[start : start + BATCH_SLICES] for start in range(0, todo.size, BATCH_SLICES)]
    run_each(batch, batches, threads)
    return lesion


def _resize_box(low: np.ndarray, size: tuple[int, int], rows: slice, cols: slice) -> np.ndarray:
    """``_resize(low, size)[:, rows, cols]``, computing only the box for exact 2x upsampling.

    Bilinear 2x needs one low-resolution neighbour on each side, so a crop with a one-pixel
    margin gives the same values inside the box as the whole slice.
    """
    n, h, w = low.shape
    if (2 * h, 2 * w) != size:
        return _resize(low, size, order=1)[:, rows, cols]
    y0, x0 = max(rows.start // 2 - 1, 0), max(cols.start // 2 - 1, 0)
    y1, x1 = min((rows.stop + 1) // 2 + 1, h), min((cols.stop + 1) // 2 + 1, w)
    up = _up2(low[:, y0:y1, x0:x1].astype(np.float32, copy=False))
    return up[:, rows.start - 2 * y0 : rows.stop - 2 * y0, cols.start - 2 * x0 : cols.stop - 2 * x0]


def segment_volume(
    hu: np.ndarray, spacing_mm: tuple[float, float, float], logits_fn: LogitsFn, threads: int = 1
) -> Segmentation:
    """Segment a (z, y, x) HU volume: classical lung mask, learned lesions inside it.

    The lung mask is :func:`inference.lungmask.lung_mask` (HU threshold) closed and filled so
    that dense lesions at the pleura count as lung; the network's lesions outside it are
    dropped. Denser-than-consolidation voxels (> +100 HU: bone, contrast) are never lesion.

    Everything after the lung mask runs in the lung's bounding box (slices without lung skip
    the network): the same masks and biomarkers as on the whole volume, for a fraction of the
    work (``tests/unit/inference/test_segmentation.py`` holds the two to each other).
    ``threads``: z ranges and network batches computed at once (:mod:`inference.slabs`; the
    same result). With more than one, give the network one intra-op thread per batch.
    """
    spacing = check_volume(hu, spacing_mm)
    found = lung_mask_in_box(hu, spacing, threads)
    if found is None:
        empty = np.zeros(hu.shape, dtype=bool)
        return measure(hu, spacing, empty, empty)
    radius = max(1, round(3.0 / min(spacing[1:])))
    box = _lung_box(found[1], hu.shape, margin=radius + 2)
    lung = np.zeros(hu[box].shape, dtype=bool)
    inner = tuple(
        slice(f.start - b.start, f.stop - b.start) for f, b in zip(found[1], box, strict=True)
    )
    lung[inner] = found[0]
    lung = close_and_fill(lung, radius, threads)
    lesion = _lesion_in_box(hu, box, lung, logits_fn, CROP_MARGIN, threads)
    lesion &= hu[box] <= CONSOLIDATION_HU[1]
    cropped = measure(hu[box], spacing, lung, lesion, threads=threads)
    classes = np.zeros(hu.shape, dtype=np.uint8)
    classes[box] = cropped.classes
    full_lung = np.zeros(hu.shape, dtype=bool)
    full_lung[box] = cropped.lung
    return Segmentation(full_lung, classes, cropped.biomarkers, cropped.regional)


def segment_images(unit: np.ndarray, logits_fn: LogitsFn) -> Segmentation:
    """Segment 8-bit-derived 2-D slices (n, h, w) in [0, 1]; lung mask and classes learned.

    Volumes are per slice at a nominal 1 x 1 x 1 mm voxel (the pixel size of an image file is
    unknown), so the mL values are pixel counts / 1000: read the percentages.
    """
    maps = slice_maps(unit, logits_fn)
    return measure(unit_to_hu(unit), (1.0, 1.0, 1.0), maps.lung, maps.lesion, maps.consolidation)
