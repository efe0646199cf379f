"""Per-series selection by past WIS: the right model, known outcomes only, and a margin."""

from __future__ import annotations

import numpy as np
import pytest

from triage.capacity import selection

pytestmark = pytest.mark.unit


def test_trailing_mean_sees_only_outcomes_known_at_the_origin() -> None:
    values = np.arange(10.0)
    out = selection.trailing_mean(values, lag=2, window=3, min_count=2)
    assert np.isnan(out[:3]).all()  # row 2 knows only row 0
    assert out[3] == pytest.approx(0.5)  # rows 0, 1
    assert out[9] == pytest.approx(6.0)  # rows 5, 6, 7


def _constant(value: float, rows: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    points = np.full((rows, horizon), value)
    quantiles = np.repeat(points[:, :, None], 7, axis=2) + np.linspace(-1, 1, 7)
    return points, quantiles


def test_selection_switches_only_after_enough_known_scores_and_a_clear_margin() -> None:
    rows, horizon = 400, 2
    truth = np.full((rows, horizon), 10.0)
    default = _constant(20.0, rows, horizon)
    good = _constant(10.0, rows, horizon)
    close = _constant(19.0, rows, horizon)  # better than the default, but within the margin
    chosen = selection.select_by_wis(truth, [default[0], good[0]], [default[1], good[1]])
    first = selection.MIN_SCORED + 1  # h = 1: row r knows rows < r
    assert np.all(chosen.choice[: first - 1, 0] == 0)
    assert np.all(chosen.choice[first:, 0] == 1)
    assert chosen.points[-1, 0] == pytest.approx(10.0)
    kept = selection.select_by_wis(truth, [default[0], close[0]], [default[1], close[1]])
    assert not kept.choice.any()


def test_future_outcomes_do_not_change_a_choice() -> None:
    rows, horizon = 300, 3
    rng = np.random.default_rng(4)
    truth = rng.normal(10, 1, size=(rows, horizon))
    a, b = _constant(10.0, rows, horizon), _constant(13.0, rows, horizon)
    chosen = selection.select_by_wis(truth, [b[0], a[0]], [b[1], a[1]])
    altered = truth.copy()
    altered[200:] = 13.0  # outcomes of rows >= 200 are known from row 201 (h = 1) on
    again = selection.select_by_wis(altered, [b[0], a[0]], [b[1], a[1]])
    assert np.array_equal(chosen.choice[:201], again.choice[:201])
