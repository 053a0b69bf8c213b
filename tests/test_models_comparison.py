"""The comparison on a synthetic cohort whose hazard depends on fibrosis extent."""

import numpy as np
import pandas as pd
import pytest

from radscl.errors import ParameterError
from radscl.models.comparison import compare_models
from radscl.models.comparison import model_specs
from radscl.models.evaluation import corrected_cv_interval
from radscl.models.evaluation import likelihood_ratio_test
from radscl.models.evaluation import proportional_hazards_test
from radscl.phantom import synthetic_cohort


@pytest.fixture(scope="module")
def cohort_table():
    table = synthetic_cohort(1000, seed=21).baseline_table()
    table["noise"] = np.random.default_rng(21).normal(size=len(table))
    return table


@pytest.fixture(scope="module")
def fibrosis_comparison(cohort_table):
    return compare_models(
        cohort_table,
        time="time_years",
        event="death",
        baseline=["fvc_pct"],
        biomarkers=["fibrosis_extent_pct"],
        estimators=["cox"],
        folds=5,
        repeats=3,
        n_bootstrap=100,
        seed=1,
        n_jobs=2,
    )


@pytest.mark.slow
def test_fibrosis_beats_fvc_with_an_interval_excluding_zero(fibrosis_comparison):
    rows = fibrosis_comparison.table.set_index("role")
    fibrosis = rows.loc["biomarkers"]
    combined = rows.loc["baseline+biomarkers"]

    assert fibrosis["harrell_c"] > rows.loc["baseline", "harrell_c"] + 0.03
    assert fibrosis["delta_c_lower95"] > 0
    assert combined["delta_c_lower95"] > 0
    assert combined["lr_p"] < 1e-6
    for name in ("harrell_c", "uno_c", "td_auc_1", "td_auc_3", "ibs"):
        assert rows.loc["baseline", f"{name}_lower95"] < rows.loc["baseline", name]
        assert rows.loc["baseline", name] < rows.loc["baseline", f"{name}_upper95"]
    # a better model has a smaller integrated Brier score
    assert combined["ibs"] < rows.loc["baseline", "ibs"]


@pytest.mark.slow
def test_combined_cox_is_calibrated_at_three_years(fibrosis_comparison):
    settings = fibrosis_comparison.settings
    table = fibrosis_comparison.calibration["cox: baseline+biomarkers"]

    assert settings["calibration_time"] == 3.0
    assert settings["tau"] == 5.0
    inside = (table["observed_lower95"] <= table["predicted_risk"]) & (
        table["predicted_risk"] <= table["observed_upper95"]
    )
    assert inside.sum() >= 4
    assert table["observed_risk"].iloc[-1] > 3 * table["observed_risk"].iloc[0]


@pytest.mark.slow
def test_noise_biomarker_adds_nothing(cohort_table):
    comparison = compare_models(
        cohort_table,
        time="time_years",
        event="death",
        baseline=["fvc_pct", "dlco_pct"],
        biomarkers=["noise"],
        estimators=["cox"],
        folds=5,
        repeats=3,
        n_bootstrap=50,
        seed=2,
        n_jobs=2,
        biomarkers_alone=False,
    )
    combined = comparison.table.set_index("role").loc["baseline+biomarkers"]

    assert combined["delta_c_lower95"] < 0 < combined["delta_c_upper95"]
    assert combined["lr_p"] > 0.05
    assert abs(combined["delta_c"]) < 0.01


def test_likelihood_ratio_test_uses_complete_cases(cohort_table):
    result = likelihood_ratio_test(
        cohort_table,
        "time_years",
        "death",
        ["fvc_pct"],
        ["fvc_pct", "vessel_volume_ml"],
    )

    assert (
        result.n == cohort_table["vessel_volume_ml"].notna().sum() < len(cohort_table)
    )
    assert result.df == 1
    assert result.p < 0.01
    with pytest.raises(ParameterError):
        likelihood_ratio_test(
            cohort_table, "time_years", "death", ["noise"], ["fvc_pct"]
        )


def test_corrected_interval_is_wider_than_the_naive_one():
    differences = np.random.default_rng(0).normal(0.01, 0.02, size=(5, 5))
    lower, upper = corrected_cv_interval(0.01, differences)
    naive_half = 2.064 * differences.std(ddof=1) / 5

    assert lower < 0.01 < upper
    # variance inflated by 1/25 + 1/4 instead of 1/25
    assert (upper - lower) / 2 == pytest.approx(
        naive_half * np.sqrt(0.29 / 0.04), rel=1e-3
    )


def test_model_specs_reject_overlap_and_unknown_models():
    specs = model_specs(["fvc_pct"], ["fibrosis_extent_pct"], ["cox", "rsf"])
    assert [s.name for s in specs] == [
        "cox: baseline",
        "cox: biomarkers",
        "cox: baseline+biomarkers",
        "rsf: baseline",
        "rsf: biomarkers",
        "rsf: baseline+biomarkers",
    ]
    with pytest.raises(ParameterError, match="both"):
        model_specs(["fvc_pct"], ["fvc_pct"])
    with pytest.raises(ParameterError, match="unknown"):
        model_specs(["fvc_pct"], ["x"], ["svm"])


def test_schoenfeld_test_flags_crossing_hazards_only():
    rng = np.random.default_rng(5)
    n = 600
    group = rng.integers(0, 2, n)
    marker = rng.normal(size=n)
    censor_time = rng.uniform(1.0, 15.0, n)
    # same scale, Weibull shape 0.6 against 3: the group hazards cross
    crossing_time = 5.0 * rng.exponential(size=n) ** (
        1.0 / np.where(group == 1, 3.0, 0.6)
    )
    proportional_time = 5.0 * rng.exponential(size=n) * np.exp(-0.5 * marker)
    table = pd.DataFrame({"group": group, "marker": marker})
    for name, event_time in (
        ("crossing", crossing_time),
        ("proportional", proportional_time),
    ):
        table[f"{name}_time"] = np.minimum(event_time, censor_time)
        table[f"{name}_event"] = (event_time <= censor_time).astype(int)

    crossing = proportional_hazards_test(
        table, "crossing_time", "crossing_event", ["group"]
    )
    proportional = proportional_hazards_test(
        table, "proportional_time", "proportional_event", ["marker"]
    )

    assert crossing["p"].iloc[0] < 1e-6
    assert proportional["p"].iloc[0] > 0.05
