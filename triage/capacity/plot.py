"""A picture for bed managers: history, forecast fan (80/95%) and capacity, as a PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from triage.capacity.backtest import SeriesForecast  # noqa: E402
from triage.capacity.series import DailySeries  # noqa: E402
from triage.capacity.wis import interval_index  # noqa: E402


def plot_forecast(
    series: DailySeries,
    forecast: SeriesForecast,
    out: Path,
    capacity: float | None = None,
    history_days: int = 90,
    label: str = "",
) -> Path:
    """Write the PNG to ``out`` and return it; observed days after the origin are drawn too."""
    origin = int(series.dates.searchsorted(forecast.origin.astype("datetime64[ns]")))
    lo = max(0, origin - history_days)
    hi = min(series.dates.size, origin + len(forecast.dates) + 1)
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    ax.plot(
        series.dates[lo : origin + 1],
        series.occupancy[lo : origin + 1],
        color="black",
        lw=1.5,
        label="ICU occupancy (observed)",
    )
    if hi > origin + 1:
        ax.plot(
            series.dates[origin + 1 : hi],
            series.occupancy[origin + 1 : hi],
            color="black",
            lw=1.0,
            ls=":",
            label="observed after the forecast",
        )
    days = np.array(forecast.dates, dtype="datetime64[D]")
    if not np.isnan(forecast.bands).all():
        lo95, hi95 = interval_index(0.95)
        lo80, hi80 = interval_index(0.8)
        ax.fill_between(
            days,
            forecast.bands[:, lo95],
            forecast.bands[:, hi95],
            color="tab:blue",
            alpha=0.18,
            lw=0,
            label="95% interval",
        )
        ax.fill_between(
            days,
            forecast.bands[:, lo80],
            forecast.bands[:, hi80],
            color="tab:blue",
            alpha=0.35,
            lw=0,
            label="80% interval",
        )
    ax.plot(days, forecast.expected, color="tab:blue", lw=2, label="forecast (expected)")
    capacity_line = capacity
    if capacity_line is None and not np.isnan(series.capacity[lo:hi]).all():
        capacity_line = float(np.nanmax(series.capacity[lo:hi]))
    if capacity_line is not None:
        ax.axhline(
            capacity_line, color="tab:red", ls="--", lw=1.2, label=f"capacity ({capacity_line:.0f})"
        )
    ax.axvline(series.dates[origin], color="grey", lw=0.8)
    ax.set_title(f"ICU occupancy forecast, {series.name}, from {forecast.origin} {label}".strip())
    ax.set_ylabel("beds occupied")
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(mdates.AutoDateLocator()))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
