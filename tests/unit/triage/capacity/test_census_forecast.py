"""ICU forecast arithmetic checked against hand computations."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binom, lognorm
from typer.testing import CliRunner

from streams.cli.root import app
from triage.capacity import (
    LengthOfStay,
    Occupant,
    PipelinePatient,
    forecast_icu,
    occupants_from_census,
    poisson_binomial,
    quantile,
)
from triage.capacity.census import ICU_STAY
from triage.exceptions import ConfigRejected, ConfigRejectionReason

pytestmark = pytest.mark.unit

NOW = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
MEAN_DAYS, SIGMA = ICU_STAY.mean_days, ICU_STAY.sigma  # forecast_icu's defaults


def sf(days: float) -> float:
    """Lognormal survival from scipy, independent of the code under test."""
    mu = math.log(MEAN_DAYS) - SIGMA**2 / 2
    return float(lognorm(s=SIGMA, scale=math.exp(mu)).sf(days))


def test_lognormal_has_the_requested_mean() -> None:
    los = LengthOfStay(MEAN_DAYS, SIGMA)
    assert math.exp(los.mu + SIGMA**2 / 2) == pytest.approx(MEAN_DAYS)
    for t in (0.5, 1, 3, 9, 20):
        assert los.survival(t) == pytest.approx(sf(t), rel=1e-9)
    assert los.survival(0) == 1.0


def test_poisson_binomial_by_hand() -> None:
    dist = poisson_binomial([0.5, 0.2])
    assert dist == pytest.approx([0.4, 0.5, 0.1])
    assert poisson_binomial([]) == pytest.approx([1.0])
    many = poisson_binomial(list(np.linspace(0.01, 0.99, 500)))
    assert many.sum() == pytest.approx(1.0)
    assert float((np.arange(501) * many).sum()) == pytest.approx(0.5 * 500)


@pytest.mark.parametrize("n", [1, 3, 5, 8, 9, 31, 33, 257, 1000])
def test_poisson_binomial_matches_the_trial_by_trial_recursion(n: int) -> None:
    """The pairwise product (any n, padded to a power of two) against the textbook recursion,
    and equal probabilities against scipy's binomial."""
    p = np.random.default_rng(n).uniform(size=n)
    slow = np.zeros(n + 1)
    slow[0] = 1.0
    for k, pk in enumerate(p, start=1):
        slow[1 : k + 1] = slow[1 : k + 1] * (1 - pk) + slow[0:k] * pk
        slow[0] *= 1 - pk
    assert poisson_binomial(list(p)) == pytest.approx(slow, abs=1e-12)
    assert poisson_binomial([0.3] * n) == pytest.approx(
        binom(n, 0.3).pmf(np.arange(n + 1)), abs=1e-12
    )


def test_quantiles_by_hand() -> None:
    dist = np.array([0.4, 0.5, 0.1])
    assert quantile(dist, 0.1) == 0
    assert quantile(dist, 0.4) == 0
    assert quantile(dist, 0.9) == 1
    assert quantile(dist, 0.95) == 2


def test_one_new_occupant_expected_equals_survival() -> None:
    fc = forecast_icu([Occupant("a", NOW)], [], NOW, capacity_beds=0, days=7)
    assert [d.day for d in fc.days] == list(range(1, 8))
    for d in fc.days:
        s = sf(d.day)
        assert d.expected == pytest.approx(s)
        assert d.p_exceed == pytest.approx(s)  # capacity 0: exceeded whenever still there
        assert d.date == (NOW + timedelta(days=d.day)).date()


def test_occupant_survival_is_conditioned_on_time_already_spent() -> None:
    fc = forecast_icu([Occupant("a", NOW - timedelta(days=5))], [], NOW, capacity_beds=1)
    for d in fc.days:
        assert d.expected == pytest.approx(sf(5 + d.day) / sf(5))
        assert d.p_exceed == 0.0  # one patient can never exceed one bed


def test_pipeline_patient_admitted_after_delay() -> None:
    fc = forecast_icu(
        [], [PipelinePatient("b", 1.0, NOW)], NOW, capacity_beds=5, admission_delay_days=1.0
    )
    assert fc.days[0].expected == pytest.approx(1.0)  # admitted exactly at day 1
    assert fc.days[1].expected == pytest.approx(sf(1.0))
    late = forecast_icu(
        [], [PipelinePatient("b", 1.0, NOW)], NOW, capacity_beds=5, admission_delay_days=1.5
    )
    assert late.days[0].expected == 0.0
    assert late.days[1].expected == pytest.approx(sf(0.5))


