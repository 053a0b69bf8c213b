import io

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator
from sklearn.base import TransformerMixin
from sklearn.base import clone

from radscl.models.estimators import SUMMARY_COLUMNS
from radscl.models.estimators import CoxPH
from radscl.models.estimators import PenalizedCox
from radscl.models.estimators import SurvivalForest
from radscl.models.estimators import predict_survival
from radscl.models.estimators import survival_pipeline
from radscl.models.evaluation import ModelSpec
from radscl.models.evaluation import cross_validated_predictions
from radscl.models.survival import survival_target
from radscl.phantom import synthetic_cohort

# R coxph(Surv(week, arrest) ~ fin + age + race + wexp + mar + paro + prio), Efron
# ties (Fox & Weisberg, appendix to An R Companion to Applied Regression).
ROSSI_COVARIATES = ["fin", "age", "race", "wexp", "mar", "paro", "prio"]
ROSSI_COEF = [
    -0.3794222,
    -0.0574377,
    0.3138998,
    -0.1497957,
    -0.4337039,
    -0.0848711,
    0.0914971,
]
ROSSI_SE = [0.19138, 0.02200, 0.30799, 0.21222, 0.38187, 0.19576, 0.02865]
ROSSI_LR = 33.27


def _check_rossi(rossi: pd.DataFrame) -> None:
    y = survival_target(rossi["week"], rossi["arrest"])
    model = CoxPH().fit(rossi[ROSSI_COVARIATES], y)

    summary = model.summary_
    assert tuple(summary.columns) == SUMMARY_COLUMNS
    assert list(summary["covariate"]) == ROSSI_COVARIATES
    np.testing.assert_allclose(summary["coef"], ROSSI_COEF, atol=1e-4)
    np.testing.assert_allclose(summary["se"], ROSSI_SE, atol=1e-4)
    np.testing.assert_allclose(summary["hr"], np.exp(ROSSI_COEF), rtol=1e-4)
    np.testing.assert_allclose(
        summary["hr_lower95"],
        np.exp(np.array(ROSSI_COEF) - 1.959964 * np.array(ROSSI_SE)),
        rtol=1e-3,
    )
    assert 2 * (model.log_likelihood_ - model.null_log_likelihood_) == pytest.approx(
        ROSSI_LR, abs=0.01
    )


def test_cox_matches_r_on_rossi_from_lifelines():
    from lifelines.datasets import load_rossi

    _check_rossi(load_rossi())


@pytest.mark.realdata
def test_cox_matches_r_on_rossi_csv(shared_data_path):
    _check_rossi(pd.read_csv(shared_data_path("survival", "lifelines_rossi.csv")))


def test_cox_survival_matches_lifelines_at_event_times():
    from lifelines import CoxPHFitter
    from lifelines.datasets import load_rossi

    rossi = load_rossi()
    y = survival_target(rossi["week"], rossi["arrest"])
    model = CoxPH().fit(rossi[ROSSI_COVARIATES], y)
    reference = CoxPHFitter().fit(rossi, "week", "arrest")
    times = np.array([5.0, 20.0, 40.0, 52.0])

    expected = reference.predict_survival_function(
        rossi.iloc[:10], times=times
    ).T.to_numpy()
    np.testing.assert_allclose(
        model.predict_survival(rossi[ROSSI_COVARIATES].iloc[:10], times),
        expected,
        atol=1e-10,
    )
    np.testing.assert_allclose(
        model.predict(rossi[ROSSI_COVARIATES]), rossi[ROSSI_COVARIATES] @ model.coef_
    )


@pytest.fixture(scope="module")
def cohort_table():
    return synthetic_cohort(400, seed=8).baseline_table()


COVARIATES = ["fvc_pct", "dlco_pct", "fibrosis_extent_pct", "vessel_volume_ml"]


@pytest.mark.parametrize("name", ["cox", "coxnet", "rsf"])
def test_pipelines_fit_predict_and_round_trip(name, cohort_table):
    y = survival_target(cohort_table["time_years"], cohort_table["death"])
    train, test = cohort_table.iloc[:300], cohort_table.iloc[300:]
    pipeline = survival_pipeline(name, COVARIATES, random_state=1)
    if name == "rsf":
        pipeline.set_params(model__n_estimators=30)
    pipeline.fit(train, y[:300])

    risk = pipeline.predict(test)
    survival = predict_survival(pipeline, test, [1.0, 3.0, 5.0])
    buffer = io.BytesIO()
    joblib.dump(pipeline, buffer)
    buffer.seek(0)
    restored = joblib.load(buffer)

    assert test["vessel_volume_ml"].isna().any()
    assert np.isfinite(risk).all()
    assert survival.shape == (100, 3)
    assert ((survival >= 0) & (survival <= 1)).all()
    assert (np.diff(survival, axis=1) <= 1e-12).all()
    # Higher risk score, lower survival: the scores are risks, not survival times.
    assert np.corrcoef(risk, survival[:, 1])[0, 1] < -0.5
    assert pipeline.score(test, y[300:]) > 0.6
    np.testing.assert_array_equal(restored.predict(test), risk)


def test_coxnet_picks_a_penalty_from_the_path(cohort_table):
    y = survival_target(cohort_table["time_years"], cohort_table["death"])
    noise = np.random.default_rng(0).normal(size=(len(cohort_table), 6))
    X = np.column_stack([cohort_table["fibrosis_extent_pct"], noise])
    model = PenalizedCox(l1_ratio=0.9).fit((X - X.mean(0)) / X.std(0), y)

    assert model.alpha_ in model.model_.alphas_
    assert np.isfinite(model.inner_c_).all()
    assert model.coef_[0] > 0.2
    assert np.abs(model.coef_[1:]).max() < model.coef_[0] / 3


class RecordingTransformer(TransformerMixin, BaseEstimator):
    """Remembers which patients it was fitted on, and shifts one column."""

    def fit(self, X, y=None):
        self.fitted_ids_ = list(X["patient_id"])
        return self

    def transform(self, X):
        return X.assign(fvc_pct=X["fvc_pct"] + 0.0)


def test_a_harmonisation_step_is_fitted_on_training_folds_only(
    cohort_table, monkeypatch
):
    fitted = []
    original_fit = RecordingTransformer.fit

    def recording_fit(self, X, y=None):
        fitted.append(set(X["patient_id"]))
        return original_fit(self, X, y)

    monkeypatch.setattr(RecordingTransformer, "fit", recording_fit)
    y = survival_target(cohort_table["time_years"], cohort_table["death"])
    spec = ModelSpec("cox: baseline", "cox", ("fvc_pct",), "baseline")
    predictions = cross_validated_predictions(
        cohort_table,
        y,
        [spec],
        times=[1.0],
        folds=4,
        repeats=1,
        harmonizer=RecordingTransformer(),
    )

    assert len(fitted) == 4
    ids = np.asarray(cohort_table["patient_id"])
    for k, training_ids in enumerate(fitted):
        held_out = set(ids[predictions[0].fold[0] == k])
        assert training_ids.isdisjoint(held_out)
        assert len(training_ids) + len(held_out) == len(ids)


def test_forest_parameters_pass_through():
    forest = SurvivalForest(n_estimators=7, min_samples_leaf=5, max_depth=3)
    clone(forest)
    assert forest.get_params()["max_depth"] == 3
