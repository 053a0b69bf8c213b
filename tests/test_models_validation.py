"""Leave-one-centre-out validation: discrimination, calibration, leakage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from radscl.models.metrics import harrell_c
from radscl.models.validation import leave_one_centre_out
from radscl.models.validation import random_effects_meta
from radscl.phantom.cohort import COHORT_TRUTH
from radscl.phantom.cohort import synthetic_cohort


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    table = synthetic_cohort(600, n_centres=5, seed=1).baseline_table()
    table["noise"] = np.random.default_rng(7).normal(size=len(table))
    return table


def _true_log_hazard(table: pd.DataFrame) -> np.ndarray:
    truth = COHORT_TRUTH["death_log_hr"]

    def z(values):
        return (values - values.mean()) / values.std()

    return (
        truth["fibrosis_extent_pct"] * table["true_fibrosis_extent_pct"]
        + truth["airway_lung_ratio_pct_z"] * z(table["true_airway_lung_ratio_pct"])
        + truth["vessel_volume_ml_z"] * z(table["true_vessel_volume_ml"])
        + truth["age"] * table["age"]
        + truth["male"] * (table["sex"] == "M")
    ).to_numpy()


def _cox_cohort(n: int, centres: int, seed: int, offsets=None) -> pd.DataFrame:
    """Exponential survival with log hazard 0.8 b - 0.5 x; features measure b."""
    rng = np.random.default_rng(seed)
    centre = rng.integers(0, centres, n)
    b = rng.normal(size=n)
    x = rng.normal(size=n)
    event_time = rng.exponential(1.0 / (0.12 * np.exp(0.8 * b - 0.5 * x)))
    censor = rng.uniform(2.0, 10.0, n)
    offsets = np.zeros(centres) if offsets is None else np.asarray(offsets)
    return pd.DataFrame(
        {
            "centre": [f"c{k}" for k in centre],
            "time_years": np.minimum(event_time, censor),
            "death": (event_time <= censor).astype(int),
            "fibrosis_extent_pct": 10.0 + 5.0 * b + 5.0 * offsets[centre],
            "mld_hu": -820.0 + 20.0 * b + 30.0 * offsets[centre] + rng.normal(0, 8, n),
            "x": x,
        }
    )


def test_strong_effect_discriminates_in_every_held_out_centre(cohort):
    result = leave_one_centre_out(
        cohort,
        time="time_years",
        event="death",
        covariates=["fibrosis_extent_pct", "age"],
        centre="centre",
    )
    centres = result.centre_rows()

    assert len(centres) == 5 and centres["evaluable"].all()
    assert (centres["harrell_c"] > 0.65).all()
    assert (centres["harrell_c_lower95"] > 0.55).all()
    # The true risk model's C in each centre lies within the held-out interval.
    true_risk = _true_log_hazard(cohort)
    for _, row in centres.iterrows():
        member = (cohort["centre"] == row["centre"]).to_numpy()
        true_c = harrell_c(
            cohort["time_years"][member],
            cohort["death"][member] == 1,
            true_risk[member],
        )
        assert row["harrell_c_lower95"] <= true_c <= row["harrell_c_upper95"]


def test_null_feature_gives_chance_discrimination(cohort):
    result = leave_one_centre_out(
        cohort, time="time_years", event="death", covariates=["noise"], centre="centre"
    )
    table = result.table.set_index("centre")

    assert table.loc["pooled", "harrell_c_lower95"] < 0.5
    assert table.loc["pooled", "harrell_c_upper95"] > 0.5
    assert abs(table.loc["random_effects", "harrell_c"] - 0.5) < 0.05


def test_held_out_centre_does_not_influence_the_fitted_preprocessing(cohort):
    covariates = ["fibrosis_extent_pct", "mld_hu", "haa_pct", "age"]
    options = dict(
        time="time_years",
        event="death",
        covariates=covariates,
        centre="centre",
        harmonize_by="centre",
        keep_pipelines=True,
        n_bootstrap=20,
    )
    original = leave_one_centre_out(cohort, **options)

    changed = cohort.copy()
    held = (changed["centre"] == "centre_B").to_numpy()
    changed.loc[held, ["fibrosis_extent_pct", "mld_hu", "haa_pct"]] *= 3.0
    changed.loc[held, "death"] = 1 - changed.loc[held, "death"]
    changed.loc[held, "time_years"] = changed.loc[held, "time_years"][::-1].to_numpy()
    perturbed = leave_one_centre_out(changed, **options)

    before = original.pipelines["centre_B"]
    after = perturbed.pipelines["centre_B"]
    pd.testing.assert_frame_equal(
        before.named_steps["harmonize"].gamma_star_,
        after.named_steps["harmonize"].gamma_star_,
    )
    np.testing.assert_array_equal(
        before.named_steps["impute"].statistics_,
        after.named_steps["impute"].statistics_,
    )
    np.testing.assert_array_equal(
        before.named_steps["scale"].mean_, after.named_steps["scale"].mean_
    )
    np.testing.assert_array_equal(
        before.named_steps["model"].coef_, after.named_steps["model"].coef_
    )
    # ... while every other fold, which trains on centre_B, did change.
    assert not np.allclose(
        original.pipelines["centre_A"].named_steps["model"].coef_,
        perturbed.pipelines["centre_A"].named_steps["model"].coef_,
    )


def test_held_out_predictions_ignore_held_out_outcomes(cohort):
    options = dict(
        time="time_years",
        event="death",
        covariates=["fibrosis_extent_pct", "age"],
        centre="centre",
        n_bootstrap=20,
    )
    original = leave_one_centre_out(cohort, **options)
    changed = cohort.copy()
    held = (changed["centre"] == "centre_C").to_numpy()
    changed.loc[held, "death"] = 1 - changed.loc[held, "death"]
    perturbed = leave_one_centre_out(changed, **options)

    rows = original.predictions["centre"] == "centre_C"
    np.testing.assert_array_equal(
        original.predictions.loc[rows, "risk_score"],
        perturbed.predictions.loc[rows, "risk_score"],
    )


def test_correctly_specified_cox_model_is_calibrated():
    table = _cox_cohort(1600, 4, seed=3)
    result = leave_one_centre_out(
        table,
        time="time_years",
        event="death",
        covariates=["fibrosis_extent_pct", "x"],
        centre="centre",
        n_bootstrap=50,
    )
    pooled = result.table.set_index("centre").loc["pooled"]

    assert 0.9 < pooled["calibration_slope"] < 1.1
    assert (
        pooled["calibration_slope_lower95"] < 1.0 < pooled["calibration_slope_upper95"]
    )
    for horizon in (1, 3, 5):
        assert abs(pooled[f"citl_{horizon}"]) < 0.03
    assert set(result.calibration) == {1.0, 3.0, 5.0}


def test_harmonisation_restores_calibration_under_scanner_shift():
    # Scanner offsets shift the measured biomarker by up to 1.2 SD of its
    # true value, unrelated to outcome.
    table = _cox_cohort(1200, 4, seed=5, offsets=[0.0, 1.2, -1.0, 0.5])
    options = dict(
        time="time_years",
        event="death",
        covariates=["fibrosis_extent_pct", "mld_hu", "x"],
        centre="centre",
        n_bootstrap=20,
    )
    raw = leave_one_centre_out(table, **options).table.set_index("centre")
    harmonised = leave_one_centre_out(
        table, harmonize_by="centre", **options
    ).table.set_index("centre")
    centres = ["c0", "c1", "c2", "c3"]

    raw_error = raw.loc[centres, "citl_3"].abs().mean()
    harmonised_error = harmonised.loc[centres, "citl_3"].abs().mean()
    assert harmonised_error < 0.5 * raw_error
    assert harmonised_error < 0.04
    # Pooled over centres, shifted scores mix badly; harmonised ones do not.
    assert harmonised.loc["pooled", "harrell_c"] > raw.loc["pooled", "harrell_c"] + 0.02


def test_identical_centres_have_no_heterogeneity():
    base = _cox_cohort(300, 1, seed=11)
    table = pd.concat(
        [base.assign(centre=name) for name in ("a", "b", "c")], ignore_index=True
    )
    result = leave_one_centre_out(
        table,
        time="time_years",
        event="death",
        covariates=["fibrosis_extent_pct", "x"],
        centre="centre",
        n_bootstrap=50,
    )
    c = result.heterogeneity.set_index("metric").loc["harrell_c"]

    assert result.centre_rows()["harrell_c"].nunique() == 1
    assert c["i2_pct"] == 0.0
    assert c["tau2"] == 0.0
    assert c["q"] == pytest.approx(0.0, abs=1e-12)


def test_random_effects_meta_matches_hand_computation():
    meta = random_effects_meta([0.1, 0.3, 0.5], [0.1, 0.1, 0.1])

    # Q = 100 (0.2² + 0 + 0.2²) = 8, C = 300 - 30000 / 300 = 200
    assert meta["q"] == pytest.approx(8.0)
    assert meta["tau2"] == pytest.approx(0.03)
    assert meta["i2_pct"] == pytest.approx(75.0)
    assert meta["estimate"] == pytest.approx(0.3)
    assert meta["se"] == pytest.approx(np.sqrt(0.04 / 3))


def test_small_centre_is_reported_not_evaluable():
    table = _cox_cohort(400, 3, seed=13)
    table.loc[table.index[:8], "centre"] = "tiny"
    result = leave_one_centre_out(
        table,
        time="time_years",
        event="death",
        covariates=["x"],
        centre="centre",
        n_bootstrap=20,
    )
    tiny = result.table.set_index("centre").loc["tiny"]

    assert not tiny["evaluable"]
    assert "fewer than the 10 needed" in tiny["reason"]
    assert np.isnan(tiny["harrell_c"])
    assert result.heterogeneity.set_index("metric").loc["harrell_c", "k"] == 3
