"""``ctriage``: the one command that fronts everything (services, demo, worker, replay, models).

This module only creates the application and mounts the command modules of :mod:`streams.cli`:
groups with ``add_typer``, single commands with ``app.command``.
"""

from __future__ import annotations

import typer

from streams.cli import (
    capacity,
    cohort,
    dashboards,
    demo,
    dlq,
    fhir,
    patient,
    quantify,
    risk,
    services,
    thresholds,
    worker,
)

app = typer.Typer(
    name="ctriage",
    help="Streaming triage of viral pneumonia on chest CT (Kafka, Triton, FHIR, XGBoost).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

app.command("train")(risk.train)
app.command("worker")(worker.worker)
app.command("topics")(worker.topics)
app.command("replay")(worker.replay_command)
app.command("ingest")(worker.ingest_command)
app.command("receive")(worker.receive_command)
app.command("poll-dicomweb")(worker.poll_dicomweb_command)
app.command("ingest-fhir")(fhir.ingest_fhir_command)
app.command("fhir-endpoint")(fhir.fhir_endpoint_command)
app.command("admin-api")(thresholds.admin_api)
app.command("demo")(demo.demo)

app.add_typer(services.app, name="services", help="Local Kafka broker and Triton server.")
app.add_typer(cohort.app, name="cohort", help="Synthetic cohorts; the treatment-response export.")
app.add_typer(dashboards.app, name="dashboards", help="Grafana dashboards as code.")
app.add_typer(quantify.app, name="quantify", help="Quantify lesions on a CT series.")
app.add_typer(capacity.app, name="capacity")
app.add_typer(risk.app, name="risk")
app.add_typer(thresholds.app, name="thresholds")
app.add_typer(patient.app, name="patient", help="One patient's CT studies over time.")
app.add_typer(dlq.app, name="dlq", help="Dead letters: replay them once the cause is fixed.")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
