import numpy as np
import pytest
from sksurv.metrics import concordance_index_censored
from sksurv.metrics import concordance_index_ipcw
from sksurv.metrics import cumulative_dynamic_auc
from sksurv.metrics import integrated_brier_score as sksurv_ibs
from sksurv.util import Surv

from radscl.errors import DataError
from radscl.models.metrics import Outcome
from radscl.models.metrics import ResampledMetrics
from radscl.models.metrics import bootstrap_weights
from radscl.models.metrics import harrell_c
from radscl.models.metrics import integrated_brier
from radscl.models.metrics import integrated_brier_score
from radscl.models.metrics import time_dependent_auc
from radscl.models.metrics import uno_c


@pytest.fixture(scope="module")
def predictions():
    """Censored outcomes with tied times and tied risk scores."""
    rng = np.random.default_rng(0)
    n = 400
    x = rng.normal(size=n)
    event_time = np.round(rng.exponential(np.exp(-x)) * 10, 1) + 0.1
    censor_time = np.round(rng.uniform(0, 15, n), 1) + 0.1
    time = np.minimum(event_time, censor_time)
    event = event_time <= censor_time
    risk = np.round(x + rng.normal(0, 0.5, n), 1)
    grid = np.linspace(np.quantile(time, 0.1), np.quantile(time, 0.8), 15)
    survival = np.exp(-np.outer(np.exp(risk), grid) / 10)
    return time, event, risk, grid, survival


def test_agrees_with_scikit_survival(predictions):
    time, event, risk, grid, survival = predictions
    y = Surv.from_arrays(event, time)
    tau = float(np.quantile(time, 0.8))
    horizons = np.quantile(time, [0.2, 0.5, 0.7])

    assert (np.diff(np.sort(risk)) == 0).any() and (np.diff(np.sort(time)) == 0).any()
    assert harrell_c(time, event, risk) == pytest.approx(
        concordance_index_censored(event, time, risk)[0], abs=1e-12
    )
    assert uno_c(time, event, risk, tau=tau) == pytest.approx(
        concordance_index_ipcw(y, y, risk, tau=tau)[0], abs=1e-12
    )
    assert time_dependent_auc(time, event, risk, horizons) == pytest.approx(
        cumulative_dynamic_auc(y, y, risk, horizons)[0], abs=1e-12
    )
    assert integrated_brier_score(time, event, survival, grid) == pytest.approx(
        sksurv_ibs(y, y, survival, grid), abs=1e-12
    )


def test_bootstrap_weights_equal_resampled_rows(predictions):
    time, event, risk, grid, survival = predictions
    y = Surv.from_arrays(event, time)
    tau = float(np.quantile(time, 0.8))
    horizons = np.quantile(time, [0.3, 0.6])
    weights = bootstrap_weights(len(time), 4, np.random.default_rng(1))

    metrics = ResampledMetrics(
        Outcome.from_arrays(time, event), weights, horizons=horizons, tau=tau
    )
    result = metrics.discrimination(risk)
    ibs = integrated_brier(metrics.brier(survival, grid), grid)

    assert (weights.sum(axis=1) == len(time)).all()
    for k in range(4):
        rows = np.repeat(np.arange(len(time)), weights[k].astype(int))
        resampled = y[rows]
        assert result.harrell_c[k] == pytest.approx(
            concordance_index_censored(event[rows], time[rows], risk[rows])[0],
            abs=1e-12,
        )
        assert result.uno_c[k] == pytest.approx(
            concordance_index_ipcw(resampled, resampled, risk[rows], tau=tau)[0],
            abs=1e-12,
        )
        assert result.auc[k] == pytest.approx(
            cumulative_dynamic_auc(resampled, resampled, risk[rows], horizons)[0],
            abs=1e-12,
        )
        assert ibs[k] == pytest.approx(
            sksurv_ibs(resampled, resampled, survival[rows], grid), abs=1e-12
        )


def test_perfect_and_reversed_and_constant_scores():
    time = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    event = np.array([True, True, False, True, False])

    assert harrell_c(time, event, -time) == 1.0
    assert harrell_c(time, event, time) == 0.0
    assert harrell_c(time, event, np.zeros(5)) == 0.5


def test_bad_inputs_raise():
    with pytest.raises(DataError, match="censored"):
        harrell_c([1.0, 2.0], [False, False], [0.1, 0.2])
    with pytest.raises(DataError, match="risk scores"):
        harrell_c([1.0, 2.0, 3.0], [True, False, True], [0.1, np.nan, 0.2])
    with pytest.raises(DataError, match="equal length"):
        harrell_c([1.0, 2.0, 3.0], [True, False], [0.1, 0.2, 0.3])
