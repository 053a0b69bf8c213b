"""Survival estimators with the scikit-learn contract, and their pipelines.

Every estimator here takes a feature matrix ``X`` and the structured target of
:func:`radscl.models.survival.survival_target`, returns a risk score from
``predict`` (higher = worse), scores with Harrell's C, and adds
``predict_survival(X, times)``: the probability of being event-free at each of
``times``. They are cloned and refitted per cross-validation fold, and a fitted
pipeline pickles with joblib.

* :class:`CoxPH` is lifelines' Cox proportional-hazards fit (Efron ties) behind
  the scikit-learn interface, keeping lifelines' coefficient table (hazard
  ratios, 95 % intervals, Wald p-values).
* :class:`PenalizedCox` is scikit-survival's elastic-net Cox model with the
  penalty chosen by an inner cross-validation on the training rows only.
* :class:`SurvivalForest` is scikit-survival's random survival forest.

:func:`survival_pipeline` wraps an estimator as ``[harmonize] -> select ->
impute -> scale -> model`` so that every preprocessing step, including a
harmonisation transformer that needs columns other than the covariates
(centre, scanner, age), is fitted on the training fold alone.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.base import TransformerMixin
from sklearn.base import clone
from sklearn.impute import SimpleImputer
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted
from sklearn.utils.validation import validate_data

from radscl.errors import DataError
from radscl.errors import ParameterError
from radscl.models.metrics import harrell_c

logger = logging.getLogger(__name__)

#: Columns of a coefficient table (``cox_summary.csv``).
SUMMARY_COLUMNS = (
    "covariate",
    "coef",
    "hr",
    "hr_lower95",
    "hr_upper95",
    "se",
    "z",
    "p",
)

#: Estimator names accepted by :func:`make_estimator` and the command line.
ESTIMATORS = ("cox", "coxnet", "rsf")


def _target_arrays(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split a structured survival target into (event, time)."""
    if (
        getattr(y, "dtype", None) is None
        or y.dtype.names is None
        or len(y.dtype.names) != 2
    ):
        raise DataError(
            "y must be a structured array with an event and a time field "
            "(see radscl.models.survival_target)"
        )
    event_field, time_field = y.dtype.names
    event = np.asarray(y[event_field]).astype(bool)
    time = np.asarray(y[time_field], dtype=float)
    if not event.any():
        raise DataError("all patients are censored; a survival model cannot be fitted")
    return event, time


def _step_values(
    step_times: np.ndarray, step_values: np.ndarray, times: Sequence[float]
) -> np.ndarray:
    """Evaluate right-continuous step functions (columns at ``step_times``) at
    ``times``; 1 before the first step, the last value after the last."""
    index = (
        np.searchsorted(step_times, np.asarray(times, dtype=float), side="right") - 1
    )
    values = step_values[:, np.clip(index, 0, None)]
    return np.where(index < 0, 1.0, values)


class _SurvivalMixin:
    """Harrell's C as ``score``, the convention of scikit-survival."""

    _estimator_type = "survival"

    def score(self, X, y) -> float:
        """Harrell's concordance index of ``predict(X)`` against ``y``."""
        event, time = _target_arrays(y)
        return harrell_c(time, event, self.predict(X))


