"""Internal-external validation: leave one centre out, evaluate, repeat.

Each centre in turn is held out; the model and every preprocessing step
(harmonisation, imputation, scaling, the penalty of an elastic-net Cox model)
are fitted on the other centres, and the held-out centre is scored. This is
the internal-external cross-validation of Royston, Parmar and Sylvester (Stat
Med 2004;23:907-926) and Steyerberg and Harrell (J Clin Epidemiol
2016;69:245-247): every centre is once an external validation of a model
that never saw it.

What is reported per held-out centre, for the pooled held-out predictions and
as a random-effects summary over centres:

* discrimination: Harrell's C, Uno's C (truncated at the last horizon) and
  the cumulative/dynamic AUC at each horizon, with 95 % bootstrap intervals
  over the centre's patients;
* calibration slope: the coefficient of a Cox model of the held-out outcome
  on the prognostic index ``log(-log S(t_ref | x))``, with ``t_ref`` the middle
  horizon (1 when the model is well calibrated, below 1 when its predictions
  are too extreme). For a Cox model this index is the linear predictor plus a
  constant; it also applies to a random survival forest;
* calibration-in-the-large at each horizon: observed risk (one minus the
  Kaplan-Meier estimate) minus the mean predicted risk, so a negative value
  means the model over-predicts risk in that centre;
* heterogeneity between centres: a DerSimonian-Laird random-effects
  meta-analysis of the per-centre C (on the logit scale, as Debray et al.
  recommend, BMJ 2017;356:i6460) and calibration slope, with Cochran's Q,
  I², tau² and a 95 % prediction interval for a new centre.

A centre with fewer than ``min_events`` events or ``min_patients`` patients is
kept in the training sets of the other centres but is not evaluated; its row
says why.

Harmonisation of a held-out centre
----------------------------------
ComBat estimates a location and a scale per batch. When the batch column is
the centre, or the held-out centre uses a scanner no other centre has, the
held-out batch is unseen by construction. Its location and scale are then
estimated from the held-out centre's own feature values, standardised with
the grand mean, covariate effects and pooled variance fitted on the training
centres (no outcome is used, and nothing from the held-out centre enters the
training fit). That is what a new centre could do with a sample of its own
scans. ``radscl predict`` does not do it: a saved model flags rows of an
unseen batch instead (see :mod:`radscl.models.saved`).

Known limitations
-----------------
* The per-centre bootstrap intervals describe the patients evaluated, not the
  refitting of the model; they are too narrow for small training sets.
* With fewer than three evaluable centres, tau² and I² are poorly estimated
  and the prediction interval is not given.
* Pooled metrics stack risk scores from models fitted on different training
  sets; Cox linear predictors are on a common scale, forest scores roughly so.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import TransformerMixin
from sklearn.pipeline import Pipeline

from radscl.errors import DataError
from radscl.errors import ParameterError
from radscl.models.estimators import predict_survival
from radscl.models.estimators import survival_pipeline
from radscl.models.evaluation import calibration_table
from radscl.models.metrics import Outcome
from radscl.models.metrics import ResampledMetrics
from radscl.models.metrics import bootstrap_weights
from radscl.models.survival import covariate_frame
from radscl.models.survival import require_columns
from radscl.models.survival import survival_target
from radscl.models.survival import validate_outcome

logger = logging.getLogger(__name__)

#: Default horizons (years when the time column is in years).
VALIDATION_HORIZONS = (1.0, 3.0, 5.0)

#: Label of the row of pooled held-out predictions.
POOLED = "pooled"

#: Label of the random-effects summary row.
RANDOM_EFFECTS = "random_effects"

#: Survival probabilities are clipped to this distance from 0 and 1 before
#: the complementary log-log transform.
_CLIP = 1e-10


@dataclasses.dataclass
class CentreValidation:
    """Results of a leave-one-centre-out validation.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per centre, then ``pooled`` and ``random_effects``:
        ``centre, n, events, evaluable, reason``, ``harrell_c``, ``uno_c``,
        ``td_auc_<h>`` (each with ``_lower95``/``_upper95``),
        ``calibration_slope`` with its interval and ``citl_<h>``.
    heterogeneity : pandas.DataFrame
        ``metric, k, estimate, lower95, upper95, prediction_lower95,
        prediction_upper95, q, q_p, i2_pct, tau2`` for Harrell's C and the
        calibration slope.
    predictions : pandas.DataFrame
        Held-out predictions, one row per evaluated patient: ``centre``,
        time, event, ``risk_score``, ``prognostic_index`` and ``survival_<h>``.
        Rows keep the index of the input table.
    calibration : dict of float to pandas.DataFrame
        Pooled calibration tables (see
        :func:`radscl.models.evaluation.calibration_table`) by horizon.
    horizons : tuple of float
        The horizons.
    pipelines : dict of str to Pipeline
        The fitted pipeline of each held-out centre (when kept).
    """

    table: pd.DataFrame
    heterogeneity: pd.DataFrame
    predictions: pd.DataFrame
    calibration: dict[float, pd.DataFrame]
    horizons: tuple[float, ...]
    pipelines: dict[str, Pipeline] = dataclasses.field(default_factory=dict)

    def centre_rows(self) -> pd.DataFrame:
        """The per-centre rows (without the pooled and summary rows)."""
        return self.table[~self.table["centre"].isin([POOLED, RANDOM_EFFECTS])]

    def calibration_figure(self):
        """Pooled held-out calibration at every horizon, one panel each."""
        from radscl.report.plots import calibration_plot

        return {
            h: calibration_plot({"held-out centres": t}, at_time=h)
            for h, t in self.calibration.items()
            if not t.empty
        }


def harmonize_new_batch(combat, X: pd.DataFrame) -> pd.DataFrame:
    """Harmonise rows of a batch unseen in ``fit`` with its own location and scale.

    The rows are standardised with the fitted grand mean, covariate effects and
    pooled variance; their mean and variance on that scale are the batch's
    location and scale (no empirical Bayes shrinkage: a whole centre is large
    enough), and are removed as ComBat removes a training batch's.

    Parameters
    ----------
    combat : radscl.harmonize.ComBat
        A fitted ComBat transformer.
    X : pandas.DataFrame
        Rows of one new batch, at least two.

    Returns
    -------
    pandas.DataFrame
        A copy of ``X`` with the feature columns harmonised.
    """
    if len(X) < 2:
        raise DataError("a new batch needs at least 2 rows to estimate its effect")

    features = list(combat.features_)
    values = X[features].to_numpy(dtype=float)
    design = combat.covariate_coder_.transform(X)
    expected = combat.grand_mean_.to_numpy() + design @ np.nan_to_num(
        combat.covariate_effects_.to_numpy()
    )
    scale = np.sqrt(combat.var_pooled_.to_numpy())
    with np.errstate(invalid="ignore", divide="ignore"):
        standardised = (values - expected) / scale
    present = np.isfinite(standardised).sum(axis=0)
    location = np.where(present > 0, np.nanmean(_fill(standardised), axis=0), 0.0)
    if combat.mean_only:
        spread = np.ones_like(location)
    else:
        spread = np.where(
            present > 1, np.nanvar(_fill(standardised), axis=0, ddof=1), 1.0
        )
        spread = np.where(spread > 0, spread, 1.0)

    adjusted = (standardised - location) / np.sqrt(spread) * scale + expected
    result = X.copy()
    for index, name in enumerate(features):
        if name in combat.skipped_features_:
            continue
        result[name] = adjusted[:, index]
    return result


def _fill(values: np.ndarray) -> np.ndarray:
    """Replace all-missing columns by zeros so nan-reductions stay quiet."""
    empty = ~np.isfinite(values).any(axis=0)
    if empty.any():
        values = values.copy()
        values[:, empty] = 0.0
    return values


def harmonize_rows(pipeline: Pipeline, X: pd.DataFrame) -> pd.DataFrame:
    """Apply a fitted pipeline's harmonisation step to held-out rows.

    Rows of batches seen in training use the fitted estimates; each unseen
    batch is harmonised with :func:`harmonize_new_batch`.
    """
    combat = pipeline.named_steps["harmonize"]
    if combat == "passthrough" or combat is None:
        return X
    labels = X[combat.batch].astype(str)
    seen = labels.isin([str(b) for b in combat.batches_]).to_numpy()
    parts = []
    if seen.any():
        parts.append(combat.transform(X[seen]))
    for label in sorted(set(labels[~seen])):
        rows = (labels == label).to_numpy()
        logger.debug("new batch harmonised from its own %d rows", int(rows.sum()))
        parts.append(harmonize_new_batch(combat, X[rows]))
    return pd.concat(parts).loc[X.index]


def held_out_predictions(
    pipeline: Pipeline, X: pd.DataFrame, horizons: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Risk scores and survival at ``horizons`` of held-out rows."""
    harmonised = harmonize_rows(pipeline, X)
    rest = Pipeline(pipeline.steps[1:])
    return rest.predict(harmonised), predict_survival(rest, harmonised, horizons)


