"""ICU and ventilator capacity forecasting.

- ``census``: patient-level forecast of one hospital unit (occupants, pipeline, arrivals).
- ``arrivals``: admissions forecast (damped exponential growth) from recent admissions.
- ``series``: daily census series and the stock-flow forecast on them.
- ``chime``: the CHIME model (Penn Medicine), re-implemented as a baseline.
- ``backtest``: rolling-origin backtest against baselines; ``dpc``: the Italian series.
- ``plot``: a PNG for people.
"""

from triage.capacity.census import (
    CapacityForecast,
    DayForecast,
    LengthOfStay,
    Occupant,
    PipelinePatient,
    forecast_icu,
    occupants_from_census,
    poisson_binomial,
    poisson_lognormal,
    quantile,
)

__all__ = [
    "CapacityForecast",
    "DayForecast",
    "LengthOfStay",
    "Occupant",
    "PipelinePatient",
    "forecast_icu",
    "occupants_from_census",
    "poisson_binomial",
    "poisson_lognormal",
    "quantile",
]