def test_overdue_pipeline_patient_admitted_from_now() -> None:
    fc = forecast_icu([], [PipelinePatient("c", 0.3, NOW - timedelta(days=5))], NOW, 5)
    for d in fc.days:
        assert d.expected == pytest.approx(0.3 * sf(d.day))


def test_two_patients_distribution_by_hand() -> None:
    occupants = [Occupant("a", NOW)]
    pipeline = [PipelinePatient("b", 0.5, NOW - timedelta(days=1))]
    fc = forecast_icu(occupants, pipeline, NOW, capacity_beds=1, days=1)
    p1, p2 = sf(1), 0.5 * sf(1)
    day = fc.days[0]
    assert day.expected == pytest.approx(p1 + p2)
    assert day.p_exceed == pytest.approx(p1 * p2)


def test_p_exceed_is_monotone_in_capacity() -> None:
    rng = np.random.default_rng(7)
    occupants = [
        Occupant(f"o{i}", NOW - timedelta(days=float(rng.uniform(0, 20)))) for i in range(15)
    ]
    pipeline = [
        PipelinePatient(
            f"p{i}", float(rng.uniform(0, 0.6)), NOW - timedelta(hours=float(rng.uniform(0, 48)))
        )
        for i in range(30)
    ]
    previous = [1.0] * 7
    for capacity in range(0, 40):
        fc = forecast_icu(occupants, pipeline, NOW, capacity)
        current = [d.p_exceed for d in fc.days]
        assert all(c <= p + 1e-12 for c, p in zip(current, previous, strict=True))
        assert all(d.lower80 <= d.expected <= d.upper80 for d in fc.days)
        previous = current
    assert previous == pytest.approx([0.0] * 7, abs=1e-12)


def test_rows_have_deterministic_ids() -> None:
    a = forecast_icu([Occupant("a", NOW)], [], NOW, 3, hospital="h1").rows()
    b = forecast_icu([Occupant("a", NOW)], [], NOW, 3, hospital="h1").rows()
    assert [r["forecast_id"] for r in a] == [r["forecast_id"] for r in b]
    assert len({r["forecast_id"] for r in a}) == 7
    assert a[0]["capacity"] == 3 and a[0]["hospital"] == "h1"


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"capacity_beds": -1}, ConfigRejectionReason.NEGATIVE_CAPACITY),
        ({"now": datetime(2024, 3, 1)}, ConfigRejectionReason.NAIVE_DATETIME),
        ({"los_mean_days": 0.0}, ConfigRejectionReason.INVALID_LOS_PARAMETERS),
        (
            {"pipeline": [PipelinePatient("x", 1.5, NOW)]},
            ConfigRejectionReason.PROBABILITY_OUT_OF_RANGE,
        ),
    ],
)
def test_bad_inputs_rejected(kwargs: dict[str, object], reason: ConfigRejectionReason) -> None:
    args: dict[str, object] = {"occupants": [], "pipeline": [], "now": NOW, "capacity_beds": 2}
    args.update(kwargs)
    with pytest.raises(ConfigRejected) as info:
        forecast_icu(**args)  # type: ignore[arg-type]
    assert info.value.reason is reason


def census_encounter(
    patient: str, start: datetime, status: str = "in-progress"
) -> dict[str, object]:
    return {
        "resourceType": "Encounter",
        "id": f"e-{patient}",
        "status": status,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "type": [{"coding": [{"system": "http://snomed.info/sct", "code": "305351004"}]}],
        "subject": {"reference": f"Patient/{patient}"},
        "period": {"start": start.isoformat()},
        "location": [{"location": {"display": "ICU"}}],
    }


def test_occupants_from_census_bundle() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "a"}},
            {"resource": census_encounter("a", NOW - timedelta(days=3))},
            {"resource": census_encounter("b", NOW - timedelta(days=1), status="planned")},
        ],
    }
    occupants = occupants_from_census(bundle)
    assert occupants == [Occupant("a", NOW - timedelta(days=3))]


def test_cli_capacity_forecast(tmp_path: Path) -> None:
    (tmp_path / "fhir").mkdir()
    census = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": census_encounter(f"p{i}", NOW - timedelta(days=i))} for i in range(4)
        ],
    }
    (tmp_path / "fhir" / "census.json").write_text(json.dumps(census))
    manifest = {
        "hospital": "h1",
        "start_time": NOW.isoformat(),
        "census_bundle": "fhir/census.json",
        "studies": [],
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    result = CliRunner().invoke(
        app, ["capacity", "forecast", "--cohort", str(tmp_path), "--capacity-beds", "3"]
    )
    assert result.exit_code == 0, result.output
    assert "P(> capacity)" in result.output
    assert (NOW + timedelta(days=7)).date().isoformat() in result.output