def leave_one_centre_out(
    table: pd.DataFrame,
    *,
    time: str,
    event: str,
    covariates: Sequence[str],
    centre: str,
    estimator: str = "cox",
    harmonize_by: str | None = None,
    harmonizer: TransformerMixin | None = None,
    horizons: Sequence[float] = VALIDATION_HORIZONS,
    min_events: int = 5,
    min_patients: int = 10,
    n_bootstrap: int = 200,
    seed: int = 0,
    keep_pipelines: bool = False,
) -> CentreValidation:
    """Internal-external validation with each centre held out once.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per patient with the outcome, covariates, centre and (when
        harmonising) batch columns.
    time, event : str
        Outcome columns (event 0/1).
    covariates : sequence of str
        Columns the model uses.
    centre : str
        Column naming each patient's centre.
    estimator : {"cox", "coxnet", "rsf"}
        The survival model.
    harmonize_by : str, optional
        Batch column for ComBat; the imaging features among ``covariates`` are
        harmonised. Ignored when ``harmonizer`` is given.
    harmonizer : transformer, optional
        A ComBat transformer configured by the caller.
    horizons : sequence of float
        Times of the AUC, calibration-in-the-large and calibration tables; the
        middle one is the reference time of the calibration slope.
    min_events, min_patients : int
        A centre with fewer is not evaluated (it still trains the others).
    n_bootstrap : int
        Bootstrap resamples of each centre's patients for the intervals.
    seed : int
        Seed of the estimators and the bootstrap.
    keep_pipelines : bool
        Keep each fold's fitted pipeline in the result.

    Returns
    -------
    CentreValidation

    Raises
    ------
    DataError
        If a column is missing or fewer than two centres are present.
    """
    validate_outcome(table, time, event)
    require_columns(table, [centre], source="table")
    covariate_frame(table, list(covariates))
    if table[centre].isna().any():
        raise DataError(
            f"centre column {centre!r} has {int(table[centre].isna().sum())} "
            "missing value(s)"
        )
    if n_bootstrap < 10:
        raise ParameterError(
            f"n_bootstrap must be at least 10, but found {n_bootstrap}"
        )
    horizons = tuple(float(h) for h in horizons)
    if not horizons:
        raise ParameterError("at least one horizon is needed")
    if harmonizer is None and harmonize_by is not None:
        harmonizer = default_harmonizer(table, covariates, harmonize_by)

    labels = table[centre].astype(str).to_numpy()
    centres = sorted(set(labels))
    if len(centres) < 2:
        raise DataError(
            f"centre column {centre!r} has {len(centres)} centre; leave-one-centre-out "
            "validation needs at least 2"
        )
    event_flags = (table[event].to_numpy() == 1).astype(bool)
    times = table[time].to_numpy(dtype=float)
    reference_time = horizons[len(horizons) // 2]
    rng = np.random.default_rng(seed)

    rows = []
    held_out = []
    pipelines = {}
    for label in centres:
        test = labels == label
        row = {
            "centre": label,
            "n": int(test.sum()),
            "events": int(event_flags[test].sum()),
        }
        reason = _not_evaluable(row["n"], row["events"], min_events, min_patients)
        if reason is None and not event_flags[~test].any():
            reason = "the other centres have no events to train on"
        if reason is not None:
            logger.info("centre not evaluable: %s", reason)
            rows.append({**row, "evaluable": False, "reason": reason})
            continue

        pipeline = survival_pipeline(
            estimator, list(covariates), harmonizer=harmonizer, random_state=seed
        )
        pipeline.fit(table[~test], survival_target(times[~test], event_flags[~test]))
        try:
            risk, survival = held_out_predictions(pipeline, table[test], horizons)
        except DataError as error:
            rows.append({**row, "evaluable": False, "reason": str(error)})
            continue
        if keep_pipelines:
            pipelines[label] = pipeline
        index = _prognostic_index(
            predict_survival_at(pipeline, table[test], reference_time)
        )
        metrics = _evaluate(
            times[test],
            event_flags[test],
            risk,
            survival,
            index,
            horizons,
            rng,
            n_bootstrap,
        )
        rows.append({**row, "evaluable": True, "reason": "", **metrics})
        held_out.append(
            _prediction_frame(
                table[test], label, time, event, risk, survival, index, horizons
            )
        )

    predictions = pd.concat(held_out) if held_out else pd.DataFrame()
    centre_table = pd.DataFrame(rows)
    pooled, calibration = _pooled_row(
        predictions, time, event, horizons, rng, n_bootstrap
    )
    heterogeneity = _heterogeneity(centre_table)
    summary = _random_effects_row(heterogeneity)
    result_table = pd.concat(
        [centre_table, pd.DataFrame([pooled, summary])], ignore_index=True
    )
    result_table = result_table[_column_order(result_table, horizons)]
    result_table = result_table.astype({"n": "Int64", "events": "Int64"})
    return CentreValidation(
        result_table, heterogeneity, predictions, calibration, horizons, pipelines
    )


def predict_survival_at(
    pipeline: Pipeline, X: pd.DataFrame, at_time: float
) -> np.ndarray:
    """Held-out survival at one time (harmonising new batches as in validation)."""
    harmonised = harmonize_rows(pipeline, X)
    return predict_survival(Pipeline(pipeline.steps[1:]), harmonised, [at_time])[:, 0]


def default_harmonizer(
    table: pd.DataFrame, covariates: Sequence[str], batch: str
) -> TransformerMixin:
    """ComBat on the imaging features among ``covariates``, by ``batch``.

    Raises
    ------
    ParameterError
        If fewer than two covariates are imaging features (ComBat's priors
        need at least two).
    """
    from radscl.harmonize import ComBat
    from radscl.harmonize import imaging_feature_columns

    require_columns(table, [batch], source="table")
    features = imaging_feature_columns(covariates)
    if len(features) < 2:
        raise ParameterError(
            f"harmonisation by {batch!r} needs at least 2 imaging features among the "
            f"covariates, but found {len(features)}: {', '.join(features) or 'none'}"
        )
    return ComBat(batch=batch, features=features)


def _not_evaluable(
    n: int, events: int, min_events: int, min_patients: int
) -> str | None:
    if n < min_patients:
        return f"{n} patients, fewer than the {min_patients} needed"
    if events < min_events:
        return f"{events} events, fewer than the {min_events} needed"
    if events == n:
        return "no censored patient; the censoring distribution is undefined"
    return None


def _prognostic_index(survival_at_reference: np.ndarray) -> np.ndarray:
    clipped = np.clip(survival_at_reference, _CLIP, 1.0 - _CLIP)
    return np.log(-np.log(clipped))


def _prediction_frame(rows, label, time, event, risk, survival, index, horizons):
    frame = pd.DataFrame(
        {
            "centre": label,
            time: rows[time].to_numpy(dtype=float),
            event: (rows[event].to_numpy() == 1).astype(int),
            "risk_score": risk,
            "prognostic_index": index,
        },
        index=rows.index,
    )
    for j, h in enumerate(horizons):
        frame[f"survival_{h:g}"] = survival[:, j]
    return frame


def _evaluate(
    time: np.ndarray,
    event: np.ndarray,
    risk: np.ndarray,
    survival: np.ndarray,
    index: np.ndarray,
    horizons: tuple[float, ...],
    rng: np.random.Generator,
    n_bootstrap: int,
) -> dict[str, float]:
    """Discrimination with bootstrap intervals and calibration of one group."""
    outcome = Outcome.from_arrays(time, event)
    weights = np.vstack(
        [np.ones(outcome.n), bootstrap_weights(outcome.n, n_bootstrap, rng)]
    )
    metrics = ResampledMetrics(outcome, weights, horizons=horizons, tau=max(horizons))
    result = metrics.discrimination(risk)

    values: dict[str, float] = {}
    values.update(_interval("harrell_c", result.harrell_c))
    values["harrell_c_se"] = float(np.nanstd(result.harrell_c[1:], ddof=1))
    values.update(_interval("uno_c", result.uno_c))
    for j, h in enumerate(horizons):
        values.update(_interval(f"td_auc_{h:g}", result.auc[:, j]))

    values.update(calibration_slope(time, event, index))
    for j, h in enumerate(horizons):
        values[f"citl_{h:g}"] = calibration_in_the_large(time, event, survival[:, j], h)
    return values


def _interval(name: str, values: np.ndarray) -> dict[str, float]:
    resamples = values[1:][np.isfinite(values[1:])]
    lower, upper = (
        np.percentile(resamples, [2.5, 97.5]) if resamples.size else (np.nan, np.nan)
    )
    return {
        name: float(values[0]),
        f"{name}_lower95": float(lower),
        f"{name}_upper95": float(upper),
    }


def calibration_slope(
    time: Sequence[float], event: Sequence[bool], prognostic_index: Sequence[float]
) -> dict[str, float]:
    """Cox regression of the outcome on a prognostic index.

    Parameters
    ----------
    time, event : array-like
        Outcome of the evaluated patients.
    prognostic_index : array-like of float
        ``log(-log S(t | x))`` at a reference time, or a Cox linear predictor.

    Returns
    -------
    dict
        ``calibration_slope``, ``calibration_slope_lower95``,
        ``calibration_slope_upper95`` and ``calibration_slope_se`` (NaN when
        the index does not vary or the fit fails).
    """
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError

    nan = {
        "calibration_slope": np.nan,
        "calibration_slope_lower95": np.nan,
        "calibration_slope_upper95": np.nan,
        "calibration_slope_se": np.nan,
    }
    index = np.asarray(prognostic_index, dtype=float)
    if np.nanstd(index) == 0 or not np.asarray(event).any():
        return nan
    frame = pd.DataFrame(
        {
            "pi": index,
            "_time": np.asarray(time, float),
            "_event": np.asarray(event, int),
        }
    )
    try:
        fitter = CoxPHFitter().fit(frame, duration_col="_time", event_col="_event")
    except ConvergenceError:
        return nan
    slope = float(fitter.params_["pi"])
    se = float(fitter.standard_errors_["pi"])
    return {
        "calibration_slope": slope,
        "calibration_slope_lower95": slope - 1.959964 * se,
        "calibration_slope_upper95": slope + 1.959964 * se,
        "calibration_slope_se": se,
    }


def calibration_in_the_large(
    time: Sequence[float],
    event: Sequence[bool],
    survival_at_time: Sequence[float],
    at_time: float,
) -> float:
    """Observed risk (Kaplan-Meier) minus mean predicted risk at ``at_time``.

    Negative when the model over-predicts risk. NaN when no patient is
    followed up to ``at_time``.
    """
    from sksurv.nonparametric import kaplan_meier_estimator

    time = np.asarray(time, dtype=float)
    event = np.asarray(event).astype(bool)
    if time.max() < at_time:
        return float("nan")
    if event.any():
        km_time, km_survival = kaplan_meier_estimator(event, time)
        index = np.searchsorted(km_time, at_time, side="right") - 1
        observed = 0.0 if index < 0 else 1.0 - km_survival[index]
    else:
        observed = 0.0
    return float(observed - np.mean(1.0 - np.asarray(survival_at_time, dtype=float)))


def _pooled_row(predictions, time, event, horizons, rng, n_bootstrap):
    row: dict[str, object] = {"centre": POOLED}
    calibration: dict[float, pd.DataFrame] = {}
    if predictions.empty:
        return {
            **row,
            "n": 0,
            "events": 0,
            "evaluable": False,
            "reason": "no centre could be evaluated",
        }, calibration
    t = predictions[time].to_numpy(dtype=float)
    e = predictions[event].to_numpy().astype(bool)
    survival = predictions[[f"survival_{h:g}" for h in horizons]].to_numpy()
    row.update({"n": len(t), "events": int(e.sum()), "evaluable": True, "reason": ""})
    row.update(
        _evaluate(
            t,
            e,
            predictions["risk_score"].to_numpy(),
            survival,
            predictions["prognostic_index"].to_numpy(),
            horizons,
            rng,
            n_bootstrap,
        )
    )
    for j, h in enumerate(horizons):
        if t.max() >= h and (t <= h).any() and e[t <= h].any():
            calibration[h] = calibration_table(t, e, survival[:, j], h, groups=5)
    return row, calibration


def random_effects_meta(
    estimates: Sequence[float], standard_errors: Sequence[float]
) -> dict[str, float]:
    """DerSimonian-Laird random-effects meta-analysis.

    Parameters
    ----------
    estimates : array-like of float
        One estimate per study (centre).
    standard_errors : array-like of float
        Their standard errors (> 0).

    Returns
    -------
    dict
        ``k, estimate, se, lower95, upper95, prediction_lower95,
        prediction_upper95`` (the latter NaN for fewer than 3 studies), ``q``,
        ``q_p``, ``i2_pct`` and ``tau2``.
    """
    from scipy import stats

    theta = np.asarray(estimates, dtype=float)
    se = np.asarray(standard_errors, dtype=float)
    keep = np.isfinite(theta) & np.isfinite(se) & (se > 0)
    theta, se = theta[keep], se[keep]
    k = theta.shape[0]
    out = dict.fromkeys(
        (
            "estimate",
            "se",
            "lower95",
            "upper95",
            "prediction_lower95",
            "prediction_upper95",
            "q",
            "q_p",
            "i2_pct",
            "tau2",
        ),
        float("nan"),
    )
    out["k"] = k
    if k == 0:
        return out

    w = 1.0 / se**2
    fixed = float(np.sum(w * theta) / np.sum(w))
    q = float(np.sum(w * (theta - fixed) ** 2))
    df = k - 1
    c = float(np.sum(w) - np.sum(w**2) / np.sum(w))
    tau2 = max(0.0, (q - df) / c) if k > 1 and c > 0 else 0.0
    w_star = 1.0 / (se**2 + tau2)
    pooled = float(np.sum(w_star * theta) / np.sum(w_star))
    pooled_se = float(np.sqrt(1.0 / np.sum(w_star)))

    out.update(
        estimate=pooled,
        se=pooled_se,
        lower95=pooled - 1.959964 * pooled_se,
        upper95=pooled + 1.959964 * pooled_se,
        tau2=tau2,
    )
    if k > 1:
        out["q"] = q
        out["q_p"] = float(stats.chi2.sf(q, df))
        out["i2_pct"] = 100.0 * max(0.0, (q - df) / q) if q > 0 else 0.0
    if k > 2:
        half = stats.t.ppf(0.975, k - 2) * np.sqrt(tau2 + pooled_se**2)
        out["prediction_lower95"] = pooled - half
        out["prediction_upper95"] = pooled + half
    return out


def _heterogeneity(centre_table: pd.DataFrame) -> pd.DataFrame:
    rows = []
    evaluable = (
        centre_table[centre_table["evaluable"]]
        if "harrell_c" in centre_table
        else centre_table.iloc[:0]
    )

    c = evaluable.get("harrell_c", pd.Series(dtype=float)).to_numpy(dtype=float)
    c_se = evaluable.get("harrell_c_se", pd.Series(dtype=float)).to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        logit = np.log(c / (1.0 - c))
        logit_se = c_se / (c * (1.0 - c))
    meta = random_effects_meta(logit, logit_se)
    for key in (
        "estimate",
        "lower95",
        "upper95",
        "prediction_lower95",
        "prediction_upper95",
    ):
        meta[key] = float(1.0 / (1.0 + np.exp(-meta[key])))
    rows.append({"metric": "harrell_c", **meta})

    slope = evaluable.get("calibration_slope", pd.Series(dtype=float)).to_numpy(float)
    slope_se = evaluable.get("calibration_slope_se", pd.Series(dtype=float)).to_numpy(
        float
    )
    rows.append({"metric": "calibration_slope", **random_effects_meta(slope, slope_se)})

    columns = [
        "metric",
        "k",
        "estimate",
        "lower95",
        "upper95",
        "prediction_lower95",
        "prediction_upper95",
        "q",
        "q_p",
        "i2_pct",
        "tau2",
    ]
    return pd.DataFrame(rows)[columns]


def _random_effects_row(heterogeneity: pd.DataFrame) -> dict[str, object]:
    c = heterogeneity.set_index("metric").loc["harrell_c"]
    slope = heterogeneity.set_index("metric").loc["calibration_slope"]
    return {
        "centre": RANDOM_EFFECTS,
        "n": np.nan,
        "events": np.nan,
        "evaluable": bool(c["k"] > 0),
        "reason": "" if c["k"] > 0 else "no centre could be evaluated",
        "harrell_c": c["estimate"],
        "harrell_c_lower95": c["lower95"],
        "harrell_c_upper95": c["upper95"],
        "calibration_slope": slope["estimate"],
        "calibration_slope_lower95": slope["lower95"],
        "calibration_slope_upper95": slope["upper95"],
    }


def _column_order(table: pd.DataFrame, horizons: tuple[float, ...]) -> list[str]:
    columns = ["centre", "n", "events", "evaluable", "reason"]
    metrics = ["harrell_c", "uno_c", *(f"td_auc_{h:g}" for h in horizons)]
    for name in metrics:
        columns += [name, f"{name}_lower95", f"{name}_upper95"]
    columns += [
        "calibration_slope",
        "calibration_slope_lower95",
        "calibration_slope_upper95",
        *(f"citl_{h:g}" for h in horizons),
    ]
    for name in columns:
        if name not in table.columns:
            table[name] = np.nan
    return columns


__all__ = [
    "POOLED",
    "RANDOM_EFFECTS",
    "VALIDATION_HORIZONS",
    "CentreValidation",
    "calibration_in_the_large",
    "calibration_slope",
    "default_harmonizer",
    "harmonize_new_batch",
    "harmonize_rows",
    "held_out_predictions",
    "leave_one_centre_out",
    "random_effects_meta",
]
