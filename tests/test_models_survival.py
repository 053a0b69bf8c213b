import numpy as np
import pandas as pd
import pytest

from radscl.errors import DataError
from radscl.errors import ParameterError
from radscl.models.survival import build_survival_table
from radscl.models.survival import covariate_frame
from radscl.models.survival import missingness_report
from radscl.models.survival import select_baseline_scans
from radscl.models.survival import survival_target
from radscl.phantom import synthetic_cohort


@pytest.fixture(scope="module")
def cohort():
    return synthetic_cohort(300, repeat_fraction=0.5, seed=4)


def test_join_keeps_baseline_scan_of_each_patient(cohort):
    clinical = cohort.patients[["patient_id", "age", "fvc_pct", "time_years", "death"]]
    survival = build_survival_table(
        cohort.scans, clinical, time="time_years", event="death"
    )

    assert len(survival.table) == 300
    assert survival.table["patient_id"].is_unique
    assert (survival.table["scan_index"] == 0).all()
    expected = cohort.baseline_table().set_index("patient_id")["fibrosis_extent_pct"]
    joined = survival.table.set_index("patient_id")["fibrosis_extent_pct"]
    assert np.allclose(joined, expected.loc[joined.index])
    assert survival.y["event"].sum() == clinical["death"].sum()


def test_baseline_scan_by_date_when_rows_are_shuffled(cohort):
    shuffled = cohort.scans.sample(frac=1.0, random_state=1).drop(
        columns=["scan_index"]
    )
    baseline = select_baseline_scans(shuffled)

    assert len(baseline) == 300
    assert set(baseline["case_id"]) == set(
        cohort.scans.loc[cohort.scans["scan_index"] == 0, "case_id"]
    )


def test_patients_without_scan_are_counted(cohort):
    clinical = cohort.patients[["patient_id", "time_years", "death"]]
    scans = cohort.scans[
        ~cohort.scans["patient_id"].isin(clinical["patient_id"].iloc[:7])
    ]
    survival = build_survival_table(scans, clinical, time="time_years", event="death")

    assert survival.n_dropped == 7
    assert len(survival.table) == 293


def _clinical():
    return pd.DataFrame(
        {
            "patient_id": ["SECRET-1", "SECRET-2", "SECRET-3"],
            "time": [1.0, 2.5, 0.0],
            "event": [1, 0, 1],
        }
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"time": [1.0, -0.5, 2.0]}, "must be >= 0", id="negative-time"),
        pytest.param({"time": [1.0, np.nan, 2.0]}, "missing value", id="missing-time"),
        pytest.param({"time": ["1", "x", "2"]}, "must be numeric", id="text-time"),
        pytest.param({"event": [1, 2, 0]}, "must hold 0/1", id="event-code-2"),
        pytest.param({"event": [0, 0, 0]}, "no events", id="no-events"),
        pytest.param(
            {"patient_id": ["SECRET-1", "SECRET-1", "SECRET-3"]},
            "more than once",
            id="dup",
        ),
    ],
)
def test_invalid_outcome_is_a_one_line_error_without_identifiers(change, message):
    clinical = _clinical().assign(**change)

    with pytest.raises(DataError, match=message) as error:
        build_survival_table(
            None, clinical, time="time", event="event", source="clinical.csv"
        )
    assert "SECRET" not in str(error.value)
    assert "\n" not in str(error.value)
    assert "clinical.csv" in str(error.value)


def test_competing_codes_are_accepted_when_asked():
    clinical = _clinical().assign(event=[1, 2, 0])

    table = build_survival_table(
        None, clinical, time="time", event="event", event_codes=(0, 1, 2)
    )
    assert list(table.y["event"]) == [True, False, False]


def test_missing_columns_are_named():
    with pytest.raises(DataError, match="'follow_up'"):
        build_survival_table(None, _clinical(), time="follow_up", event="event")


def test_covariates_must_be_numeric_and_present():
    table = pd.DataFrame({"sex": ["M", "F"], "age": [50, 60], "flag": [True, False]})

    assert list(covariate_frame(table, ["age", "flag"])["flag"]) == [1.0, 0.0]
    with pytest.raises(DataError, match="'sex' must be numeric"):
        covariate_frame(table, ["sex"])
    with pytest.raises(ParameterError, match="twice"):
        covariate_frame(table, ["age", "age"])


def test_missingness_report_counts(cohort):
    table = cohort.baseline_table()
    report = missingness_report(table, ["fvc_pct", "airway_volume_ml"])

    assert report["n_missing"].iloc[0] == 0
    assert report["n_missing"].iloc[1] == table["airway_volume_ml"].isna().sum() > 0
    assert report["missing_pct"].iloc[1] == pytest.approx(
        100 * report["n_missing"].iloc[1] / 300
    )


def test_survival_target_fields():
    y = survival_target([2.0, 1.0], [1, 0])

    assert y.dtype.names == ("event", "time")
    assert list(y["event"]) == [True, False]
    with pytest.raises(DataError):
        survival_target([1.0, 2.0], [1, 3])
