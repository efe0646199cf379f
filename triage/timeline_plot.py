"""A patient's lung burden and CT severity over time, with worsening and treatments marked (PNG)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

from triage.timeline import TimelinePoint  # noqa: E402


def plot_timeline(
    points: Sequence[TimelinePoint],
    out: Path,
    *,
    worsening: Collection[str] = (),
    treatments: Sequence[tuple[datetime, str]] = (),
    title: str = "",
) -> Path:
    """Write the PNG to ``out``: lesion / GGO / consolidation % (left), CT severity (right)."""
    times = [float(mdates.date2num(p.at)) for p in points]
    fig, ax = plt.subplots(figsize=(8, 4), dpi=110)
    ax.plot(times, [p.lesion_percent for p in points], "o-", color="black", label="lesion %")
    ax.plot(times, [p.ggo_percent for p in points], "--", color="tab:blue", label="ground glass %")
    ax.plot(
        times, [p.consolidation_percent for p in points], ":", color="tab:red",
        label="consolidation %",
    )  # fmt: skip
    for when, p in zip(times, points, strict=True):
        if p.study_uid in worsening:
            ax.annotate("worsening", (when, p.lesion_percent), textcoords="offset points",
                        xytext=(0, 8), ha="center", color="tab:purple")  # fmt: skip
    for at, name in treatments:
        x = float(mdates.date2num(at))
        ax.axvline(x, color="tab:green", alpha=0.5)
        ax.text(x, ax.get_ylim()[1] * 0.95, name, rotation=90, va="top", color="tab:green")
    ax.set_ylabel("% of lung")
    ax.set_ylim(bottom=0)
    scored = [
        (when, p.ct_severity_score)
        for when, p in zip(times, points, strict=True)
        if p.ct_severity_score is not None
    ]
    if scored:
        right = ax.twinx()
        right.plot(*zip(*scored, strict=True), "s-", color="tab:orange", label="CT severity")
        right.set_ylim(0, 30)
        right.set_ylabel("CT severity score (0-30)")
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
    fig.autofmt_xdate()
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title or "lung burden over time")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
