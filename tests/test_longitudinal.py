"""Longitudinal analysis: scan change, FVC mixed models, progression, landmark."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radscl.cli import main
from radscl.errors import DataError
from radscl.errors import ParameterError
from radscl.errors import RadsclError
from radscl.models.longitudinal import MixedModelConvergenceWarning
from radscl.models.longitudinal import compare_landmark_models
from radscl.models.longitudinal import first_change_per_patient
from radscl.models.longitudinal import fit_fvc_trajectory
from radscl.models.longitudinal import fit_mixed_trajectory
from radscl.models.longitudinal import landmark_dataset
from radscl.models.longitudinal import scan_changes
from radscl.models.longitudinal import validate_lung_function
from radscl.models.progression import EUSTAR_BANDS
from radscl.models.progression import Declines
from radscl.models.progression import EustarBands
from radscl.models.progression import derive_progression
from radscl.models.progression import get_rule
from radscl.phantom import COHORT_TRUTH
from radscl.phantom import synthetic_cohort
from radscl.report.longitudinal_plots import plot_change_vs_outcome
from radscl.report.longitudinal_plots import plot_fvc_trajectories

# ---------------------------------------------------------------------------
# Progression rules on hand-worked series
# ---------------------------------------------------------------------------


def _series(*visits: tuple, patient: str = "A") -> pd.DataFrame:
    """Visits as (date, fvc_pct, dlco_pct) tuples of one patient."""
    return pd.DataFrame(
        {
            "patient_id": patient,
            "date": [v[0] for v in visits],
            "fvc_pct": [v[1] for v in visits],
            "dlco_pct": [v[2] for v in visits],
        }
    )


def _one(table: pd.DataFrame) -> pd.Series:
    assert len(table) == 1
    return table.iloc[0]


@pytest.mark.parametrize(
    ("fvc", "dlco", "event"),
    [
        pytest.param(90.01, 60.0, 0, id="fvc-9.99pct-alone"),
        pytest.param(90.0, 60.0, 1, id="fvc-10.0pct"),
        pytest.param(90.01, 51.0, 1, id="fvc-9.99pct-dlco-15.0pct"),
        pytest.param(95.0, 51.0, 1, id="fvc-5.0pct-dlco-15.0pct"),
        pytest.param(95.0, 51.06, 0, id="fvc-5.0pct-dlco-14.9pct"),
        pytest.param(95.01, 51.0, 0, id="fvc-4.99pct-dlco-15.0pct"),
        pytest.param(95.0, None, 0, id="fvc-5.0pct-dlco-not-measured"),
    ],
)
def test_ssc_rule_thresholds(fvc, dlco, event):
    # Baseline FVC 100 and DLco 60 % predicted: relative = absolute here for
    # FVC, DLco 60 -> 51 is a relative decline of exactly 15 %.
    visits = _series(("2020-01-01", 100.0, 60.0), ("2021-01-01", fvc, dlco))

    row = _one(derive_progression(visits, "ssc"))

    assert row["event"] == event
    assert row["time_years"] == pytest.approx(366 / 365.25)
    assert row["visits_assessed"] == 1


def test_ssc_rule_uses_relative_not_absolute_decline():
    # 60 -> 54.6 % predicted: absolute 5.4 points, relative 9.0 %: no SSc event.
    # 60 -> 54.0: relative exactly 10 %.
    below = _series(("2020-01-01", 60.0, 50.0), ("2021-01-01", 54.6, 50.0))
    at = _series(("2020-01-01", 60.0, 50.0), ("2021-01-01", 54.0, 50.0))

    assert _one(derive_progression(below, "ssc"))["event"] == 0
    assert _one(derive_progression(at, "ssc"))["event"] == 1
    assert _one(derive_progression(below, "ppf"))["event"] == 1


def test_window_of_24_months_is_inclusive_calendar_months():
    # 1 January 2020 + 24 months = 1 January 2022: 731 days (2020 is a leap
    # year), past 2.0 years of 365.25 days, and still inside the window; a day
    # later it is not assessed.
    inside = _series(("2020-01-01", 100.0, 60.0), ("2022-01-01", 90.0, 60.0))
    outside = _series(
        ("2020-01-01", 100.0, 60.0),
        ("2021-01-01", 99.0, 60.0),
        ("2022-01-02", 90.0, 60.0),
    )

    for rule in ("ssc", "inbuild"):
        row = _one(derive_progression(inside, rule))
        assert row["event"] == 1
        assert row["time_years"] == pytest.approx(731 / 365.25)
        assert row["time_years"] > 2.0
        late = _one(derive_progression(outside, rule))
        assert late["event"] == 0
        assert late["time_years"] == pytest.approx(366 / 365.25)
        assert late["visits_assessed"] == 1


def test_first_visit_meeting_the_rule_is_the_event_and_censoring_is_last_assessed():
    progressing = _series(
        ("2020-01-01", 100.0, 60.0),
        ("2020-07-01", 97.0, 60.0),
        ("2021-01-01", 89.0, 60.0),
        ("2021-07-01", 85.0, 60.0),
    )
    stable = _series(
        ("2020-01-01", 100.0, 60.0),
        ("2020-06-01", 98.0, 60.0),
        ("2021-06-01", 97.0, 58.0),
        ("2023-06-01", 70.0, 40.0),
        patient="B",
    )

    table = derive_progression(pd.concat([progressing, stable]), "inbuild")
    table = table.set_index("patient_id")

    assert table.loc["A", "event"] == 1
    assert str(table.loc["A", "progression_date"]) == "2021-01-01"
    assert table.loc["A", "time_years"] == pytest.approx(366 / 365.25)
    assert table.loc["A", "worst_fvc_relative_decline_pct"] == pytest.approx(15.0)
    # The 2023 visit is beyond 24 months: censored at the last visit inside.
    assert table.loc["B", "event"] == 0
    assert pd.isna(table.loc["B", "progression_date"])
    assert table.loc["B", "time_years"] == pytest.approx(517 / 365.25)
    assert table.loc["B", "visits_assessed"] == 2


@pytest.mark.parametrize(
    ("fvc", "dlco", "event"),
    [
        pytest.param(75.0, 50.0, 1, id="fvc-5.0-points"),
        pytest.param(75.01, 50.0, 0, id="fvc-4.99-points"),
        pytest.param(80.0, 40.0, 1, id="dlco-10.0-points"),
        pytest.param(80.0, 40.01, 0, id="dlco-9.99-points"),
    ],
)
def test_ppf_rule_absolute_declines(fvc, dlco, event):
    visits = _series(("2020-01-01", 80.0, 50.0), ("2021-01-01", fvc, dlco))

    assert _one(derive_progression(visits, "ppf"))["event"] == event


def test_ppf_rule_window_is_one_year_and_decimal_inputs_hit_the_threshold():
    # 85.1 - 80.1 is 4.999999999999986 in binary floating point.
    at_a_year = _series(("2020-01-01", 85.1, 50.0), ("2021-01-01", 80.1, 50.0))
    after_a_year = _series(
        ("2020-01-01", 85.1, 50.0),
        ("2020-06-01", 85.0, 50.0),
        ("2021-01-02", 70.0, 50.0),
    )

    assert _one(derive_progression(at_a_year, "ppf"))["event"] == 1
    row = _one(derive_progression(after_a_year, "ppf"))
    assert row["event"] == 0
    assert row["time_years"] == pytest.approx(152 / 365.25)


def test_inbuild_rule_on_fvc_in_ml():
    # 2470 -> 2223 ml is a relative decline of exactly 10 %.
    visits = pd.DataFrame(
        {
            "patient_id": ["A", "A", "B", "B"],
            "date": ["2019-05-01", "2020-11-01", "2019-05-01", "2020-11-01"],
            "fvc_ml": [2470.0, 2223.0, 2470.0, 2223.3],
        }
    )

    table = derive_progression(visits, "inbuild").set_index("patient_id")

    assert table.loc["A", "event"] == 1
    assert table.loc["B", "event"] == 0
    assert "worst_dlco_relative_decline_pct" not in table.columns
    with pytest.raises(DataError, match="fvc_pct"):
        derive_progression(visits, "ppf")


@pytest.mark.parametrize(
    ("decline", "band"),
    [
        pytest.param(-5.0, "improved", id="-5.0"),
        pytest.param(-4.99, "stable", id="-4.99"),
        pytest.param(4.99, "stable", id="4.99"),
        pytest.param(5.0, "moderate", id="5.0"),
        pytest.param(10.0, "moderate", id="10.0"),
        pytest.param(10.01, "significant", id="10.01"),
        pytest.param(20.0, "significant", id="20.0"),
        pytest.param(20.01, "major", id="20.01"),
    ],
)
def test_eustar_band_boundaries(decline, band):
    nan = np.array([np.nan])
    declines = Declines(np.array([decline]), nan, nan, nan)

    assert EustarBands().band(declines)[0] == band


def test_eustar_rule_events_and_worst_band():
    # Relative declines 4, 10 (moderate) and 10.5 % (significant) within 15 months.
    visits = _series(
        ("2020-01-01", 100.0, 60.0),
        ("2020-05-01", 96.0, 60.0),
        ("2020-09-01", 90.0, 60.0),
        ("2021-03-01", 89.5, 60.0),
    )

    moderate = _one(derive_progression(visits, "eustar"))
    significant = _one(derive_progression(visits, EustarBands(min_band="significant")))

    assert moderate["event"] == 1
    assert str(moderate["progression_date"]) == "2020-09-01"
    assert moderate["band"] == "significant"
    assert significant["event"] == 1
    assert str(significant["progression_date"]) == "2021-03-01"
    assert EUSTAR_BANDS.index(moderate["band"]) == 3
    with pytest.raises(ParameterError, match="min_band"):
        EustarBands(min_band="stable")


def test_baseline_is_the_first_visit_with_fvc():
    visits = _series(
        ("2020-01-01", None, 60.0),
        ("2020-03-01", 80.0, 58.0),
        ("2021-03-01", 72.0, 58.0),
    )

    row = _one(derive_progression(visits, "ssc"))

    assert str(row["baseline_date"]) == "2020-03-01"
    assert row["event"] == 1
    assert row["time_years"] == pytest.approx(365 / 365.25)


def test_patients_without_follow_up_in_the_window_are_left_out():
    visits = pd.concat(
        [
            _series(("2020-01-01", 80.0, 60.0), patient="A"),
            _series(
                ("2020-01-01", 80.0, 60.0), ("2023-01-01", 60.0, 40.0), patient="B"
            ),
            _series(
                ("2020-01-01", 80.0, 60.0), ("2021-01-01", 79.0, 60.0), patient="C"
            ),
        ]
    )

    table = derive_progression(visits, "ssc")

    assert list(table["patient_id"]) == ["C"]


def test_unknown_rule_is_a_parameter_error():
    with pytest.raises(ParameterError, match="rule must be one of ssc, ppf, inbuild"):
        get_rule("gap")


def test_rules_state_their_sources():
    for name in ("ssc", "ppf", "inbuild", "eustar"):
        rule = get_rule(name)
        assert rule.source and rule.title
    assert "Goh" in get_rule("ssc").source
    assert "Raghu" in get_rule("ppf").source
    assert get_rule("ppf").window_months == 12
    assert get_rule("ssc").window_months == 24


# ---------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------

SECRET = "PATIENT-7Q3X"


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        pytest.param(
            lambda t: t.drop(columns="date"), "column 'date' not found", id="no-date"
        ),
        pytest.param(
            lambda t: t.drop(columns=["fvc_pct", "fvc_ml"]), "fvc_pct", id="no-fvc"
        ),
        pytest.param(
            lambda t: t.assign(fvc_ml=t["fvc_ml"] / 1000), "litres", id="fvc-in-litres"
        ),
        pytest.param(
            lambda t: t.assign(dlco_pct=["n/a", *t["dlco_pct"][1:]]),
            "column 'dlco_pct' must be numeric.*data row 1",
            id="text-dlco",
        ),
        pytest.param(
            lambda t: t.assign(date=[t["date"][0], "31/31/2020", t["date"][2]]),
            "column 'date' is not a date in 1 row.*data row 2",
            id="bad-date",
        ),
        pytest.param(
            lambda t: t.assign(date=t["date"][0]),
            "repeat a patient's 'date'",
            id="same-day",
        ),
        pytest.param(
            lambda t: t.assign(fvc_pct=[80.0, -1.0, 70.0]), "must be positive", id="neg"
        ),
    ],
)
def test_lung_function_validation_names_the_column(edit, match):
    table = pd.DataFrame(
        {
            "patient_id": SECRET,
            "date": ["2020-01-01", "2020-06-01", "2021-01-01"],
            "fvc_pct": [80.0, 78.0, 70.0],
            "fvc_ml": [2500.0, 2450.0, 2200.0],
            "dlco_pct": [60.0, 58.0, 55.0],
        }
    )

    with pytest.raises(DataError, match=match) as error:
        validate_lung_function(edit(table), source="visits.csv")

    assert str(error.value).startswith("visits.csv: ")
    assert SECRET not in str(error.value)
    assert "\n" not in str(error.value)


# ---------------------------------------------------------------------------
# Change between scans
# ---------------------------------------------------------------------------


def _protocol_scans() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient_id": ["A", "A", "A", "B"],
            "case_id": ["A1", "A2", "A3", "B1"],
            # Deliberately unsorted: the second scan is listed last.
            "scan_date": ["2020-01-01", "2023-01-01", "2021-07-02", "2020-01-01"],
            "contiguous": [True, True, False, True],
            "kernel": ["B70f", "B30f", "B70f", "B70f"],
            "lung_volume_ml": [4000.0, 3700.0, 3850.0, 4100.0],
            "airway_lung_ratio_pct": [1.2, 1.8, 9.9, 1.1],
            "fibrosis_extent_pct": [10.0, 16.0, 13.0, 8.0],
        }
    )


def test_change_between_scans_with_protocol_flags():
    changes = scan_changes(_protocol_scans())
    table = changes.set_index(["pair", "scan_from", "measure"])

    assert set(changes["patient_id"]) == {"A"}
    assert len(changes) == 3 * 3

    # Scan 1 (volumetric, B70f) -> scan 2 (gapped, B70f), 548 days apart.
    first = table.loc[("consecutive", 1)]
    assert (first["case_id_to"] == "A3").all()
    assert first["interval_years"].iloc[0] == pytest.approx(548 / 365.25)
    assert first["protocol"].iloc[0] == "gapped vs volumetric"
    assert first.loc["lung_volume_ml", "change"] == pytest.approx(-150.0)
    assert first.loc["lung_volume_ml", "change_per_year"] == pytest.approx(
        -150.0 / (548 / 365.25)
    )
    # A tree measure on a gapped scan: empty even though a value was given.
    assert math.isnan(first.loc["airway_lung_ratio_pct", "change"])
    assert not first.loc["airway_lung_ratio_pct", "comparable"]
    assert "gapped" in first.loc["airway_lung_ratio_pct", "note"]
    assert first.loc["fibrosis_extent_pct", "change"] == pytest.approx(3.0)
    assert first.loc["fibrosis_extent_pct", "comparable"]

    # Scan 2 (gapped, B70f) -> scan 3 (volumetric, B30f).
    second = table.loc[("consecutive", 2)]
    assert second["protocol"].iloc[0] == "gapped vs volumetric; different kernel"
    assert math.isnan(second.loc["airway_lung_ratio_pct", "change"])
    assert second.loc["fibrosis_extent_pct", "change"] == pytest.approx(3.0)
    assert not second.loc["fibrosis_extent_pct", "comparable"]
    assert "kernel" in second.loc["fibrosis_extent_pct", "note"]
    assert second.loc["lung_volume_ml", "comparable"]

    # First to last: both volumetric, kernels differ.
    whole = table.loc[("first_last", 1)]
    assert (whole["scan_to"] == 3).all()
    assert whole.loc["airway_lung_ratio_pct", "change"] == pytest.approx(0.6)
    assert whole.loc["airway_lung_ratio_pct", "comparable"]
    assert whole.loc["airway_lung_ratio_pct", "change_per_year"] == pytest.approx(
        0.6 / (1096 / 365.25)
    )
    assert not whole.loc["fibrosis_extent_pct", "comparable"]

    wide = first_change_per_patient(changes)
    assert wide.loc["A", "fibrosis_extent_pct"] == 10.0
    assert wide.loc["A", "fibrosis_extent_pct_change"] == pytest.approx(3.0)
    assert math.isnan(wide.loc["A", "airway_lung_ratio_pct_change_per_year"])


def test_change_without_protocol_columns_is_unknown_protocol():
    scans = _protocol_scans().drop(columns=["contiguous", "kernel", "case_id"])

    changes = scan_changes(scans, ["lung_volume_ml"], pairs=["consecutive"])

    assert list(changes["protocol"]) == ["unknown", "unknown"]
    assert list(changes["change"]) == [-150.0, -150.0]


def test_change_on_synthetic_cohort_never_turns_gapped_trees_into_zero():
    cohort = synthetic_cohort(300, repeat_fraction=0.6, gapped_fraction=0.3, seed=8)

    changes = scan_changes(cohort.scans)

    gapped = changes["protocol"].str.contains("gapped")
    tree = changes["measure"].str.startswith(("airway_", "vessel_"))
    assert gapped.sum() > 50
    assert changes.loc[gapped & tree, "change"].isna().all()
    assert changes.loc[~gapped & tree, "change"].notna().all()
    extent = changes[(changes["measure"] == "fibrosis_extent_pct")]
    assert extent["change"].notna().all()
    # Truth: extent grows 0.8 %/year on average (clipped at 0 per patient).
    assert 0.4 < extent["change_per_year"].mean() < 1.6


def test_scan_table_errors_name_the_column_not_the_patient():
    scans = _protocol_scans().assign(patient_id=SECRET)

    with pytest.raises(
        DataError, match="'scan_date' is not a date in 1 row"
    ) as bad_date:
        scan_changes(
            scans.assign(scan_date=["2020-01-01", "soon", "2021-07-02", "2020-01-01"])
        )
    with pytest.raises(DataError, match="one reconstruction per scan date"):
        scan_changes(scans.assign(scan_date="2020-01-01"))
    with pytest.raises(DataError, match="column 'contiguous' must be true/false"):
        scan_changes(scans.assign(contiguous=["yes", "no", "maybe", "yes"]))
    with pytest.raises(ParameterError, match="pairs"):
        scan_changes(scans, pairs=["all"])
    assert SECRET not in str(bad_date.value)


# ---------------------------------------------------------------------------
# FVC mixed model
# ---------------------------------------------------------------------------


def test_mixed_model_reproduces_lme4_on_dietox():
    # lme4: lmer(Weight ~ Time + (1 + Time | Pig), data = dietox), REML; the
    # values are those statsmodels' own test suite checks against R.
    statsmodels = pytest.importorskip("statsmodels")
    path = Path(statsmodels.__file__).parent / "regression/tests/results/dietox.csv"
    if not path.exists():
        pytest.skip("statsmodels was installed without its test data")
    data = pd.read_csv(path)

    fit = fit_mixed_trajectory(data, outcome="Weight", time="Time", group="Pig")
    estimates = fit.estimates.set_index("term")

    assert fit.converged
    np.testing.assert_allclose(
        estimates.loc[["intercept", "time_years"], "estimate"],
        [15.738650, 6.939014],
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        estimates.loc[["intercept", "time_years"], "se"],
        [0.5501253, 0.0798254],
        rtol=1e-3,
    )
    assert estimates.loc["sd_residual", "estimate"] ** 2 == pytest.approx(
        6.03745, rel=1e-3
    )


def _coverage(fit, truth: dict[str, float]) -> dict[str, bool]:
    estimates = fit.estimates.set_index("term")
    return {
        term: bool(
            estimates.loc[term, "lower95"] <= value <= estimates.loc[term, "upper95"]
        )
        for term, value in truth.items()
    }


def _slope_truth(biomarker: str) -> dict[str, float]:
    slope = COHORT_TRUTH["fvc_slope_pct_per_year"]
    return {
        "time_years": slope["intercept"],
        f"{biomarker}_z:time_years": slope["airway_lung_ratio_pct_z"],
    }


def test_fvc_trajectory_intervals_cover_the_true_slopes():
    cohort = synthetic_cohort(300, seed=21)
    # The generator standardises the true airway ratio with the population SD,
    # as the fit does, so its coefficients are directly comparable.
    baseline = cohort.patients[["patient_id", "true_airway_lung_ratio_pct"]]

    fit = fit_fvc_trajectory(
        cohort.lung_function, baseline, biomarker="true_airway_lung_ratio_pct"
    )
    estimates = fit.estimates.set_index("term")

    assert fit.converged
    assert fit.n_patients == 300
    assert all(_coverage(fit, _slope_truth("true_airway_lung_ratio_pct")).values())
    # Random slope SD 1.2 and visit noise 3 (absent at the first visit).
    assert 0.8 < estimates.loc["sd_time_years", "estimate"] < 1.6
    assert 2.4 < estimates.loc["sd_residual", "estimate"] < 3.3
    interaction = estimates.loc["true_airway_lung_ratio_pct_z:time_years"]
    assert interaction["upper95"] < 0 and interaction["p"] < 1e-4


@pytest.mark.slow
def test_fvc_trajectory_interval_coverage_over_cohorts():
    covered = []
    for seed in range(10):
        cohort = synthetic_cohort(150, seed=100 + seed)
        baseline = cohort.patients[["patient_id", "true_airway_lung_ratio_pct"]]
        fit = fit_fvc_trajectory(
            cohort.lung_function, baseline, biomarker="true_airway_lung_ratio_pct"
        )
        covered += _coverage(fit, _slope_truth("true_airway_lung_ratio_pct")).values()

    # 20 nominal 95% intervals: at least 17 should hold the truth (P > 0.98).
    assert sum(covered) >= 17


def test_real_world_sized_table_with_irregular_visits_fits():
    cohort = synthetic_cohort(180, seed=3, n_visits=(6, 10))
    visits_per_patient = cohort.lung_function.groupby("patient_id").size()
    baseline = cohort.baseline_table()

    fit = fit_fvc_trajectory(
        cohort.lung_function,
        baseline,
        biomarker="airway_lung_ratio_pct",
        outcome="fvc_ml",
    )

    assert visits_per_patient.between(6, 10).all()
    assert fit.converged
    # Patients whose baseline scan was gapped have no airway ratio.
    gapped = baseline["airway_lung_ratio_pct"].isna().sum()
    assert fit.n_patients == 180 - gapped
    estimates = fit.estimates.set_index("term")
    assert estimates.loc["airway_lung_ratio_pct_z:time_years", "upper95"] < 0


def test_boundary_fit_is_reported_with_a_warning_class():
    # No random slope in truth: its variance belongs on the boundary.
    rng = np.random.default_rng(0)
    rows = []
    for i in range(120):
        intercept = rng.normal(80, 12)
        for years in np.cumsum(np.r_[0, rng.uniform(0.3, 1.2, 6)]):
            rows.append(
                {
                    "patient_id": f"Q{i}",
                    "date": pd.Timestamp("2015-01-01")
                    + pd.Timedelta(days=round(years * 365.25)),
                    "fvc_pct": intercept - 1.5 * years + rng.normal(0, 3),
                }
            )

    with pytest.warns(MixedModelConvergenceWarning, match="boundary"):
        fit = fit_fvc_trajectory(pd.DataFrame(rows))

    estimates = fit.estimates.set_index("term")
    assert (
        estimates.loc["time_years", "lower95"]
        < -1.5
        < estimates.loc["time_years", "upper95"]
    )


def test_non_convergence_is_surfaced_not_swallowed(monkeypatch):
    from statsmodels.regression.mixed_linear_model import MixedLM

    original = MixedLM.fit

    def never_converges(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        result.converged = False
        return result

    monkeypatch.setattr(MixedLM, "fit", never_converges)
    cohort = synthetic_cohort(60, seed=2)

    with pytest.warns(MixedModelConvergenceWarning, match="did not converge cleanly"):
        fit = fit_fvc_trajectory(cohort.lung_function, optimizers=("bfgs", "cg"))

    assert not fit.converged
    assert np.isfinite(fit.estimates["estimate"]).all()


def test_trajectory_input_errors():
    cohort = synthetic_cohort(40, seed=1)
    baseline = cohort.baseline_table()

    with pytest.raises(DataError, match="column 'airway_volume_cm3' not found"):
        fit_fvc_trajectory(
            cohort.lung_function, baseline, biomarker="airway_volume_cm3"
        )
    with pytest.raises(DataError, match="does not vary"):
        fit_fvc_trajectory(
            cohort.lung_function, baseline.assign(age=50.0), biomarker="age"
        )
    with pytest.raises(ParameterError, match="optimizers"):
        fit_fvc_trajectory(cohort.lung_function, optimizers=("newton",))
    with pytest.raises(DataError, match="at least 3 patients"):
        fit_fvc_trajectory(cohort.lung_function.head(3))


# ---------------------------------------------------------------------------
# Landmark analysis
# ---------------------------------------------------------------------------


def _landmark_cohort(
    n: int, change_log_hr: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two scans per patient; after the second, hazard depends on the change.

    The extent grows at a per-patient rate independent of the baseline
    extent; after the second scan the log hazard is
    ``0.04 (extent - 12) + change_log_hr (rate - 1)``. Before it, deaths occur
    at a low constant rate, unrelated to either.
    """
    rng = np.random.default_rng(seed)
    extent = rng.lognormal(np.log(12.0), 0.6, n)
    rate = rng.normal(1.0, 1.5, n)
    interval = rng.uniform(1.0, 2.0, n)
    log_hazard = 0.04 * (extent - 12.0) + change_log_hr * (rate - 1.0)
    early_death = rng.exponential(1 / 0.03, n)
    late_death = interval + rng.exponential(1 / (0.12 * np.exp(log_hazard)))
    death = np.where(early_death < interval, early_death, late_death)
    censor = interval + rng.uniform(1.0, 8.0, n)
    first_scan = pd.Timestamp("2010-01-01") + pd.to_timedelta(
        rng.integers(0, 2000, n), "D"
    )
    second_scan = first_scan + pd.to_timedelta(np.round(interval * 365.25), "D")
    ids = [f"S{i:03d}" for i in range(n)]
    scans = pd.DataFrame(
        {
            "patient_id": ids * 2,
            "scan_date": [*first_scan, *second_scan],
            "contiguous": True,
            "kernel": "B70f",
            "fibrosis_extent_pct": np.r_[
                extent, extent + rate * interval + rng.normal(0, 0.3, n)
            ],
        }
    )
    outcomes = pd.DataFrame(
        {
            "patient_id": ids,
            "time_years": np.minimum(death, censor),
            "death": (death <= censor).astype(int),
        }
    )
    return scans, outcomes


