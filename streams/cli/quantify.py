"""``ctriage quantify PATH``: lung and lesion biomarkers (and masks) of a CT series or 2-D images.

``app`` has no sub-commands: its callback is the command, so ``add_typer(app, name="quantify")``
gives ``ctriage quantify PATH [--local] [--model NAME] [--url HOST:PORT] [--out DIR|FILE.json]``.

PATH is a DICOM series (or study) folder, one PNG/JPG image of a lung-windowed axial slice, or a
folder of such images. The work and the files written are :mod:`inference.quantify`'s; this
module parses the options, prints the tables and maps errors to exit codes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from inference import (
    MODELS,
    NETWORKS,
    UNET_MODEL,
    UNITS,
    InvalidVolume,
    SeriesRejected,
    TritonError,
    image_files,
    logits_fn,
    quantify_images,
    quantify_series,
    write_json,
    write_series,
)

#: The local Triton of ``ctriage services`` (deploy.triton.TritonServer's default port).
DEFAULT_TRITON_URL = "127.0.0.1:18000"
EXIT_REJECTED = 2
EXIT_TRITON = 3

app = typer.Typer(
    help="Quantify lung lesions on a DICOM CT series or on 2-D slice images.",
    pretty_exceptions_enable=False,
    # the callback is the command: let options follow PATH as they do after a command
    context_settings={"allow_interspersed_args": True},
    subcommand_metavar="",
)


def _table(result: dict[str, Any], title: str) -> Table:
    table = Table(title=f"{title} ({result['model']}, {result['method']})")
    table.add_column("biomarker")
    table.add_column("value", justify="right")
    table.add_column("unit (UCUM)")
    values = result["biomarkers"] | (result.get("regional") or {})
    for name, value in values.items():
        table.add_row(name, f"{value:.2f}", UNITS[name])
    return table


def _category_line(result: dict[str, Any]) -> str:
    """The RSNA consensus category, its deciding findings and the decision-support caveat."""
    deciding = ", ".join(f"{k}={v:g}" for k, v in result["rsna_findings"].items())
    reasons = "; ".join(result["rsna_reasons"])
    return (
        f"RSNA category: [bold]{result['rsna_category']}[/bold] ({reasons}) "
        f"{escape('[' + deciding + ']')}\n"
        f"[dim]{result['rsna_note']}[/dim]"
    )


def _images(
    console: Console,
    images: list[Path],
    out: Path | None,
    model: str,
    method: str,
    segment: tuple[bool, str, float],
) -> None:
    """Quantify slice images (learned models only); print a table per image."""
    if model not in NETWORKS:
        console.print(f"[red]images need a learned model[/red] ({' or '.join(NETWORKS)})")
        raise typer.Exit(EXIT_REJECTED)
    try:
        logits = logits_fn(*segment, model)
    except ValueError as e:
        console.print(f"[red]{e}[/red]")
        raise typer.Exit(EXIT_REJECTED) from e
    image_dir = out if out is not None and out.suffix != ".json" else None
    for result in quantify_images(images, image_dir, logits, method, model):
        console.print(_table(result, Path(result["path"]).name))
    if image_dir is not None:
        console.print(f"wrote {len(images)} x (json, lesion.png, classes.png) to {out}")


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
        str,
        typer.Option(
            help=f"Study model: {', '.join(MODELS)} (compact default, large for GPU servers,"
            " threshold baseline)."
        ),
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
            _images(console, images, out, model, method, (local, url, timeout_s))
            return
        series = quantify_series(path, model, method, local=local, url=url, timeout_s=timeout_s)
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
    result, timings_s = series.result, series.result["timings_s"]
    console.print(_table(result, f"series {series.volume.series_uid}"))
    console.print(_category_line(result))
    console.print(f"load {timings_s['load']:.2f} s, quantify {timings_s['quantify']:.2f} s")
    if out is not None and out.suffix == ".json":
        write_json(out, result)
        console.print(f"wrote {out}")
    elif out is not None:
        write_series(out, series)
        console.print(f"wrote JSON, DICOM SEG and SR to {out}")
