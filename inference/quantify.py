"""Quantify a CT series or 2-D slice images, and write the results (JSON, masks, DICOM SEG/SR).

The plain-function core of ``ctriage quantify`` (:mod:`streams.cli.quantify` only parses options
and prints). A series runs on Triton (``lesion_unet`` or the ``lesion_threshold`` baseline) or in
this process (``local=True``); images need the learned model. Results are JSON-ready dicts with
no patient identifiers.

Outputs: for a series ``DIR/<folder>.json`` (biomarkers), ``DIR/<folder>.seg.dcm`` (DICOM SEG,
lung and lesion) and ``DIR/<folder>.sr.dcm`` (measurement SR), or one ``FILE.json``; for each
image ``DIR/<stem>.json``, ``DIR/<stem>.lesion.png`` (0 / 255, the image's size) and
``DIR/<stem>.classes.png`` (0 background, 1 ground glass, 2 consolidation).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from inference.biomarkers import Biomarkers, quantify_threshold, threshold_masks
from inference.chest import check_chest
from inference.client import (
    LARGE_MODEL,
    THRESHOLD_MODEL,
    UNET_MODEL,
    TritonQuantifier,
    TritonSlices,
)
from inference.regional import UNITS as REGIONAL_UNITS
from inference.regional import RegionalBiomarkers
from inference.rsna import rsna_category
from inference.segmentation import (
    LARGE_MODEL_PATH,
    MODEL_PATH,
    LogitsFn,
    OnnxSegmenter,
    segment_images,
    segment_volume,
)
from inference.volume import CtVolume, load_series

#: The study models a series can be quantified with (the compact learned one first: the default).
MODELS = (UNET_MODEL, LARGE_MODEL, THRESHOLD_MODEL)
#: The network file each learned study model runs (``--local`` reads it in this process).
NETWORKS = {UNET_MODEL: MODEL_PATH, LARGE_MODEL: LARGE_MODEL_PATH}
#: UCUM units of the biomarkers.
UNITS = {
    "lung_volume_ml": "mL",
    "lesion_volume_ml": "mL",
    "lesion_percent": "%",
    "ggo_percent": "%",
    "consolidation_percent": "%",
    "well_aerated_percent": "%",
} | REGIONAL_UNITS
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class SeriesQuantification:
    """One quantified series: its volume, the JSON-ready result and the masks (z, y, x)."""

    volume: CtVolume
    result: dict[str, Any]
    lung: np.ndarray
    lesion: np.ndarray


def report(
    path: Path,
    volume: CtVolume,
    biomarkers: Biomarkers,
    method: str,
    model: str,
    model_version: str | None,
    timings_s: dict[str, float],
    regional: RegionalBiomarkers | None = None,
) -> dict[str, Any]:
    """JSON-ready description of one quantification (no patient identifiers)."""
    return {
        "path": str(path),
        "study_uid": volume.study_uid,
        "series_uid": volume.series_uid,
        "shape_zyx": list(volume.hu.shape),
        "spacing_mm_zyx": list(volume.spacing_mm),
        "method": method,
        "model": model,
        "model_version": model_version,
        "biomarkers": biomarkers.as_dict(),
        "regional": regional.as_dict() if regional is not None else None,
        **category_of(biomarkers, regional),
        "units": UNITS,
        "timings_s": {k: round(v, 3) for k, v in timings_s.items()},
    }


def category_of(biomarkers: Biomarkers, regional: RegionalBiomarkers | None) -> dict[str, Any]:
    """The RSNA consensus category fields of a result (:mod:`inference.rsna`)."""
    return rsna_category(
        biomarkers.as_dict(), regional.as_dict() if regional is not None else None
    ).as_dict()


def image_files(path: Path) -> list[Path] | None:
    """The PNG/JPG images PATH names (a file or a folder holding images), else None."""
    if path.is_file():
        return [path] if path.suffix.lower() in IMAGE_SUFFIXES else None
    if not path.is_dir():
        return None
    images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return images or None


def logits_fn(local: bool, url: str, timeout_s: float, model: str = UNET_MODEL) -> LogitsFn:
    """The slice segmenter of a learned ``model``: in this process (``local``) or on Triton.

    Triton serves slices for the compact network only (``lesion_unet_onnx``); the large
    variant's slices run in this process, and asking for them on Triton is a ValueError.
    """
    if local:
        return OnnxSegmenter(NETWORKS[model])
    if model != UNET_MODEL:
        raise ValueError(f"Triton serves slice images for {UNET_MODEL} only: add --local")
    return TritonSlices(url, timeout_s=timeout_s)


def write_json(file: Path, result: dict[str, Any]) -> None:
    """Write one result as indented JSON (parent folders created)."""
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


def quantify_images(
    files: list[Path], out: Path | None, logits: LogitsFn, method: str, model: str = UNET_MODEL
) -> list[dict[str, Any]]:
    """Segment each image; write its masks and JSON under ``out`` when given."""
    results = []
    for file in files:
        with Image.open(file) as image:
            gray = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
        started = time.perf_counter()
        seg = segment_images(gray[None], logits)
        result = {
            "path": str(file),
            "shape_yx": list(gray.shape),
            "method": method,
            "model": model,
            "note": "pixel size unknown: volumes are pixel counts / 1000 (1 mm^3 pixels)",
            "biomarkers": seg.biomarkers.as_dict(),
            "regional": seg.regional.as_dict(),
            **category_of(seg.biomarkers, seg.regional),
            "units": UNITS,
            "timings_s": {"segment": round(time.perf_counter() - started, 3)},
        }
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            Image.fromarray((seg.lesion[0] * 255).astype(np.uint8)).save(
                out / f"{file.stem}.lesion.png"
            )
            Image.fromarray(seg.classes[0]).save(out / f"{file.stem}.classes.png")
            write_json(out / f"{file.stem}.json", result)
        results.append(result)
    return results


def quantify_series(
    path: Path, model: str, method: str, *, local: bool, url: str, timeout_s: float
) -> SeriesQuantification:
    """Load the series at ``path`` and quantify it with ``model`` (timings in the result).

    Raises the series' typed rejections (:class:`inference.exceptions.SeriesRejected`,
    :class:`~inference.exceptions.InvalidVolume`) and Triton's errors unchanged; a volume
    without lungs (not a chest CT) is refused as ``no_lung_found`` before it is quantified.
    """
    started = time.perf_counter()
    volume = load_series(path)
    check_chest(volume.hu, volume.spacing_mm)
    loaded = time.perf_counter()
    biomarkers, regional, lung, lesion, version = _series_masks(
        volume, model, local, url, timeout_s
    )
    timings_s = {"load": loaded - started, "quantify": time.perf_counter() - loaded}
    result = report(path, volume, biomarkers, method, model, version, timings_s, regional)
    return SeriesQuantification(volume, result, lung, lesion)


def _series_masks(
    volume: CtVolume, model: str, local: bool, url: str, timeout_s: float
) -> tuple[Biomarkers, RegionalBiomarkers | None, np.ndarray, np.ndarray, str | None]:
    """(biomarkers, regional, lung, lesion, served version) of a series by ``model``."""
    if local and model == THRESHOLD_MODEL:
        lung, lesion = threshold_masks(volume.hu, volume.spacing_mm)
        return quantify_threshold(volume.hu, volume.spacing_mm), None, lung, lesion, None
    if local:
        # one network batch per core at once, one onnxruntime thread each (inference/slabs.py)
        cores = len(os.sched_getaffinity(0))
        network = OnnxSegmenter(NETWORKS[model], threads=1)
        seg = segment_volume(volume.hu, volume.spacing_mm, network, cores)
        return seg.biomarkers, seg.regional, seg.lung, seg.lesion, None
    with TritonQuantifier(url, model_name=model, timeout_s=timeout_s) as quantifier:
        if model == THRESHOLD_MODEL:
            biomarkers = quantifier.quantify(volume)
            lung, lesion = threshold_masks(volume.hu, volume.spacing_mm)
            return biomarkers, None, lung, lesion, quantifier.model_version()
        study = quantifier.quantify_study(volume.hu, volume.spacing_mm, masks=True)
        # masks=True: quantify_study has checked that both masks came back
        lung = np.asarray(study.lung, dtype=bool)
        lesion = np.asarray(study.classes) > 0
        return study.biomarkers, study.regional, lung, lesion, quantifier.model_version()


def write_series(out: Path, series: SeriesQuantification) -> None:
    """Write ``out/<folder>.json`` and, when the source files are known, the DICOM SEG and SR."""
    from inference.dicom_results import build_results, source_headers

    volume, result = series.volume, series.result
    stem = volume.source_files[0].parent.name if volume.source_files else "series"
    write_json(out / f"{stem}.json", result)
    if volume.source_files:
        objects = build_results(
            source_headers(volume.source_files),
            series.lung,
            series.lesion,
            result["biomarkers"],
            result["model"],
            str(result["model_version"] or "local"),
            uid_seed=f"{volume.series_uid}/{result['model']}",
            rsna=(result["rsna_category"], result["rsna_findings"]),
        )
        objects.segmentation.save_as(out / f"{stem}.seg.dcm")
        objects.report.save_as(out / f"{stem}.sr.dcm")
