import numpy as np
import pandas as pd
import pytest

from radscl.errors import DataError
from radscl.models.baselines import add_baseline_scores
from radscl.models.baselines import composite_physiologic_index
from radscl.models.baselines import gap_points
from radscl.models.baselines import gap_stage
from radscl.models.baselines import goh_extensive


@pytest.mark.parametrize(
    ("sex", "age", "fvc", "dlco", "points", "stage"),
    [
        pytest.param("F", 60, 76, 56, 0, 1, id="all-zero-at-upper-bounds"),
        pytest.param("M", 61, 75, 55, 4, 2, id="one-point-each-at-bounds"),
        pytest.param("F", 65, 50, 36, 3, 1, id="lower-bounds-of-middle-bands"),
        pytest.param("M", 66, 49.9, 35, 7, 3, id="top-bands"),
        pytest.param("male", 70, 40, 20, 7, 3, id="spelled-out-sex"),
        pytest.param(1, 58, 80, 30, 3, 1, id="numeric-sex"),
        pytest.param("F", 60.5, 75.5, 35.5, 2, 1, id="between-integer-bounds"),
    ],
)
def test_gap_points_and_stage(sex, age, fvc, dlco, points, stage):
    result = gap_points([sex], [age], [fvc], [dlco])

    assert result[0] == points
    assert gap_stage(result)[0] == stage


def test_gap_dlco_not_performed_scores_three_and_missing_dlco_is_missing():
    points = gap_points(["M", "M"], [70, 70], [45, 45], [np.nan, np.nan], [True, False])

    assert points[0] == 1 + 2 + 2 + 3
    assert np.isnan(points[1])
    assert gap_stage(points)[0] == 3


def test_gap_stage_cut_offs():
    assert list(gap_stage([0, 3, 4, 5, 6, 8])) == [1, 1, 2, 2, 3, 3]
    with pytest.raises(DataError):
        gap_stage([9])


def test_unknown_sex_is_an_error():
    with pytest.raises(DataError, match="sex"):
        gap_points(["X"], [50], [80], [60])


@pytest.mark.parametrize(
    ("extent", "fvc", "extensive"),
    [
        pytest.param(9.9, 40, 0, id="minimal-disease-ignores-fvc"),
        pytest.param(10, 69.9, 1, id="indeterminate-lower-bound-low-fvc"),
        pytest.param(10, 70, 0, id="indeterminate-fvc-at-threshold-is-limited"),
        pytest.param(30, 69, 1, id="indeterminate-upper-bound-low-fvc"),
        pytest.param(30, 90, 0, id="indeterminate-upper-bound-good-fvc"),
        pytest.param(30.1, 95, 1, id="severe-disease-ignores-fvc"),
        pytest.param(25, np.nan, 1, id="no-fvc-above-20-percent"),
        pytest.param(20, np.nan, 0, id="no-fvc-at-20-percent"),
    ],
)
def test_goh_staging(extent, fvc, extensive):
    assert goh_extensive([extent], [fvc])[0] == extensive


def test_cpi_hand_worked():
    # 91.0 - 0.65 * 50 - 0.53 * 70 + 0.34 * 65 = 91 - 32.5 - 37.1 + 22.1
    assert composite_physiologic_index([70], [50], [65])[0] == pytest.approx(43.5)
    assert composite_physiologic_index([100], [100], [0])[0] == pytest.approx(-27.0)


def test_add_baseline_scores_prefers_visual_extent():
    table = pd.DataFrame(
        {
            "sex": ["F", "M"],
            "age": [55.0, 70.0],
            "fvc_pct": [80.0, 60.0],
            "dlco_pct": [60.0, 30.0],
            "fev1_pct": [78.0, 58.0],
            "fibrosis_extent_pct": [40.0, 5.0],
            "visual_extent_pct": [5.0, 40.0],
        }
    )
    scored = add_baseline_scores(table)

    assert list(scored["gap_index"]) == [0, 1 + 2 + 1 + 2]
    assert list(scored["gap_stage"]) == [1, 3]
    assert list(scored["goh_extensive"]) == [0, 1]
    assert scored["cpi"].iloc[0] == pytest.approx(91 - 39 - 42.4 + 26.52)

    without_fev1 = add_baseline_scores(
        table.drop(columns=["fev1_pct", "visual_extent_pct"])
    )
    assert "cpi" not in without_fev1
    assert list(without_fev1["goh_extensive"]) == [1, 0]