class CoxPH(_SurvivalMixin, BaseEstimator):
    """Cox proportional-hazards model (lifelines, Efron ties).

    Parameters
    ----------
    penalizer : float
        Ridge penalty of lifelines' ``CoxPHFitter`` (0 for the plain partial
        likelihood, which matches R's ``coxph``).

    Attributes
    ----------
    coef_ : numpy.ndarray
        Log hazard ratios per unit of each feature.
    summary_ : pandas.DataFrame
        ``covariate, coef, hr, hr_lower95, hr_upper95, se, z, p``.
    log_likelihood_ : float
        Maximised log partial likelihood.
    null_log_likelihood_ : float
        Log partial likelihood with all coefficients zero.
    baseline_times_, baseline_cumulative_hazard_ : numpy.ndarray
        Breslow cumulative hazard at the training means of the features.
    """

    def __init__(self, penalizer: float = 0.0) -> None:
        self.penalizer = penalizer

    def fit(self, X, y) -> CoxPH:
        """Fit the model.

        Parameters
        ----------
        X : array-like, shape (n, p)
            Features without missing values.
        y : structured array
            Survival target (event, time).

        Returns
        -------
        CoxPH
            self
        """
        from lifelines import CoxPHFitter

        X = validate_data(self, X, reset=True, dtype=float)
        event, time = _target_arrays(y)
        names = self._names()
        frame = pd.DataFrame(X, columns=names)
        frame["_time"] = time
        frame["_event"] = event.astype(int)

        fitter = CoxPHFitter(penalizer=self.penalizer)
        fitter.fit(frame, duration_col="_time", event_col="_event")

        self.coef_ = fitter.params_.to_numpy(dtype=float)
        self.log_likelihood_ = float(fitter.log_likelihood_)
        self.null_log_likelihood_ = null_log_partial_likelihood(time, event)
        self.x_mean_ = X.mean(axis=0)
        hazard = fitter.baseline_cumulative_hazard_
        self.baseline_times_ = hazard.index.to_numpy(dtype=float)
        self.baseline_cumulative_hazard_ = hazard.iloc[:, 0].to_numpy(dtype=float)
        self.summary_ = _summary_table(fitter.summary, names)
        self.n_events_ = int(event.sum())
        self.n_samples_ = int(X.shape[0])
        return self

    def _names(self) -> list[str]:
        names = getattr(self, "feature_names_in_", None)
        if names is None:
            return [f"x{i}" for i in range(self.n_features_in_)]
        return [str(n) for n in names]

    def predict(self, X) -> np.ndarray:
        """Linear predictor ``X @ coef_`` (the log relative hazard)."""
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, reset=False, dtype=float)
        return X @ self.coef_

    def predict_survival(self, X, times: Sequence[float]) -> np.ndarray:
        """Probability of being event-free at each of ``times``.

        Returns
        -------
        numpy.ndarray, shape (n, len(times))
        """
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, reset=False, dtype=float)
        relative = np.exp((X - self.x_mean_) @ self.coef_)
        index = (
            np.searchsorted(
                self.baseline_times_, np.asarray(times, float), side="right"
            )
            - 1
        )
        cumulative = np.where(
            index < 0, 0.0, self.baseline_cumulative_hazard_[np.clip(index, 0, None)]
        )
        return np.exp(-relative[:, None] * cumulative[None, :])


