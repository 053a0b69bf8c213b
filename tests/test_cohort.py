import numpy as np
import pytest

from radscl.errors import RadsclError
from radscl.phantom import synthetic_cohort


def test_cohort_is_reproducible_and_shaped():
    first = synthetic_cohort(120, n_centres=3, seed=7)
    second = synthetic_cohort(120, n_centres=3, seed=7)

    assert first.patients.equals(second.patients)
    assert first.scans.equals(second.scans)
    assert len(first.patients) == 120
    assert first.patients["patient_id"].is_unique
    assert first.scans["case_id"].is_unique
    assert set(first.patients["centre"]) == {"centre_A", "centre_B", "centre_C"}
    assert (first.patients["time_years"] > 0).all()
    assert set(first.patients["death"]) <= {0, 1}
    assert set(first.patients["ph_status"]) <= {0, 1, 2}


def test_gapped_scans_leave_tree_measures_empty():
    cohort = synthetic_cohort(300, gapped_fraction=0.3, seed=3)
    gapped = cohort.scans[~cohort.scans["contiguous"]]

    assert len(gapped) > 40
    assert gapped["airway_volume_ml"].isna().all()
    assert gapped["vessel_volume_csa_lt5_ml"].isna().all()
    assert gapped["fibrosis_extent_pct"].notna().all()
    assert (gapped["slice_interval_mm"] == 10.0).all()


def test_repeat_scans_progress():
    cohort = synthetic_cohort(400, repeat_fraction=0.5, seed=11)
    scans = cohort.scans.set_index(["patient_id", "scan_index"])["phantom_fibrosis_pct"]
    repeated = scans.unstack().dropna()

    assert len(repeated) > 100
    assert (repeated[1] >= repeated[0]).all()
    assert (repeated[1] - repeated[0]).mean() > 0.5


def test_fibrosis_extent_drives_mortality():
    cohort = synthetic_cohort(1000, seed=5)
    patients = cohort.patients
    high = patients["true_fibrosis_extent_pct"] > patients["true_fibrosis_extent_pct"].median()

    death_rate_high = patients.loc[high, "death"].sum() / patients.loc[high, "time_years"].sum()
    death_rate_low = patients.loc[~high, "death"].sum() / patients.loc[~high, "time_years"].sum()
    assert death_rate_high > 1.5 * death_rate_low
    assert np.corrcoef(patients["true_fibrosis_extent_pct"], patients["fvc_pct"])[0, 1] < -0.3


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"n_patients": 0}, id="no-patients"),
        pytest.param({"n_patients": 10, "n_centres": 9}, id="too-many-centres"),
        pytest.param({"n_patients": 10, "repeat_fraction": 1.5}, id="bad-fraction"),
    ],
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(RadsclError):
        synthetic_cohort(**kwargs)
