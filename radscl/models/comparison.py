"""Do CT biomarkers add to lung function? The full comparison in one call.

:func:`compare_models` builds, for each estimator, a baseline model (the
lung-function covariates), a biomarker model and a combined model, evaluates
them on the same repeated cross-validation splits, and reports discrimination,
calibration and the paired change in C against the reference model (the Cox
model of the baseline covariates), with the likelihood-ratio test of the
nested Cox models.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import TransformerMixin

from radscl.errors import ParameterError
from radscl.models.estimators import ESTIMATORS
from radscl.models.estimators import CoxPH
from radscl.models.evaluation import DEFAULT_HORIZONS
from radscl.models.evaluation import CrossValidatedPredictions
from radscl.models.evaluation import ModelSpec
from radscl.models.evaluation import calibration_table
from radscl.models.evaluation import cross_validated_predictions
from radscl.models.evaluation import likelihood_ratio_test
from radscl.models.evaluation import proportional_hazards_test
from radscl.models.evaluation import summarise_predictions
from radscl.models.evaluation import usable_horizons
from radscl.models.survival import covariate_frame
from radscl.models.survival import survival_target

logger = logging.getLogger(__name__)

#: Leading columns of ``comparison.csv``; AUC columns follow the horizons.
COMPARISON_COLUMNS = (
    "model",
    "estimator",
    "role",
    "covariates",
    "n",
    "events",
    "harrell_c",
    "harrell_c_lower95",
    "harrell_c_upper95",
    "uno_c",
    "uno_c_lower95",
    "uno_c_upper95",
)


@dataclasses.dataclass
class Comparison:
    """Everything a comparison produced.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per model (``comparison.csv``).
    predictions : list of CrossValidatedPredictions
        Out-of-fold predictions.
    cox_summary : pandas.DataFrame
        Coefficients of the combined Cox model per standard deviation of each
        covariate (complete cases), for the forest plot.
    proportional_hazards : pandas.DataFrame
        Schoenfeld-residual test of the combined Cox model.
    calibration : dict of str to pandas.DataFrame
        Calibration table of each model at ``calibration_time``.
    auc_curves : pandas.DataFrame
        Time-dependent AUC of each model over follow-up (point estimates).
    settings : dict
        Folds, repeats, bootstrap size, horizons, tau, Brier range, seed.
    """

    table: pd.DataFrame
    predictions: list[CrossValidatedPredictions]
    cox_summary: pd.DataFrame
    proportional_hazards: pd.DataFrame
    calibration: dict[str, pd.DataFrame]
    auc_curves: pd.DataFrame
    settings: dict


def model_specs(
    baseline: Sequence[str],
    biomarkers: Sequence[str],
    estimators: Sequence[str] = ESTIMATORS,
    *,
    biomarkers_alone: bool = True,
) -> list[ModelSpec]:
    """The models of a comparison: per estimator, baseline, biomarkers and both.

    Raises
    ------
    ParameterError
        For an unknown estimator, an empty covariate list or a covariate that
        is both baseline and biomarker.
    """
    unknown = [e for e in estimators if e not in ESTIMATORS]
    if unknown or not estimators:
        raise ParameterError(
            f"unknown model(s) {', '.join(unknown) or '(none given)'}; "
            f"expected {', '.join(ESTIMATORS)}"
        )
    if not baseline or not biomarkers:
        raise ParameterError(
            "a comparison needs at least one baseline and one biomarker column"
        )
    shared = sorted(set(baseline) & set(biomarkers))
    if shared:
        raise ParameterError(
            f"column(s) both baseline and biomarker: {', '.join(shared)}"
        )

    groups = [("baseline", tuple(baseline))]
    if biomarkers_alone:
        groups.append(("biomarkers", tuple(biomarkers)))
    groups.append(("baseline+biomarkers", (*baseline, *biomarkers)))
    return [
        ModelSpec(f"{estimator}: {role}", estimator, covariates, role)
        for estimator in dict.fromkeys(estimators)
        for role, covariates in groups
    ]


def compare_models(
    table: pd.DataFrame,
    *,
    time: str,
    event: str,
    baseline: Sequence[str],
    biomarkers: Sequence[str],
    estimators: Sequence[str] = ESTIMATORS,
    folds: int = 5,
    repeats: int = 5,
    n_bootstrap: int = 200,
    seed: int = 0,
    n_jobs: int = 1,
    horizons: Sequence[float] = DEFAULT_HORIZONS,
    tau: float | None = None,
    calibration_time: float | None = None,
    harmonizer: TransformerMixin | None = None,
    biomarkers_alone: bool = True,
) -> Comparison:
    """Compare lung-function baselines with CT biomarkers.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per patient (see :func:`radscl.models.build_survival_table`),
        event coded 0/1.
    time, event : str
        Outcome columns.
    baseline, biomarkers : sequence of str
        Covariates of the baseline model and the biomarkers added to it.
    estimators : sequence of str
        Any of ``cox``, ``coxnet``, ``rsf``.
    folds, repeats : int
        Repeated stratified K-fold.
    n_bootstrap : int
        Bootstrap resamples for the intervals.
    seed : int
        Seed of splits, estimators and bootstrap.
    n_jobs : int
        Parallel fits.
    horizons : sequence of float
        Times of the time-dependent AUC (in the time column's unit); those
        before the first event or beyond follow-up are dropped.
    tau : float, optional
        Truncation of Uno's C; by default the largest usable horizon.
    calibration_time : float, optional
        Time of the calibration table; by default the middle usable horizon.
    harmonizer : transformer, optional
        Harmonisation fitted inside each training fold.
    biomarkers_alone : bool
        Also evaluate the biomarkers without the baseline.

    Returns
    -------
    Comparison
    """
    specs = model_specs(
        baseline, biomarkers, estimators, biomarkers_alone=biomarkers_alone
    )
    covariates = [*baseline, *biomarkers]
    covariate_frame(table, covariates)
    y = survival_target(table[time], table[event])
    event_flags = y[y.dtype.names[0]]
    times = y[y.dtype.names[1]]

    kept = usable_horizons(times, event_flags, horizons)
    dropped = sorted(set(np.asarray(horizons, float)) - set(kept))
    if dropped:
        logger.warning(
            "time-dependent AUC not estimable at %s (outside follow-up)",
            ", ".join(f"{h:g}" for h in dropped),
        )
    if tau is None and kept.size:
        tau = float(kept.max())
    if calibration_time is None:
        calibration_time = (
            float(kept[len(kept) // 2]) if kept.size else float(np.median(times))
        )

    brier_times = np.linspace(*np.quantile(times, [0.1, 0.9]), 40)
    curve_times = np.quantile(times[event_flags], np.linspace(0.05, 0.9, 30))
    prediction_times = np.unique(np.concatenate([brier_times, [calibration_time]]))

    predictions = cross_validated_predictions(
        table,
        y,
        specs,
        times=prediction_times,
        folds=folds,
        repeats=repeats,
        seed=seed,
        n_jobs=n_jobs,
        harmonizer=harmonizer,
    )

    reference = next(
        (s.name for s in specs if s.estimator == "cox" and s.role == "baseline"), None
    )
    reference = reference or specs[0].name
    summary = summarise_predictions(
        predictions,
        times,
        event_flags,
        reference=reference,
        horizons=kept,
        tau=tau,
        brier_times=brier_times,
        n_bootstrap=n_bootstrap,
        seed=seed,
        curve_times=curve_times,
    )
    result_table = summary.table

    lr = likelihood_ratio_test(table, time, event, list(baseline), covariates)
    is_nested_cox = (result_table["estimator"] == "cox") & (
        result_table["role"] == "baseline+biomarkers"
    )
    result_table["lr_chi2"] = np.where(is_nested_cox, lr.chi2, np.nan)
    result_table["lr_df"] = np.where(is_nested_cox, lr.df, np.nan)
    result_table["lr_p"] = np.where(is_nested_cox, lr.p, np.nan)
    result_table["reference"] = reference

    calibration = {
        p.spec.name: calibration_table(
            times, event_flags, p.survival_at(calibration_time), calibration_time
        )
        for p in predictions
    }
    settings = {
        "folds": folds,
        "repeats": repeats,
        "n_bootstrap": n_bootstrap,
        "seed": seed,
        "horizons": [float(h) for h in kept],
        "tau": tau,
        "calibration_time": calibration_time,
        "brier_range": [float(brier_times[0]), float(brier_times[-1])],
        "reference": reference,
        "lr_n": lr.n,
        "time": time,
        "event": event,
        "baseline": list(baseline),
        "biomarkers": list(biomarkers),
    }
    return Comparison(
        table=result_table,
        predictions=predictions,
        cox_summary=standardised_cox_summary(table, time, event, covariates),
        proportional_hazards=proportional_hazards_test(table, time, event, covariates),
        calibration=calibration,
        auc_curves=summary.auc_curves,
        settings=settings,
    )


def standardised_cox_summary(
    table: pd.DataFrame, time: str, event: str, covariates: Sequence[str]
) -> pd.DataFrame:
    """Cox coefficients per standard deviation of each covariate (complete cases).

    Returns
    -------
    pandas.DataFrame
        The coefficient table of :class:`CoxPH` with an added ``sd`` column.
    """
    frame = covariate_frame(table, list(covariates))
    complete = frame.notna().all(axis=1).to_numpy()
    frame = frame[complete]
    sd = frame.std(ddof=1).replace(0.0, 1.0)
    y = survival_target(
        table[time].to_numpy()[complete], table[event].to_numpy()[complete] == 1
    )
    model = CoxPH().fit((frame - frame.mean()) / sd, y)
    summary = model.summary_.copy()
    summary["sd"] = sd.to_numpy()
    return summary