def null_log_partial_likelihood(time: np.ndarray, event: np.ndarray) -> float:
    """Efron log partial likelihood of the model without covariates.

    With every hazard ratio 1, the Efron term of ``d`` events tied at a time
    with ``r`` patients at risk is ``-sum_{l < d} log(r - l)``.
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    event_times, tied = np.unique(time[event], return_counts=True)
    at_risk = (time[None, :] >= event_times[:, None]).sum(axis=1)
    total = 0.0
    for r, d in zip(at_risk, tied, strict=True):
        total -= np.log(r - np.arange(d)).sum()
    return float(total)


def _summary_table(summary: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """lifelines' summary renamed to radscl's coefficient-table columns."""
    table = pd.DataFrame(
        {
            "covariate": list(names),
            "coef": summary["coef"].to_numpy(),
            "hr": summary["exp(coef)"].to_numpy(),
            "hr_lower95": summary["exp(coef) lower 95%"].to_numpy(),
            "hr_upper95": summary["exp(coef) upper 95%"].to_numpy(),
            "se": summary["se(coef)"].to_numpy(),
            "z": summary["z"].to_numpy(),
            "p": summary["p"].to_numpy(),
        }
    )
    return table[list(SUMMARY_COLUMNS)]


class PenalizedCox(_SurvivalMixin, BaseEstimator):
    """Elastic-net Cox model (scikit-survival's Coxnet), penalty chosen by CV.

    Parameters
    ----------
    l1_ratio : float
        Mix of lasso (1) and ridge (0) penalties, in (0, 1].
    alpha : float, optional
        A fixed penalty; when None it is chosen by inner cross-validation.
    n_alphas : int
        Length of the penalty path.
    inner_folds : int
        Folds of the inner cross-validation that picks the penalty.
    random_state : int
        Seed of the inner fold split.
    max_iter : int
        Coordinate-descent iterations per penalty.

    Attributes
    ----------
    alpha_ : float
        The penalty used for prediction.
    coef_ : numpy.ndarray
        Coefficients at ``alpha_``.
    inner_c_ : numpy.ndarray
        Mean inner-CV Harrell's C along the path (NaN when ``alpha`` is fixed).
    """

    def __init__(
        self,
        l1_ratio: float = 0.5,
        alpha: float | None = None,
        n_alphas: int = 40,
        inner_folds: int = 3,
        random_state: int = 0,
        max_iter: int = 100_000,
    ) -> None:
        self.l1_ratio = l1_ratio
        self.alpha = alpha
        self.n_alphas = n_alphas
        self.inner_folds = inner_folds
        self.random_state = random_state
        self.max_iter = max_iter

    def _coxnet(self, **kwargs):
        from sksurv.linear_model import CoxnetSurvivalAnalysis

        return CoxnetSurvivalAnalysis(
            l1_ratio=self.l1_ratio, max_iter=self.max_iter, **kwargs
        )

    def fit(self, X, y) -> PenalizedCox:
        """Fit the penalty path, pick the penalty, keep the baseline hazard.

        Returns
        -------
        PenalizedCox
            self
        """
        if not 0.0 < self.l1_ratio <= 1.0:
            raise ParameterError(
                f"l1_ratio must be in (0, 1], but found {self.l1_ratio}"
            )
        X = validate_data(self, X, reset=True, dtype=float)
        event, time = _target_arrays(y)

        if self.alpha is not None:
            alphas = np.array([float(self.alpha)])
        else:
            path = self._coxnet(n_alphas=self.n_alphas).fit(X, y)
            alphas = path.alphas_
        self.model_ = self._coxnet(alphas=alphas, fit_baseline_model=True).fit(X, y)
        alphas = self.model_.alphas_

        if self.alpha is not None or alphas.shape[0] == 1:
            self.alpha_ = float(alphas[0])
            self.inner_c_ = np.full(alphas.shape[0], np.nan)
        else:
            self.inner_c_ = self._inner_concordance(X, y, event, time, alphas)
            # the largest penalty within reach of the best C keeps the model small
            best = np.nanmax(self.inner_c_)
            self.alpha_ = float(
                alphas[np.flatnonzero(self.inner_c_ >= best - 1e-12)[0]]
            )
        self.coef_ = self.model_.coef_[:, list(alphas).index(self.alpha_)]
        logger.debug(
            "coxnet penalty %.4g, %d non-zero",
            self.alpha_,
            int((self.coef_ != 0).sum()),
        )
        return self

    def _inner_concordance(self, X, y, event, time, alphas) -> np.ndarray:
        folds = StratifiedKFold(
            n_splits=self.inner_folds, shuffle=True, random_state=self.random_state
        )
        scores = np.full((self.inner_folds, alphas.shape[0]), np.nan)
        for k, (train, test) in enumerate(folds.split(X, event)):
            if not event[train].any() or not event[test].any():
                continue
            model = self._coxnet(alphas=alphas).fit(X[train], y[train])
            for j, alpha in enumerate(model.alphas_):
                risk = model.predict(X[test], alpha=alpha)
                scores[k, j] = harrell_c(time[test], event[test], risk)
        with warnings.catch_warnings():
            # a fold without any comparable pair leaves a column all-NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(scores, axis=0)

    def predict(self, X) -> np.ndarray:
        """Linear predictor at the chosen penalty."""
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=float)
        return self.model_.predict(X, alpha=self.alpha_)

    def predict_survival(self, X, times: Sequence[float]) -> np.ndarray:
        """Probability of being event-free at each of ``times``."""
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=float)
        values = self.model_.predict_survival_function(
            X, alpha=self.alpha_, return_array=True
        )
        baseline = self.model_._get_baseline_model(self.alpha_)
        return _step_values(baseline.unique_times_, values, times)


def _forest_class():
    from sksurv.ensemble import RandomSurvivalForest

    return RandomSurvivalForest


class SurvivalForest(_SurvivalMixin, BaseEstimator):
    """Random survival forest (scikit-survival) with modest defaults.

    Parameters
    ----------
    n_estimators : int
        Number of trees.
    min_samples_leaf : int
        Smallest leaf; larger leaves give smoother survival curves and faster
        fits.
    max_depth : int, optional
        Depth limit of each tree.
    max_features : str, int or float
        Features tried at each split.
    max_samples : float, optional
        Share of the rows drawn (with replacement) for each tree; below 1 it
        speeds up fitting and decorrelates the trees.
    n_jobs : int
        Parallel jobs for fitting and prediction (1 inside cross-validation,
        which is parallel itself).
    random_state : int
        Seed.
    """

    def __init__(
        self,
        n_estimators: int = 100,
        min_samples_leaf: int = 15,
        max_depth: int | None = None,
        max_features: str | int | float = "sqrt",
        max_samples: float | None = 0.6,
        n_jobs: int = 1,
        random_state: int = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.min_samples_leaf = min_samples_leaf
        self.max_depth = max_depth
        self.max_features = max_features
        self.max_samples = max_samples
        self.n_jobs = n_jobs
        self.random_state = random_state

    def fit(self, X, y) -> SurvivalForest:
        """Grow the forest.

        Returns
        -------
        SurvivalForest
            self
        """
        X = validate_data(self, X, reset=True, dtype=float)
        _target_arrays(y)
        self.forest_ = _forest_class()(
            n_estimators=self.n_estimators,
            min_samples_leaf=self.min_samples_leaf,
            min_samples_split=2 * self.min_samples_leaf,
            max_depth=self.max_depth,
            max_features=self.max_features,
            max_samples=self.max_samples,
            n_jobs=self.n_jobs,
            random_state=self.random_state,
        ).fit(X, y)
        return self

    def predict(self, X) -> np.ndarray:
        """Ensemble cumulative hazard summed over the event times (higher =
        worse)."""
        check_is_fitted(self, "forest_")
        X = validate_data(self, X, reset=False, dtype=float)
        return self.forest_.predict(X)

    def predict_survival(self, X, times: Sequence[float]) -> np.ndarray:
        """Probability of being event-free at each of ``times``."""
        check_is_fitted(self, "forest_")
        X = validate_data(self, X, reset=False, dtype=float)
        values = self.forest_.predict_survival_function(X, return_array=True)
        return _step_values(self.forest_.unique_times_, values, times)


def make_estimator(name: str, *, random_state: int = 0) -> BaseEstimator:
    """Build an estimator by name: ``cox``, ``coxnet`` or ``rsf``.

    Raises
    ------
    ParameterError
        For an unknown name.
    """
    if name == "cox":
        return CoxPH()
    if name == "coxnet":
        return PenalizedCox(random_state=random_state)
    if name == "rsf":
        return SurvivalForest(random_state=random_state)
    raise ParameterError(
        f"unknown model {name!r}; expected one of {', '.join(ESTIMATORS)}"
    )


class ColumnSelector(TransformerMixin, BaseEstimator):
    """Keep the named columns of a table, in order.

    Parameters
    ----------
    columns : sequence of str
        Columns to keep.
    """

    def __init__(self, columns: Sequence[str] = ()) -> None:
        self.columns = columns

    def fit(self, X: pd.DataFrame, y=None) -> ColumnSelector:
        """Check the columns are present."""
        self._check(X)
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = len(X.columns)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """Return the selected columns as floats."""
        self._check(X)
        return X[list(self.columns)].astype(float)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Names of the kept columns."""
        return np.asarray(list(self.columns), dtype=object)

    def _check(self, X) -> None:
        if not isinstance(X, pd.DataFrame):
            raise DataError(
                "the survival pipeline expects a table (pandas.DataFrame) as X, and a "
                f"harmonisation step must return one, but found {type(X).__name__}"
            )
        missing = [c for c in self.columns if c not in X.columns]
        if missing:
            raise DataError(f"missing column(s) {', '.join(repr(c) for c in missing)}")


def survival_pipeline(
    estimator: BaseEstimator | str,
    covariates: Sequence[str],
    *,
    harmonizer: TransformerMixin | None = None,
    random_state: int = 0,
) -> Pipeline:
    """Wrap an estimator with fold-safe preprocessing.

    The steps are ``harmonize`` (the given transformer, or passthrough),
    ``select`` (the covariates), ``impute`` (median of the training rows),
    ``scale`` (standardise with the training rows) and ``model``. X is a
    table; the harmonisation step sees every column of it (batch, biological
    covariates) and must return a table.

    Parameters
    ----------
    estimator : estimator or str
        A survival estimator, or a name for :func:`make_estimator`.
    covariates : sequence of str
        Columns the model uses.
    harmonizer : transformer, optional
        E.g. a ComBat transformer; fitted on each training fold.
    random_state : int
        Seed for estimators built by name.

    Returns
    -------
    sklearn.pipeline.Pipeline
    """
    if isinstance(estimator, str):
        estimator = make_estimator(estimator, random_state=random_state)
    else:
        estimator = clone(estimator)
    # Output is configured step by step: a harmonisation transformer need not
    # implement set_output, it only has to return a table.
    steps = [
        ("harmonize", clone(harmonizer) if harmonizer is not None else "passthrough"),
        ("select", ColumnSelector(list(covariates))),
        ("impute", SimpleImputer(strategy="median").set_output(transform="pandas")),
        ("scale", StandardScaler().set_output(transform="pandas")),
        ("model", estimator),
    ]
    return Pipeline(steps)


def predict_survival(
    pipeline: Pipeline, X: pd.DataFrame, times: Sequence[float]
) -> np.ndarray:
    """Event-free probabilities at ``times`` from a fitted survival pipeline.

    Returns
    -------
    numpy.ndarray, shape (n, len(times))
    """
    transformed = pipeline[:-1].transform(X)
    return pipeline[-1].predict_survival(transformed, times)


__all__ = [
    "ESTIMATORS",
    "SUMMARY_COLUMNS",
    "ColumnSelector",
    "CoxPH",
    "PenalizedCox",
    "SurvivalForest",
    "make_estimator",
    "predict_survival",
    "survival_pipeline",
]
