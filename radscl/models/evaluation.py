"""Honest evaluation: repeated cross-validation, bootstrap intervals and tests.

Each model is fitted on the training folds of a repeated, event-stratified
K-fold split and predicts the held-out patients, so every patient gets one
out-of-fold risk score (and survival curve) per repeat. Every model sees the
same splits, which makes the comparisons paired.

Metrics are computed on the pooled out-of-fold predictions of each repeat and
averaged over repeats. Their 95 % intervals come from a bootstrap over patients
of those predictions: a resample reweights patients and every metric of every
model is recomputed on the same resamples. The models are not refitted inside
the bootstrap, so these intervals describe how the cross-validated performance
varies with the patients evaluated, not with the patients the model was
trained on. Pooling out-of-fold scores assumes risk scores from different
folds are on a common scale, which holds for Cox linear predictors and forest
cumulative hazards fitted on similar training sets.

For the change in C against the reference model the training variability is
the larger part: a biomarker with no signal shifts each fold's fitted risk a
little, and the cross-validated change is then slightly negative in almost
every resample, so a bootstrap of fixed predictions would call a useless
biomarker "harmful" with an interval excluding 0 in a sizeable share of
cohorts. The interval of the change in C is therefore the corrected
repeated-cross-validation t interval of Nadeau and Bengio (Machine Learning
2003;52:239-281): the per-fold paired differences give the variance, inflated
by ``1/(k r) + n_test/n_train`` for the overlap of training sets, around the
pooled estimate. It is conservative; a call of added value should rest on the
likelihood-ratio test (for nested Cox models) with the interval as its size.

The likelihood-ratio test of nested Cox models is an in-sample test on the
patients complete for the larger model's covariates.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import TransformerMixin
from sklearn.model_selection import RepeatedStratifiedKFold

from radscl.errors import DataError
from radscl.errors import ParameterError
from radscl.models.estimators import CoxPH
from radscl.models.estimators import predict_survival
from radscl.models.estimators import survival_pipeline
from radscl.models.metrics import Outcome
from radscl.models.metrics import ResampledMetrics
from radscl.models.metrics import bootstrap_weights
from radscl.models.metrics import integrated_brier
from radscl.models.survival import covariate_frame
from radscl.models.survival import survival_target

logger = logging.getLogger(__name__)

#: Default times (in the unit of the time column) of the time-dependent AUC.
DEFAULT_HORIZONS = (1.0, 2.0, 3.0, 5.0)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One model of a comparison: an estimator on a set of covariates.

    Attributes
    ----------
    name : str
        Label, e.g. ``"cox: baseline+biomarkers"``.
    estimator : str
        ``cox``, ``coxnet`` or ``rsf``.
    covariates : tuple of str
        Columns the model uses.
    role : str
        ``baseline``, ``biomarkers`` or ``baseline+biomarkers``.
    """

    name: str
    estimator: str
    covariates: tuple[str, ...]
    role: str


@dataclasses.dataclass
class CrossValidatedPredictions:
    """Out-of-fold predictions of one model.

    Attributes
    ----------
    spec : ModelSpec
        The model.
    risk : numpy.ndarray, shape (n_repeats, n)
        Out-of-fold risk scores per repeat.
    survival : numpy.ndarray, shape (n_repeats, n, n_times)
        Out-of-fold event-free probabilities at ``times``.
    times : numpy.ndarray
        Times of ``survival``.
    fold : numpy.ndarray, shape (n_repeats, n)
        The fold in which each patient was held out, per repeat.
    """

    spec: ModelSpec
    risk: np.ndarray
    survival: np.ndarray
    times: np.ndarray
    fold: np.ndarray

    def survival_at(self, time: float) -> np.ndarray:
        """Out-of-fold event-free probability at ``time``, mean over repeats."""
        index = int(np.argmin(np.abs(self.times - time)))
        if not np.isclose(self.times[index], time):
            raise ParameterError(f"no predictions were kept at time {time}")
        return self.survival[:, :, index].mean(axis=0)


