"""``ctriage quantify PATH``: lung and lesion biomarkers (and masks) of a CT series or 2-D images.

``app`` has no sub-commands: its callback is the command, so ``add_typer(app, name="quantify")``
gives ``ctriage quantify PATH [--local] [--model NAME] [--url HOST:PORT] [--out DIR|FILE.json]``.

PATH is a DICOM series (or study) folder, one PNG/JPG image of a lung-windowed axial slice, or a
folder of such images. With ``--out DIR``: for a series ``DIR/<folder>.json`` (biomarkers),
``DIR/<folder>.seg.dcm`` (DICOM SEG, lung and lesion) and ``DIR/<folder>.sr.dcm`` (measurement
SR); for each image ``DIR/<stem>.json``, ``DIR/<stem>.lesion.png`` (0 / 255, the image's size)
and ``DIR/<stem>.classes.png`` (0 background, 1 ground glass, 2 consolidation). ``--out X.json``
writes a series' JSON to that file only.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from PIL import Image
from rich.console import Console
from rich.table import Table

from inference.biomarkers import Biomarkers, quantify_threshold, threshold_masks
from inference.client import THRESHOLD_MODEL, UNET_MODEL, TritonQuantifier, TritonSlices
from inference.exceptions import InvalidVolume, SeriesRejected, TritonError
from inference.regional import UNITS as REGIONAL_UNITS
from inference.regional import RegionalBiomarkers
from inference.segmentation import LogitsFn, OnnxSegmenter, segment_images, segment_volume
from inference.volume import CtVolume, load_series

#: The local Triton of ``ctriage services`` (deploy.triton.TritonServer's default port).
DEFAULT_TRITON_URL = "127.0.0.1:18000"
MODELS = (UNET_MODEL, THRESHOLD_MODEL)
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
EXIT_REJECTED = 2
EXIT_TRITON = 3

app = typer.Typer(
    help="Quantify lung lesions on a DICOM CT series or on 2-D slice images.",
    pretty_exceptions_enable=False,
    # the callback is the command: let options follow PATH as they do after a command
    context_settings={"allow_interspersed_args": True},
    subcommand_metavar="",
)


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
        "units": UNITS,
        "timings_s": {k: round(v, 3) for k, v in timings_s.items()},
    }


def _table(result: dict[str, Any], title: str) -> Table:
    table = Table(title=f"{title} ({result['model']}, {result['method']})")
    table.add_column("biomarker")
    table.add_column("value", justify="right")
    table.add_column("unit (UCUM)")
    values = result["biomarkers"] | (result.get("regional") or {})
    for name, value in values.items():
        table.add_row(name, f"{value:.2f}", UNITS[name])
    return table


def image_files(path: Path) -> list[Path] | None:
    """The PNG/JPG images PATH names (a file or a folder holding images), else None."""
    if path.is_file():
        return [path] if path.suffix.lower() in IMAGE_SUFFIXES else None
    if not path.is_dir():
        return None
    images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return images or None


def _logits_fn(local: bool, url: str, timeout_s: float) -> LogitsFn:
    return OnnxSegmenter() if local else TritonSlices(url, timeout_s=timeout_s)


def _write_json(file: Path, result: dict[str, Any]) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


def quantify_images(
    files: list[Path], out: Path | None, logits_fn: LogitsFn, method: str
) -> list[dict[str, Any]]:
    """Segment each image; write its masks and JSON under ``out`` when given."""
    results = []
    for file in files:
        with Image.open(file) as image:
            gray = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
        started = time.perf_counter()
        seg = segment_images(gray[None], logits_fn)
        result = {
            "path": str(file),
            "shape_yx": list(gray.shape),
            "method": method,
            "model": UNET_MODEL,
            "note": "pixel size unknown: volumes are pixel counts / 1000 (1 mm^3 pixels)",
            "biomarkers": seg.biomarkers.as_dict(),
            "regional": seg.regional.as_dict(),
            "units": UNITS,
            "timings_s": {"segment": round(time.perf_counter() - started, 3)},
        }
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            Image.fromarray((seg.lesion[0] * 255).astype(np.uint8)).save(
                out / f"{file.stem}.lesion.png"
            )
            Image.fromarray(seg.classes[0]).save(out / f"{file.stem}.classes.png")
            _write_json(out / f"{file.stem}.json", result)
        results.append(result)
    return results


def _series_masks(
    volume: CtVolume, model: str, local: bool, url: str, timeout_s: float
) -> tuple[Biomarkers, RegionalBiomarkers | None, np.ndarray, np.ndarray, str | None]:
    """(biomarkers, regional, lung, lesion, served version) of a series by ``model``."""
    if local and model == THRESHOLD_MODEL:
        lung, lesion = threshold_masks(volume.hu, volume.spacing_mm)
        return quantify_threshold(volume.hu, volume.spacing_mm), None, lung, lesion, None
    if local:
        seg = segment_volume(volume.hu, volume.spacing_mm, OnnxSegmenter())
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


def _write_series(out: Path, volume: CtVolume, result: dict[str, Any], lung: np.ndarray,
                  lesion: np.ndarray) -> None:  # fmt: skip
    from inference.dicom_results import build_results, source_headers

    stem = volume.source_files[0].parent.name if volume.source_files else "series"
    _write_json(out / f"{stem}.json", result)
    if volume.source_files:
        objects = build_results(
            source_headers(volume.source_files),
            lung,
            lesion,
            result["biomarkers"],
            result["model"],
            str(result["model_version"] or "local"),
            uid_seed=f"{volume.series_uid}/{result['model']}",
        )
        objects.segmentation.save_as(out / f"{stem}.seg.dcm")
        objects.report.save_as(out / f"{stem}.sr.dcm")


@app.callback(invoke_without_command=True)
def quantify(
    path: Annotated[
        Path,
        typer.Argument(help="DICOM series/study folder, a PNG/JPG slice, or a folder of them."),
    ],
    local: Annotated[
        bool, typer.Option("--local", help="Run in this process instead of on Triton.")
    ] = False,
    url: Annotated[str, typer.Option(help="Triton HTTP address, HOST:PORT.")] = DEFAULT_TRITON_URL,
    model: Annotated[
        str, typer.Option(help=f"Study model: {' or '.join(MODELS)} (threshold baseline).")
    ] = UNET_MODEL,
    timeout_s: Annotated[float, typer.Option(help="Triton network timeout, seconds.")] = 60.0,
    out: Annotated[
        Path | None, typer.Option(help="Output folder (masks + JSON), or FILE.json for a series.")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress.")] = False,
) -> None:
    """Quantify the CT series or slice images at PATH and print their biomarkers."""
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    console = Console()
    if model not in MODELS:
        console.print(f"[red]unknown model[/red] {model!r}: choose {' or '.join(MODELS)}")
        raise typer.Exit(EXIT_REJECTED)
    method = "local" if local else f"{model}@{url}"
    try:
        images = image_files(path)
        if images is not None:
            if model != UNET_MODEL:
                console.print(f"[red]images need the learned model[/red] ({UNET_MODEL})")
                raise typer.Exit(EXIT_REJECTED)
            image_dir = out if out is not None and out.suffix != ".json" else None
            fn = _logits_fn(local, url, timeout_s)
            for result in quantify_images(images, image_dir, fn, method):
                console.print(_table(result, Path(result["path"]).name))
            if image_dir is not None:
                console.print(f"wrote {len(images)} x (json, lesion.png, classes.png) to {out}")
            return
        started = time.perf_counter()
        volume = load_series(path)
        loaded = time.perf_counter()
        biomarkers, regional, lung, lesion, version = _series_masks(
            volume, model, local, url, timeout_s
        )
    except SeriesRejected as e:
        console.print(f"[red]series rejected[/red] ({e.reason.value}): {e.detail}")
        raise typer.Exit(EXIT_REJECTED) from e
    except InvalidVolume as e:
        console.print(f"[red]invalid input[/red]: {e}")
        raise typer.Exit(EXIT_REJECTED) from e
    except TritonError as e:
        console.print(f"[red]{type(e).__name__}[/red]: {e}")
        console.print("start a local server with: ctriage services up --only triton")
        raise typer.Exit(EXIT_TRITON) from e
    done = time.perf_counter()
    timings_s = {"load": loaded - started, "quantify": done - loaded}
    result = report(path, volume, biomarkers, method, model, version, timings_s, regional)
    console.print(_table(result, f"series {volume.series_uid}"))
    console.print(f"load {timings_s['load']:.2f} s, quantify {timings_s['quantify']:.2f} s")
    if out is not None and out.suffix == ".json":
        _write_json(out, result)
        console.print(f"wrote {out}")
    elif out is not None:
        _write_series(out, volume, result, lung, lesion)
        console.print(f"wrote JSON, DICOM SEG and SR to {out}")
