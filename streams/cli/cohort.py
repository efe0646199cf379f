"""``ctriage cohort``: generate synthetic cohorts (FHIR + DICOM + outcomes)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from triage.cohort import CohortError, generate_cohort, load_outcomes

app = typer.Typer(no_args_is_help=True, help="Synthetic cohorts (FHIR + DICOM + outcomes).")


@app.callback()
def cohort() -> None:
    """Synthetic cohorts: SYNTHETIC data that prove the plumbing, not clinical validity."""


@app.command()
def generate(
    out: Annotated[Path, typer.Argument(help="Output folder (created; must be empty).")],
    patients: Annotated[int, typer.Option("--patients", "-n", help="Number of CT studies.")] = 30,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same cohort).")] = 0,
    matrix: Annotated[int, typer.Option(help="In-plane matrix of the CT phantoms.")] = 128,
    slices: Annotated[int, typer.Option(help="Slices per CT series.")] = 64,
    hospital: Annotated[str, typer.Option(help="Hospital name in headers and ids.")] = (
        "demo-hospital"
    ),
    icu_occupants: Annotated[
        int, typer.Option(help="Patients already in the ICU (census bundle).")
    ] = 6,
    window_h: Annotated[float, typer.Option(help="Hours over which CT studies arrive.")] = 48.0,
    follow_up_share: Annotated[
        float, typer.Option(help="Share of patients with a follow-up CT 2-5 days later (0-1).")
    ] = 0.0,
) -> None:
    """Write a SYNTHETIC cohort: CT phantoms, FHIR bundles, ICU census, manifest, outcomes."""
    started = time.monotonic()
    try:
        manifest = generate_cohort(
            out,
            n_patients=patients,
            seed=seed,
            matrix=matrix,
            slices=slices,
            hospital=hospital,
            icu_occupants=icu_occupants,
            window_h=window_h,
            follow_up_share=follow_up_share,
        )
    except CohortError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=2) from e
    elapsed_s = time.monotonic() - started
    rows = load_outcomes(out)
    size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6
    ventilated = sum(r.ventilation_14d for r in rows)
    icu = sum(r.icu_admission for r in rows)
    typer.echo(
        f"SYNTHETIC cohort: {len(manifest.studies)} studies ({slices}x{matrix}x{matrix}) in {out}\n"
        f"  ventilated within 14 d: {ventilated}, ICU admissions: {icu}\n"
        f"  {elapsed_s:.1f} s, {size_mb:.1f} MB on disk"
    )