def test_landmark_change_beats_baseline_when_it_carries_signal():
    scans, outcomes = _landmark_cohort(300, change_log_hr=0.8, seed=0)

    data = landmark_dataset(scans, outcomes, time_col="time_years", event_col="death")
    result = compare_landmark_models(
        data,
        baseline=["fibrosis_extent_pct"],
        change=["fibrosis_extent_pct_change_per_year"],
    )
    full = result.comparison.set_index("model").loc["baseline + change"]
    change_row = result.cox_summary.set_index("covariate").loc[
        "fibrosis_extent_pct_change_per_year"
    ]

    assert full["lr_p"] < 1e-10
    assert full["delta_c"] > 0.08
    assert full["delta_c_cv"] > 0.08
    assert change_row["hr_lower95"] < math.exp(0.8) < change_row["hr_upper95"]


def test_landmark_change_adds_nothing_without_signal():
    scans, outcomes = _landmark_cohort(300, change_log_hr=0.0, seed=1)

    data = landmark_dataset(scans, outcomes, time_col="time_years", event_col="death")
    result = compare_landmark_models(
        data,
        baseline=["fibrosis_extent_pct"],
        change=["fibrosis_extent_pct_change_per_year"],
    )
    full = result.comparison.set_index("model").loc["baseline + change"]

    assert full["lr_p"] > 0.05
    assert abs(full["delta_c_cv"]) < 0.03


