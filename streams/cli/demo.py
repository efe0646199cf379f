"""``ctriage demo``: real services, a synthetic cohort replayed, alerts and forecasts on screen.

A plain function; :mod:`streams.cli.root` registers it. The pieces are in :mod:`streams.demo`.
"""

from __future__ import annotations

import logging
import signal
from typing import TYPE_CHECKING, Annotated

import psutil
import typer

from streams.cli.common import configure_logging
from streams.settings import Settings, load_settings

if TYPE_CHECKING:
    from pathlib import Path

    from rich.console import Console

    from deploy import LocalServices
    from streams.demo import DemoOptions, OutputCollector, WorkerProcess
    from streams.sources.replay import ReplayReport


def demo(
    patients: Annotated[int, typer.Option(help="Synthetic patients to replay.")] = 30,
    seed: Annotated[int, typer.Option(help="Cohort seed.")] = 7,
    speed: Annotated[float, typer.Option(help="Clinical seconds per wall second.")] = 3600.0,
    matrix: Annotated[int, typer.Option(help="CT phantom matrix (pixels per side).")] = 256,
    slices: Annotated[int, typer.Option(help="CT phantom slices.")] = 64,
    timeout_s: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 900.0,
    keep_services: Annotated[bool, typer.Option(help="Leave Kafka and Triton running.")] = False,
    lesion_model: Annotated[
        str,
        typer.Option(
            help="lesion_unet (the worker's default, trained on real CT; reads the phantoms' "
            "lesion volume within 14 % on average at matrix 256), lesion_unet_large (two "
            "networks, for GPU servers) or lesion_threshold (the transparent HU-window baseline)."
        ),
    ] = "lesion_unet",
) -> None:
    """Start Kafka + Triton + the worker, replay a synthetic cohort, show alerts and forecasts."""
    from inference import MODELS
    from streams import demo as d
    from streams.demo import screen

    if lesion_model not in MODELS:
        typer.echo(f"error: --lesion-model is one of {', '.join(MODELS)}", err=True)
        raise typer.Exit(code=2)
    configure_logging("warning")
    _interrupt_on_signals()
    console = screen.make_console()
    options = d.DemoOptions(patients, seed, speed, matrix, slices, timeout_s)
    settings = d.demo_settings(load_settings(), lesion_model)
    services = None
    worker_process = d.WorkerProcess(settings)
    peak_rss: dict[str, float] = {}
    try:
        with console.status(
            "Starting Kafka, Triton, PostgreSQL and Prometheus "
            "(the first run resolves Kafka with Maven)..."
        ):
            services = d.start_services(settings)
        console.print(
            "[green]✓[/] Kafka, Triton, PostgreSQL (store) and Prometheus "
            f"({services.prometheus.url}) are up"
        )
        cohort_dir = _cohort_and_worker(console, settings, options, worker_process)
        processes = {"worker": worker_process.process.pid if worker_process.process else None}
        processes.update({s.name.value: s.pid for s in services.status()})
        report, collector, elapsed_s = _replay(
            console, settings, cohort_dir, options, processes, peak_rss
        )
        _print_results(console, report, collector, elapsed_s, peak_rss, cohort_dir, services)
    except d.DemoError as e:
        console.print(f"[red]demo failed:[/] {e}")
        raise typer.Exit(1) from e
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; stopping services[/]")
        raise typer.Exit(130) from None
    finally:
        # an interrupted replay's producer thread may still be connected: its reconnect errors
        # while the broker stops are expected, not news
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
        worker_process.stop()
        if services is not None and not keep_services:
            services.down()
            console.print("[green]✓[/] worker, Kafka, Triton, PostgreSQL and Prometheus stopped")


def _cohort_and_worker(
    console: Console, settings: Settings, options: DemoOptions, worker_process: WorkerProcess
) -> Path:
    """Generate (or reuse) the synthetic cohort, then start the worker; the cohort's folder."""
    from streams import demo as d

    with console.status(f"Generating a synthetic cohort of {options.patients} patients..."):
        cohort_dir = d.cohort_for(settings, options)
    console.print(f"[green]✓[/] synthetic cohort in {cohort_dir}")
    with console.status("Starting the stream worker..."):
        worker_process.start()
    console.print(
        f"[green]✓[/] worker joined its consumer group (lesion model "
        f"{settings.triton.model_name}); replaying\n"
    )
    return cohort_dir


def _replay(
    console: Console,
    settings: Settings,
    cohort_dir: Path,
    options: DemoOptions,
    processes: dict[str, int | None],
    peak_rss: dict[str, float],
) -> tuple[ReplayReport, OutputCollector, float]:
    """Replay the cohort with a progress bar, alerts and dead letters printed as they come."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from streams import demo as d
    from streams.demo import screen

    with Progress(
        TextColumn("[bold]replay[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("studies scored or rejected"),
        console=console,
    ) as progress:
        task = progress.add_task("replay", total=options.patients)

        def watch(collector: d.OutputCollector) -> None:
            collector.on_alert = lambda a: progress.console.print(screen.alert_line(a))
            collector.on_dead_letter = lambda x: progress.console.print(screen.dead_letter_line(x))

        def on_poll(outcome: d.ReplayOutcome, report: object) -> None:
            done = len(set(outcome.risks) | outcome.rejected_studies())
            progress.update(task, completed=done)
            _sample_rss(processes, peak_rss)

        return d.run_pipeline(settings, cohort_dir, options, watch=watch, on_poll=on_poll)


def _print_results(
    console: Console,
    report: ReplayReport,
    collector: OutputCollector,
    elapsed_s: float,
    peak_rss: dict[str, float],
    cohort_dir: Path,
    services: LocalServices,
) -> None:
    """The summary, the forecasts, the synthetic alert-vs-outcome match and the monitoring."""
    from streams import demo as d
    from streams.demo import screen

    outcome = collector.outcome
    collector.close()
    console.print()
    console.print(
        screen.summary_table(
            studies=report.studies,
            scored=len(outcome.risks),
            rejected=len(outcome.rejected_studies()),
            alerts=len(outcome.alerts),
            elapsed_s=elapsed_s,
            latency=d.latency_summary(list(outcome.first_risks.values())),
            peak_rss_mb=peak_rss,
        )
    )
    if outcome.forecast is not None:
        console.print(screen.forecast_table(outcome.forecast))
        ventilators = screen.ventilator_table(outcome.forecast)
        console.print(
            ventilators
            if ventilators is not None
            else "[dim]no ventilator forecast: the unit's ventilator count is unknown[/]"
        )
    match = d.synthetic_match(outcome, d.simulated_ventilation(cohort_dir))
    console.print(screen.synthetic_table(match))
    console.print(screen.monitoring_line(d.monitoring_snapshot(services.prometheus)))


def _interrupt_on_signals() -> None:
    """Ctrl-C and SIGTERM both end the demo through its clean-up path (services stopped).

    A shell that starts a job in the background makes it ignore SIGINT; the demo wants it back.
    """

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)


def _sample_rss(processes: dict[str, int | None], peak: dict[str, float]) -> None:
    for name, pid in processes.items():
        if pid is None:
            continue
        try:
            process = psutil.Process(pid)
            # Triton's Python-backend models run in stub child processes: count them too.
            family = [process, *process.children(recursive=True)]
            rss = sum(p.memory_info().rss for p in family) / 2**20
        except psutil.Error:
            continue
        peak[name] = max(peak.get(name, 0.0), rss)
