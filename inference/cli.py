"""``ctriage quantify PATH``: load a DICOM CT series and print its lung and lesion biomarkers.

``app`` has no sub-commands: its callback is the command, so ``add_typer(app, name="quantify")``
gives ``ctriage quantify PATH [--local] [--url HOST:PORT] [--out FILE]``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from inference.biomarkers import Biomarkers, quantify_threshold
from inference.client import DEFAULT_MODEL, TritonQuantifier
from inference.exceptions import SeriesRejected, TritonError
from inference.volume import CtVolume, load_series

#: The local Triton of ``ctriage services`` (deploy.triton.TritonServer's default port).
DEFAULT_TRITON_URL = "127.0.0.1:18000"
#: UCUM units of the biomarkers.
UNITS = {
    "lung_volume_ml": "mL",
    "lesion_volume_ml": "mL",
    "lesion_percent": "%",
    "ggo_percent": "%",
    "consolidation_percent": "%",
    "well_aerated_percent": "%",
}
EXIT_REJECTED = 2
EXIT_TRITON = 3

app = typer.Typer(
    help="Quantify lung lesions on a DICOM CT series (threshold method).",
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
        "units": UNITS,
        "timings_s": {k: round(v, 3) for k, v in timings_s.items()},
    }


def _table(result: dict[str, Any]) -> Table:
    table = Table(
        title=f"Lung and lesion burden ({result['method']})",
        caption=f"series {result['series_uid']}",
    )
    table.add_column("biomarker")
    table.add_column("value", justify="right")
    table.add_column("unit (UCUM)")
    for name, value in result["biomarkers"].items():
        table.add_row(name, f"{value:.2f}", UNITS[name])
    return table


@app.callback(invoke_without_command=True)
def quantify(
    path: Annotated[Path, typer.Argument(help="Folder of one DICOM CT series, or a study folder.")],
    local: Annotated[
        bool, typer.Option("--local", help="Quantify in this process instead of on Triton.")
    ] = False,
    url: Annotated[str, typer.Option(help="Triton HTTP address, HOST:PORT.")] = DEFAULT_TRITON_URL,
    model: Annotated[str, typer.Option(help="Triton model name.")] = DEFAULT_MODEL,
    timeout_s: Annotated[float, typer.Option(help="Triton network timeout, seconds.")] = 60.0,
    out: Annotated[Path | None, typer.Option(help="Write the result as JSON to this file.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress.")] = False,
) -> None:
    """Load the CT series at PATH and print its lung and lesion biomarkers."""
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    console = Console()
    started = time.perf_counter()
    try:
        volume = load_series(path)
    except SeriesRejected as e:
        console.print(f"[red]series rejected[/red] ({e.reason.value}): {e.detail}")
        raise typer.Exit(EXIT_REJECTED) from e
    loaded = time.perf_counter()
    version: str | None = None
    if local:
        biomarkers, method = quantify_threshold(volume.hu, volume.spacing_mm), "local"
        model, version = "quantify_threshold", None
    else:
        try:
            with TritonQuantifier(url, model_name=model, timeout_s=timeout_s) as quantifier:
                biomarkers = quantifier.quantify(volume)
                version = quantifier.model_version()
        except TritonError as e:
            console.print(f"[red]{type(e).__name__}[/red]: {e}")
            raise typer.Exit(EXIT_TRITON) from e
        method = f"{model}@{url}"
    done = time.perf_counter()
    timings_s = {"load": loaded - started, "quantify": done - loaded}
    result = report(path, volume, biomarkers, method, model, version, timings_s)
    console.print(_table(result))
    console.print(f"load {timings_s['load']:.2f} s, quantify {timings_s['quantify']:.2f} s")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        console.print(f"wrote {out}")
