"""ovc.evaluate.curves: training-curve columns and whether a curve flattened (synthetic curves)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ovc.evaluate.curves import CURVE_COLUMNS, curve_columns, flatness
from ovc.evaluate.plots import write_curve


def _rows(steps, values, key="val_aupr_macro"):
    return [{"step": s, key: v} for s, v in zip(steps, values)]


def test_flat_tail_has_no_change_and_no_range():
    """Rising early, flat over the whole last quarter: it flattened."""
    steps = list(range(0, 101, 10))
    values = [0.1, 0.3, 0.5, 0.6, 0.65, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7]
    f = flatness(_rows(steps, values))
    assert f["change"] == pytest.approx(0.0) and f["range"] == pytest.approx(0.0)
    assert (f["from_step"], f["to_step"], f["points"]) == (75.0, 100.0, 3)  # 80, 90, 100 inside


def test_still_rising_curve_reports_the_last_quarter_rise():
    """A straight line from 0 to 1: the last quarter rises by 0.25, and that is its range."""
    steps = np.arange(0, 101, 10)
    f = flatness(_rows(steps, steps / 100))
    assert f["change"] == pytest.approx(0.25) and f["range"] == pytest.approx(0.25)
    # a falling curve reports a negative change, the same range
    f = flatness(_rows(steps, 1 - steps / 100))
    assert f["change"] == pytest.approx(-0.25) and f["range"] == pytest.approx(0.25)


def test_window_start_is_interpolated_between_points_and_range_sees_a_bump():
    """Points at 0, 6, 12, 18, 20 (eval every 6 + the end): the window opens at 15, between 12 and 18."""
    rows = _rows([0, 6, 12, 18, 20], [0.0, 0.2, 0.4, 0.9, 0.5])
    f = flatness(rows)
    start = 0.4 + (0.9 - 0.4) * (15 - 12) / (18 - 12)  # 0.65
    assert f["from_step"] == 15.0
    assert f["change"] == pytest.approx(0.5 - start)
    assert f["range"] == pytest.approx(0.9 - 0.5)  # the bump at 18 counts, not only the ends
    assert f["points"] == 2
    assert flatness(rows, frac=1.0)["change"] == pytest.approx(0.5)  # the whole run


def test_missing_values_are_skipped_and_pairs_are_accepted():
    """Steps the loop did not evaluate (None, NaN) are not points; (step, value) pairs work too."""
    rows = [
        {"step": 0, "val_aupr_macro": 0.2, "loss": None},
        {"step": 1, "val_aupr_macro": None, "loss": 3.0},
        {"step": 2, "val_aupr_macro": float("nan"), "loss": 2.0},
        {"step": 4, "val_aupr_macro": 0.6, "loss": 1.0},
    ]
    assert flatness(rows) == flatness([(0, 0.2), (4, 0.6)])
    assert flatness(rows)["change"] == pytest.approx(0.1)  # window [3, 4]: 0.6 - interp(3) = 0.6 - 0.5
    assert flatness(rows, key="loss")["change"] == pytest.approx(1.0 - 1.375)  # loss from step 1: window [3.25, 4]
    assert flatness([{"step": 0, "val_aupr_macro": 0.3}])["change"] is None  # one point says nothing
    assert flatness([])["points"] == 0
    with pytest.raises(ValueError, match="frac"):
        flatness(rows, frac=0)


def test_curve_columns_write_integer_steps_and_empty_cells(tmp_path):
    rows = [
        {"step": 0, "loss": None, "val_aupr_macro": 0.25, "val_aupr_micro": 0.5, "val_seconds": 0.1},
        {"step": 1, "loss": 2.5},
    ]
    cols = curve_columns(rows)
    assert list(cols) == list(CURVE_COLUMNS)
    assert cols["step"].dtype == np.int64 and math.isnan(cols["loss"][0]) and math.isnan(cols["val_aupr_micro"][1])
    path = write_curve(cols, tmp_path / "curve.csv")
    assert path.read_text().splitlines() == ["step,loss,val_aupr_macro,val_aupr_micro", "0,,0.25,0.5", "1,2.5,,"]
