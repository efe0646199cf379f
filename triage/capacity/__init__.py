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

from triage.capacity.backtest import default_models, forecast_at, run_backtest
from triage.capacity.census import (
    ICU_STAY,
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
from triage.capacity.plot import plot_forecast
from triage.capacity.registry import CapacityRegistry, build_registry
from triage.capacity.series import DailySeries, read_daily_csv
from triage.capacity.sources import SeriesSourceValues
from triage.capacity.sources import load as load_source_series
from triage.capacity.sources import population as source_population
from triage.capacity.stay import fit_by_year, fit_length_of_stay, fittable_days, occupancy_rmse
from triage.capacity.unit_census import CensusEvent
from triage.capacity.unit_forecast import CapacityPlanner, UnitForecast

__all__ = [
    "CapacityForecast",
    "CapacityPlanner",
    "CapacityRegistry",
    "CensusEvent",
    "DailySeries",
    "DayForecast",
    "ICU_STAY",
    "LengthOfStay",
    "Occupant",
    "PipelinePatient",
    "SeriesSourceValues",
    "UnitForecast",
    "build_registry",
    "default_models",
    "fit_by_year",
    "fit_length_of_stay",
    "fittable_days",
    "forecast_at",
    "forecast_icu",
    "load_source_series",
    "occupancy_rmse",
    "occupants_from_census",
    "plot_forecast",
    "poisson_binomial",
    "poisson_lognormal",
    "quantile",
    "read_daily_csv",
    "run_backtest",
    "source_population",
]
