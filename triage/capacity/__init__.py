"""ICU and ventilator capacity forecasting.

- ``census``: patient-level forecast of one hospital unit (occupants, pipeline, arrivals), for
  ICU beds and for ventilators in use (same model, its own length of stay).
- ``locations``: staffed ICU beds and ventilators per unit from FHIR Locations and Devices.
- ``stay``: the lognormal length of ICU stay fitted to a series of occupancy and admissions.
- ``arrivals``: admissions forecast (damped exponential growth) from recent admissions.
- ``series``: daily census series and the stock-flow forecast on them.
- ``chime``: the CHIME model (Penn Medicine), re-implemented as a baseline.
- ``backtest``: rolling-origin backtest against baselines; ``scoring``: its rows (MAE, WIS,
  coverage, width); ``wis``: the weighted interval score; ``selection``: per-series model
  selection by past WIS; ``unit_backtest``: the per-unit ``census`` model on a daily series.
- ``dpc``: the Italian series; ``divi``: the German ICU register.
- ``conformal``: bounded quantile forecasts from past errors known at each origin (no leakage).
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