def test_landmark_dataset_keeps_patients_at_risk_and_resets_time():
    scans = pd.DataFrame(
        {
            "patient_id": ["A", "A", "B", "B", "C", "C", "D", "D", "E"],
            "scan_date": [
                "2020-01-01",
                "2021-01-01",
                "2020-01-01",
                "2021-01-01",
                "2020-01-01",
                "2022-01-01",
                "2020-01-01",
                "2021-01-01",
                "2020-01-01",
            ],
            "fibrosis_extent_pct": [10.0, 12.0, 20.0, 21.0, 5.0, 9.0, 8.0, 8.0, 7.0],
        }
    )
    landmark = 366 / 365.25
    outcomes = pd.DataFrame(
        {
            "patient_id": ["A", "B", "C", "D", "E"],
            # B dies before the second scan; D is censored exactly at it.
            "time_years": [3.0, 0.9, 4.0, landmark, 5.0],
            "event": [1, 1, 0, 0, 0],
            "age": [60, 70, 50, 40, 30],
        }
    )

    own = landmark_dataset(scans, outcomes, time_col="time_years", event_col="event")
    fixed = landmark_dataset(
        scans, outcomes, time_col="time_years", event_col="event", landmark_years=1.5
    )

    assert list(own["patient_id"]) == ["A", "C"]
    row = own.set_index("patient_id").loc["A"]
    assert row["time_from_landmark_years"] == pytest.approx(3.0 - landmark)
    assert row["event"] == 1
    assert row["fibrosis_extent_pct_change_per_year"] == pytest.approx(2.0 / landmark)
    assert row["age"] == 60
    # With a fixed landmark at 1.5 years C's second scan (2 years) is too late.
    assert list(fixed["patient_id"]) == ["A"]
    assert fixed["time_from_landmark_years"].iloc[0] == pytest.approx(1.5)
    with pytest.raises(DataError, match="'event' must be 0 or 1"):
        landmark_dataset(
            scans, outcomes.assign(event=2), time_col="time_years", event_col="event"
        )


