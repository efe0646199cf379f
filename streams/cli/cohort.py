"""``ctriage cohort``: generate synthetic cohorts; export the store's studies with treatments."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from triage.cohort import CohortError, generate_cohort, load_outcomes

app = typer.Typer(
    no_args_is_help=True,
    help="Synthetic cohorts (FHIR + DICOM + outcomes); the treatment-response export.",
)


@app.callback()
def cohort() -> None:
    """Synthetic cohorts (SYNTHETIC: they prove the plumbing) and the store's cohort export."""


@app.command()
def export(
    out: Annotated[Path, typer.Option("--out", help="FILE.parquet or FILE.csv to write.")],
    store_url: Annotated[
        str | None, typer.Option(help="Reporting store URL (default: CTRIAGE_STORE__URL).")
    ] = None,
) -> None:
    """One row per quantified study: burden, change since prior/first CT, treatments before it.

    Pseudonymised (keyed pseudonyms, study numbers, no UIDs, names or birth dates). Descriptive:
    no causal claim (treated patients differ from untreated ones).
    """
    from dashboards import export_tables, make_engine
    from streams.settings import load_settings
    from triage.export import NOT_CAUSAL, export_rows, write_export

    if out.suffix.lower() not in {".parquet", ".csv"}:
        typer.echo(f"error: --out must end in .parquet or .csv, not {out.name!r}", err=True)
        raise typer.Exit(code=2)
    engine = make_engine(store_url or load_settings().store.url)
    try:
        with engine.connect() as conn:
            studies, treatments = export_tables(conn)
    finally:
        engine.dispose()
    rows = export_rows(studies, treatments)
    write_export(rows, out)
    patients = len({r["pseudonym"] for r in rows})
    treated = sum(1 for r in rows if r["treatments_before"])
    typer.echo(
        f"{len(rows)} studies of {patients} patients ({treated} after a treatment) -> {out}\n"
        f"{NOT_CAUSAL}"
    )


@app.command()
def generate(
    out: Annotated[Path, typer.Argument(help="Output folder (created; must be empty).")],
    patients: Annotated[int, typer.Option("--patients", "-n", help="Number of CT studies.")] = 30,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same cohort).")] = 0,
    matrix: Annotated[int, typer.Option(help="In-plane matrix of the CT phantoms.")] = 256,
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