def _fit_predict(
    spec: ModelSpec,
    table: pd.DataFrame,
    y: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    times: np.ndarray,
    harmonizer: TransformerMixin | None,
    random_state: int,
) -> tuple[np.ndarray, np.ndarray]:
    pipeline = survival_pipeline(
        spec.estimator,
        spec.covariates,
        harmonizer=harmonizer,
        random_state=random_state,
    )
    pipeline.fit(table.iloc[train], y[train])
    test_rows = table.iloc[test]
    return pipeline.predict(test_rows), predict_survival(pipeline, test_rows, times)


def cross_validated_predictions(
    table: pd.DataFrame,
    y: np.ndarray,
    specs: Sequence[ModelSpec],
    *,
    times: Sequence[float],
    folds: int = 5,
    repeats: int = 5,
    seed: int = 0,
    n_jobs: int = 1,
    harmonizer: TransformerMixin | None = None,
) -> list[CrossValidatedPredictions]:
    """Out-of-fold predictions of several models on the same repeated splits.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per patient with every column the models (and the
        harmonisation step) need.
    y : structured array
        Survival target.
    specs : sequence of ModelSpec
        The models.
    times : sequence of float
        Times at which to keep the predicted survival curves.
    folds, repeats : int
        Repeated stratified K-fold (stratified on the event indicator).
    seed : int
        Seed of the splits and of the estimators.
    n_jobs : int
        Parallel fits (joblib processes); -1 for all cores.
    harmonizer : transformer, optional
        Fitted on each training fold before imputation and scaling.

    Returns
    -------
    list of CrossValidatedPredictions
        In the order of ``specs``.
    """
    from joblib import Parallel
    from joblib import delayed

    if folds < 2:
        raise ParameterError(f"folds must be at least 2, but found {folds}")
    if repeats < 1:
        raise ParameterError(f"repeats must be at least 1, but found {repeats}")
    event = np.asarray(y[y.dtype.names[0]]).astype(bool)
    if event.sum() < folds or (~event).sum() < folds:
        raise DataError(
            f"{int(event.sum())} events and {int((~event).sum())} censored patients "
            "are too "
            f"few for {folds}-fold cross-validation"
        )
    times = np.asarray(times, dtype=float)

    splitter = RepeatedStratifiedKFold(
        n_splits=folds, n_repeats=repeats, random_state=seed
    )
    splits = list(splitter.split(np.zeros(len(table)), event))
    tasks = [(s, k) for s in range(len(specs)) for k in range(len(splits))]
    logger.info("cross-validation: %d models x %d fits", len(specs), len(splits))
    results = Parallel(n_jobs=n_jobs)(
        delayed(_fit_predict)(
            specs[s], table, y, splits[k][0], splits[k][1], times, harmonizer, seed + k
        )
        for s, k in tasks
    )

    n = len(table)
    out = []
    for s, spec in enumerate(specs):
        risk = np.full((repeats, n), np.nan)
        survival = np.full((repeats, n, times.shape[0]), np.nan)
        fold = np.zeros((repeats, n), dtype=int)
        for k, (_, test) in enumerate(splits):
            fold_risk, fold_survival = results[s * len(splits) + k]
            risk[k // folds, test] = fold_risk
            survival[k // folds, test] = fold_survival
            fold[k // folds, test] = k % folds
        out.append(CrossValidatedPredictions(spec, risk, survival, times, fold))
    return out


@dataclasses.dataclass
class LikelihoodRatioTest:
    """Likelihood-ratio test of a Cox model against a nested one."""

    chi2: float
    df: int
    p: float
    n: int


def likelihood_ratio_test(
    table: pd.DataFrame,
    time: str,
    event: str,
    reduced: Sequence[str],
    full: Sequence[str],
) -> LikelihoodRatioTest:
    """Compare nested Cox models by their partial likelihoods.

    Both models are fitted to the patients complete for ``full``.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per patient.
    time, event : str
        Outcome columns (event 0/1).
    reduced : sequence of str
        Covariates of the smaller model, all of them in ``full``.
    full : sequence of str
        Covariates of the larger model.

    Returns
    -------
    LikelihoodRatioTest
    """
    from scipy.stats import chi2

    extra = [c for c in full if c not in reduced]
    if any(c not in full for c in reduced) or not extra:
        raise ParameterError(
            "the reduced model's covariates must be a strict subset of the full model's"
        )
    covariates = covariate_frame(table, list(full))
    complete = covariates.notna().all(axis=1).to_numpy()
    y = survival_target(
        table[time].to_numpy()[complete], table[event].to_numpy()[complete] == 1
    )

    full_fit = CoxPH().fit(covariates[complete], y)
    reduced_fit = CoxPH().fit(covariates.loc[complete, list(reduced)], y)
    statistic = max(2.0 * (full_fit.log_likelihood_ - reduced_fit.log_likelihood_), 0.0)
    return LikelihoodRatioTest(
        chi2=statistic,
        df=len(extra),
        p=float(chi2.sf(statistic, len(extra))),
        n=int(complete.sum()),
    )


def proportional_hazards_test(
    table: pd.DataFrame, time: str, event: str, covariates: Sequence[str]
) -> pd.DataFrame:
    """Test of proportional hazards from scaled Schoenfeld residuals.

    lifelines' test with rank-transformed time; a small p suggests the effect
    of that covariate changes over follow-up.

    Returns
    -------
    pandas.DataFrame
        ``covariate, statistic, p`` (patients complete for the covariates).
    """
    from lifelines import CoxPHFitter
    from lifelines.statistics import proportional_hazard_test

    frame = covariate_frame(table, list(covariates)).dropna()
    frame["_time"] = table.loc[frame.index, time].astype(float)
    frame["_event"] = (table.loc[frame.index, event] == 1).astype(int)
    fitter = CoxPHFitter().fit(frame, duration_col="_time", event_col="_event")
    result = proportional_hazard_test(fitter, frame, time_transform="rank")
    summary = result.summary
    return pd.DataFrame(
        {
            "covariate": [str(i) for i in summary.index],
            "statistic": summary["test_statistic"].to_numpy(),
            "p": summary["p"].to_numpy(),
        }
    )


def calibration_table(
    time: Sequence[float],
    event: Sequence[bool],
    survival_at_time: Sequence[float],
    at_time: float,
    *,
    groups: int = 5,
) -> pd.DataFrame:
    """Predicted against observed risk at one time, by group of predicted risk.

    Patients are grouped by quantiles of predicted risk ``1 - S(t)``; the
    observed risk of a group is one minus its Kaplan-Meier estimate at ``t``,
    with a log-log 95 % interval.

    Returns
    -------
    pandas.DataFrame
        ``group, n, events, predicted_risk, observed_risk, observed_lower95,
        observed_upper95``.
    """
    from sksurv.nonparametric import kaplan_meier_estimator

    time = np.asarray(time, dtype=float)
    event = np.asarray(event).astype(bool)
    risk = 1.0 - np.asarray(survival_at_time, dtype=float)
    if groups < 2:
        raise ParameterError(f"groups must be at least 2, but found {groups}")

    ranks = pd.Series(risk).rank(method="first").to_numpy()
    group = np.minimum((ranks - 1) * groups // len(risk), groups - 1).astype(int)
    rows = []
    for g in range(groups):
        member = group == g
        if not member.any():
            continue
        observed, lower, upper = np.nan, np.nan, np.nan
        if event[member].any():
            km_time, km_survival, km_interval = kaplan_meier_estimator(
                event[member], time[member], conf_type="log-log"
            )
            index = np.searchsorted(km_time, at_time, side="right") - 1
            if index >= 0 and at_time <= time[member].max():
                observed = 1.0 - km_survival[index]
                lower, upper = 1.0 - km_interval[1, index], 1.0 - km_interval[0, index]
            elif index < 0:
                observed, lower, upper = 0.0, 0.0, 0.0
        rows.append(
            {
                "group": g + 1,
                "n": int(member.sum()),
                "events": int(event[member].sum()),
                "predicted_risk": float(risk[member].mean()),
                "observed_risk": observed,
                "observed_lower95": lower,
                "observed_upper95": upper,
            }
        )
    return pd.DataFrame(rows)


def usable_horizons(
    time: np.ndarray, event: np.ndarray, horizons: Sequence[float]
) -> np.ndarray:
    """Horizons with an event before them and follow-up beyond them."""
    horizons = np.asarray(horizons, dtype=float)
    first_event = time[event].min()
    keep = (horizons >= first_event) & (horizons < time.max())
    return horizons[keep]


@dataclasses.dataclass
class Summary:
    """Point estimates and bootstrap distributions of every model's metrics."""

    table: pd.DataFrame
    harrell_c: dict[str, np.ndarray]
    auc_curves: pd.DataFrame


def summarise_predictions(
    predictions: Sequence[CrossValidatedPredictions],
    time: np.ndarray,
    event: np.ndarray,
    *,
    reference: str,
    horizons: Sequence[float],
    tau: float | None,
    brier_times: np.ndarray,
    n_bootstrap: int = 200,
    seed: int = 0,
    curve_times: np.ndarray | None = None,
) -> Summary:
    """Metrics with bootstrap intervals, and the paired change in C.

    Parameters
    ----------
    predictions : sequence of CrossValidatedPredictions
        Out-of-fold predictions of each model (same patients, same repeats).
    time, event : numpy.ndarray
        The outcome.
    reference : str
        Name of the model the change in C is measured against.
    horizons : sequence of float
        Times of the time-dependent AUC.
    tau : float, optional
        Truncation time of Uno's C.
    brier_times : numpy.ndarray
        Times over which the Brier score is integrated; each must be among
        the predictions' times.
    n_bootstrap : int
        Bootstrap resamples of patients.
    seed : int
        Seed of the resampling.
    curve_times : numpy.ndarray, optional
        Times of the AUC curve (point estimates only) for plotting.

    Returns
    -------
    Summary
    """
    names = [p.spec.name for p in predictions]
    if reference not in names:
        raise ParameterError(
            f"reference model {reference!r} is not among {', '.join(names)}"
        )
    if n_bootstrap < 10:
        raise ParameterError(
            f"n_bootstrap must be at least 10, but found {n_bootstrap}"
        )

    outcome = Outcome.from_arrays(time, event)
    horizons = np.asarray(horizons, dtype=float)
    rng = np.random.default_rng(seed)
    weights = np.vstack(
        [np.ones(outcome.n), bootstrap_weights(outcome.n, n_bootstrap, rng)]
    )
    metrics = ResampledMetrics(outcome, weights, horizons=horizons, tau=tau)
    curve_metrics = None
    if curve_times is not None and len(curve_times):
        curve_metrics = ResampledMetrics(outcome, weights[:1], horizons=curve_times)

    per_model = {}
    curves = {}
    fold_c = {}
    for prediction in predictions:
        brier_index = [
            int(np.argmin(np.abs(prediction.times - t))) for t in brier_times
        ]
        harrell, uno, auc, ibs, curve = [], [], [], [], []
        for r in range(prediction.risk.shape[0]):
            result = metrics.discrimination(prediction.risk[r])
            harrell.append(result.harrell_c)
            uno.append(result.uno_c)
            auc.append(result.auc)
            brier = metrics.brier(prediction.survival[r][:, brier_index], brier_times)
            ibs.append(integrated_brier(brier, brier_times))
            if curve_metrics is not None:
                curve.append(curve_metrics.discrimination(prediction.risk[r]).auc[0])
        fold_c[prediction.spec.name] = _per_fold_harrell(outcome, prediction)
        per_model[prediction.spec.name] = {
            "harrell_c": np.mean(harrell, axis=0),
            "uno_c": np.mean(uno, axis=0),
            "auc": np.mean(auc, axis=0),
            "ibs": np.mean(ibs, axis=0),
        }
        if curve:
            curves[prediction.spec.name] = np.mean(curve, axis=0)

    rows = []
    reference_c = per_model[reference]["harrell_c"]
    for prediction in predictions:
        spec = prediction.spec
        values = per_model[spec.name]
        row: dict[str, object] = {
            "model": spec.name,
            "estimator": spec.estimator,
            "role": spec.role,
            "covariates": ",".join(spec.covariates),
            "n": outcome.n,
            "events": int(outcome.event.sum()),
        }
        row.update(_with_interval("harrell_c", values["harrell_c"]))
        row.update(_with_interval("uno_c", values["uno_c"]))
        for j, horizon in enumerate(horizons):
            row.update(_with_interval(f"td_auc_{horizon:g}", values["auc"][:, j]))
        row.update(_with_interval("ibs", values["ibs"]))
        delta = float(values["harrell_c"][0] - reference_c[0])
        lower, upper = corrected_cv_interval(
            delta, fold_c[spec.name] - fold_c[reference]
        )
        row.update(
            {"delta_c": delta, "delta_c_lower95": lower, "delta_c_upper95": upper}
        )
        rows.append(row)

    curve_table = pd.DataFrame(
        {"time": curve_times if curve_times is not None else [], **curves}
    )
    harrell = {name: values["harrell_c"] for name, values in per_model.items()}
    return Summary(pd.DataFrame(rows), harrell, curve_table)


def _per_fold_harrell(
    outcome: Outcome, prediction: CrossValidatedPredictions
) -> np.ndarray:
    """Harrell's C within each held-out fold, shape (n_repeats, n_folds)."""
    n_folds = int(prediction.fold.max()) + 1
    values = np.empty((prediction.risk.shape[0], n_folds))
    for r in range(prediction.risk.shape[0]):
        members = (prediction.fold[r][None, :] == np.arange(n_folds)[:, None]).astype(
            float
        )
        metrics = ResampledMetrics(outcome, members)
        values[r] = metrics.discrimination(prediction.risk[r]).harrell_c
    return values


def corrected_cv_interval(
    estimate: float, fold_differences: np.ndarray, level: float = 0.95
) -> tuple[float, float]:
    """Nadeau-Bengio corrected repeated-CV t interval around ``estimate``.

    Parameters
    ----------
    estimate : float
        The pooled paired difference.
    fold_differences : numpy.ndarray, shape (n_repeats, n_folds)
        The difference within each held-out fold (test share ``1 / n_folds``).
    level : float
        Coverage.

    Returns
    -------
    (float, float)
        Lower and upper bound; NaN when fewer than two folds have a value.
    """
    from scipy.stats import t as student_t

    values = fold_differences[np.isfinite(fold_differences)]
    if values.size < 2:
        return float("nan"), float("nan")
    n_folds = fold_differences.shape[1]
    test_share = 1.0 / n_folds
    inflation = 1.0 / values.size + test_share / (1.0 - test_share)
    half_width = student_t.ppf(0.5 + level / 2.0, values.size - 1) * np.sqrt(
        inflation * values.var(ddof=1)
    )
    return float(estimate - half_width), float(estimate + half_width)


def _with_interval(
    name: str, values: np.ndarray, level: float = 0.95
) -> dict[str, float]:
    """Point estimate (first row) and percentile interval of the resamples."""
    resamples = values[1:]
    resamples = resamples[np.isfinite(resamples)]
    tail = 100.0 * (1.0 - level) / 2.0
    if resamples.size == 0:
        lower = upper = np.nan
    else:
        lower, upper = np.percentile(resamples, [tail, 100.0 - tail])
    return {
        name: float(values[0]),
        f"{name}_lower95": float(lower),
        f"{name}_upper95": float(upper),
    }


__all__ = [
    "DEFAULT_HORIZONS",
    "CrossValidatedPredictions",
    "LikelihoodRatioTest",
    "ModelSpec",
    "Summary",
    "calibration_table",
    "corrected_cv_interval",
    "cross_validated_predictions",
    "likelihood_ratio_test",
    "proportional_hazards_test",
    "summarise_predictions",
    "usable_horizons",
]