def test_landmark_with_too_few_events_is_a_data_error():
    scans, outcomes = _landmark_cohort(30, change_log_hr=0.0, seed=2)
    outcomes["death"] = 0
    outcomes.loc[:1, "death"] = 1
    data = landmark_dataset(scans, outcomes, time_col="time_years", event_col="death")

    with pytest.raises(DataError, match="too few"):
        compare_landmark_models(
            data,
            baseline=["fibrosis_extent_pct"],
            change=["fibrosis_extent_pct_change_per_year"],
        )


# ---------------------------------------------------------------------------
# Cohort extension, plots and the command line
# ---------------------------------------------------------------------------


def test_cohort_visit_schedule_is_backward_compatible():
    default = synthetic_cohort(80, seed=5)
    fixed_size = synthetic_cohort(80, seed=5, n_visits=(6, 10))

    assert default.patients.drop(columns="true_fvc_slope_pct_per_year").equals(
        fixed_size.patients.drop(columns="true_fvc_slope_pct_per_year")
    )
    assert default.scans.equals(fixed_size.scans)
    follow_up = default.patients.set_index("patient_id")["time_years"]
    last_visit = default.lung_function.groupby("patient_id")[
        "years_from_baseline"
    ].max()
    assert (last_visit <= follow_up.loc[last_visit.index] + 1e-3).all()
    assert fixed_size.lung_function.groupby("patient_id").size().between(6, 10).all()
    with pytest.raises(RadsclError, match="n_visits"):
        synthetic_cohort(10, n_visits=(5, 2))


