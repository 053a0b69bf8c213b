import numpy as np
import pandas as pd
import pytest

from radscl.errors import ParameterError
from radscl.models.competing import cause_specific_cox
from radscl.models.competing import cause_specific_table
from radscl.models.competing import cumulative_incidence
from radscl.phantom import synthetic_cohort


def test_cumulative_incidence_hand_worked():
    # Times 1..6: PH at 1, death at 2, censored at 3, PH at 4, death at 5, PH at 6.
    time = [1, 2, 3, 4, 5, 6]
    status = [1, 2, 0, 1, 2, 1]
    curve = cumulative_incidence(time, status, cause=1).set_index("time")["incidence"]

    # S(t-) jumps: 1 -> 5/6 -> 4/6 -> (censor) -> 4/6 * 1/2 -> 4/6 * 1/2 * 0 ...
    assert curve.loc[1.0] == pytest.approx(1 / 6)
    assert curve.loc[2.0] == pytest.approx(1 / 6)
    assert curve.loc[4.0] == pytest.approx(1 / 6 + (4 / 6) * (1 / 3))
    assert curve.loc[6.0] == pytest.approx(
        1 / 6 + (4 / 6) * (1 / 3) + (4 / 6) * (2 / 3) * (1 / 2)
    )


def test_cumulative_incidence_matches_lifelines_without_ties():
    from lifelines import AalenJohansenFitter

    rng = np.random.default_rng(3)
    time = rng.exponential(5.0, 300)
    status = rng.choice([0, 1, 2], size=300, p=[0.3, 0.3, 0.4])
    ours = cumulative_incidence(time, status, cause=1)
    reference = AalenJohansenFitter(calculate_variance=False).fit(
        time, status, event_of_interest=1
    )

    expected = reference.cumulative_density_.iloc[:, 0]
    np.testing.assert_allclose(
        ours["incidence"].to_numpy(), expected.to_numpy(), atol=1e-12
    )


def test_cause_specific_cox_recovers_vessel_effect():
    table = synthetic_cohort(1500, seed=12).patients
    table = table.assign(
        vessel_z=lambda t: (
            (t.true_vessel_volume_ml - t.true_vessel_volume_ml.mean())
            / t.true_vessel_volume_ml.std(ddof=0)
        )
    )
    summary = cause_specific_cox(
        table, "ph_time_years", "ph_status", ["vessel_z", "dlco_pct"], cause=1
    )

    vessel = summary.set_index("covariate").loc["vessel_z"]
    assert vessel["hr_lower95"] < np.exp(0.65) < vessel["hr_upper95"]
    dlco = summary.set_index("covariate").loc["dlco_pct"]
    assert dlco["coef"] == pytest.approx(-0.025, abs=3 * dlco["se"])


def test_unknown_cause_is_an_error():
    table = pd.DataFrame({"t": [1.0, 2.0, 3.0], "s": [0, 1, 2]})
    assert list(cause_specific_table(table, "t", "s", 2)["s"]) == [0, 0, 1]
    with pytest.raises(ParameterError, match="cause 3"):
        cause_specific_table(table, "t", "s", 3)