@pytest.fixture(scope="module")
def cohort_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("longitudinal_inputs")
    cohort = synthetic_cohort(160, repeat_fraction=0.7, seed=12)
    paths = {
        "features": folder / "features.csv",
        "lung_function": folder / "lung_function.csv",
        "outcome": folder / "outcome.csv",
    }
    cohort.scans.to_csv(paths["features"], index=False)
    cohort.lung_function.to_csv(paths["lung_function"], index=False)
    cohort.patients[["patient_id", "time_years", "death", "age"]].to_csv(
        paths["outcome"], index=False
    )
    return paths


def test_plots_are_written(tmp_path):
    cohort = synthetic_cohort(90, repeat_fraction=0.8, seed=4)
    fit = fit_fvc_trajectory(
        cohort.lung_function, cohort.baseline_table(), biomarker="fibrosis_extent_pct"
    )
    data = pd.DataFrame(
        {
            "change": np.linspace(-1, 1, 30),
            "time": np.linspace(0.5, 5, 30),
            "event": np.tile([0, 1, 1], 10),
        }
    )

    spaghetti = plot_fvc_trajectories(fit, tmp_path / "fvc.png")
    change = plot_change_vs_outcome(
        data,
        tmp_path / "change.png",
        change_col="change",
        time_col="time",
        event_col="event",
    )

    for path in (spaghetti, change):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 20_000


def test_cli_longitudinal_end_to_end(cohort_files, tmp_path, capsys):
    out = tmp_path / "out"

    code = main(
        [
            "longitudinal",
            "--features",
            str(cohort_files["features"]),
            "--lung-function",
            str(cohort_files["lung_function"]),
            "--rule",
            "eustar",
            "--biomarker",
            "fibrosis_extent_pct",
            "--outcome",
            str(cohort_files["outcome"]),
            "--event",
            "death",
            "--covariates",
            "age",
            "--out",
            str(out),
        ]
    )

    assert code == 0
    for name in (
        "change.csv",
        "progression.csv",
        "trajectory.csv",
        "trajectory_fit.json",
        "fvc_trajectories.png",
        "change_vs_outcome.png",
        "landmark_comparison.csv",
        "landmark_cox.csv",
    ):
        assert (out / name).stat().st_size > 0, name
    progression = pd.read_csv(out / "progression.csv")
    assert set(progression["rule"]) == {"eustar"}
    assert set(progression["band"]) <= set(EUSTAR_BANDS)
    trajectory = pd.read_csv(out / "trajectory.csv").set_index("term")
    assert "fibrosis_extent_pct_z:time_years" in trajectory.index
    comparison = pd.read_csv(out / "landmark_comparison.csv")
    assert list(comparison["model"]) == ["baseline", "baseline + change"]
    assert "trajectory: fvc_pct" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param(["--rule", "gap"], "rule must be one of", id="unknown-rule"),
        pytest.param(
            ["--biomarker", "nope_pct"], "column 'nope_pct' not found", id="col"
        ),
        pytest.param(
            ["--patient-col", "subject"], "column 'subject' not found", id="pid"
        ),
        pytest.param(["--fvc", "fvc_l"], "--fvc must be", id="fvc"),
    ],
)
def test_cli_longitudinal_bad_input_is_one_line_exit_2(
    cohort_files, tmp_path, capsys, arguments, message
):
    code = main(
        [
            "longitudinal",
            "--features",
            str(cohort_files["features"]),
            "--lung-function",
            str(cohort_files["lung_function"]),
            "--out",
            str(tmp_path / "out"),
            *arguments,
        ]
    )

    stderr = capsys.readouterr().err
    assert code == 2
    assert message in stderr
    assert stderr.count("\n") == 1


def test_cli_longitudinal_missing_file(tmp_path, capsys):
    code = main(
        [
            "longitudinal",
            "--features",
            str(tmp_path / "absent.csv"),
            "--lung-function",
            str(tmp_path / "absent.csv"),
            "--out",
            str(tmp_path / "out"),
        ]
    )

    assert code == 2
    assert "absent.csv: file not found (given to --features)" in capsys.readouterr().err
