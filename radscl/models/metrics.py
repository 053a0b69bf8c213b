"""Discrimination and calibration metrics for right-censored outcomes.

The definitions follow scikit-survival's (and the tests check agreement to
machine precision): Harrell's C counts a pair as comparable when the shorter
time is an event (an event is also comparable with a censoring at the same
time); Uno's C weights each comparable pair by ``1 / G(t_i)^2`` with ``G`` the
Kaplan-Meier estimate of the censoring distribution, evaluated at ``t_i`` and
including censorings at ``t_i``, and keeps pairs with ``t_i < tau``; the
cumulative/dynamic AUC at ``t`` compares cases (event by ``t``, weighted by
``1 / G(t_i)``) with controls (``t_j > t``); the Brier score uses the same
inverse probability of censoring weights, and its integral is taken with the
trapezoidal rule over the evaluation times divided by their range. The
censoring distribution is estimated on the evaluated rows themselves.

What differs is the arithmetic: every metric here takes a matrix of case
weights, one row per bootstrap resample (a resample is the vector of how many
times each patient was drawn), so a whole bootstrap is a few matrix products
over the pairs of patients instead of hundreds of calls. Pairs are processed in
blocks of rows, so memory grows with ``n_resamples x n`` plus ``block x n``;
time grows with ``n^2`` per resample, which is fine for cohorts of a few
thousand patients.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from radscl.errors import DataError

#: Risk scores closer than this are tied (scikit-survival's default).
TIED_TOL = 1e-8

_BLOCK_ROWS = 512


@dataclasses.dataclass(frozen=True)
class Outcome:
    """Times and events of the evaluated patients, with their sort order."""

    time: np.ndarray
    event: np.ndarray
    unique_time: np.ndarray
    time_group: np.ndarray
    time_order: np.ndarray
    group_starts: np.ndarray

    @classmethod
    def from_arrays(cls, time: Sequence[float], event: Sequence[bool]) -> Outcome:
        """Check and hold an outcome.

        Raises
        ------
        DataError
            If lengths differ, a time is negative or not finite, or there is
            no event.
        """
        time = np.asarray(time, dtype=float)
        event = np.asarray(event).astype(bool)
        if time.ndim != 1 or time.shape != event.shape:
            raise DataError(
                f"time and event must be 1-d and of equal length, but found shapes "
                f"{time.shape} and {event.shape}"
            )
        if time.shape[0] < 2:
            raise DataError("at least two patients are needed to evaluate a model")
        if not np.isfinite(time).all() or (time < 0).any():
            raise DataError("times must be finite and >= 0")
        if not event.any():
            raise DataError("all patients are censored; discrimination is undefined")
        unique_time, time_group = np.unique(time, return_inverse=True)
        time_order = np.argsort(time_group, kind="stable")
        group_starts = np.searchsorted(
            time_group[time_order], np.arange(unique_time.shape[0])
        )
        return cls(time, event, unique_time, time_group, time_order, group_starts)

    @property
    def n(self) -> int:
        """Number of patients."""
        return self.time.shape[0]


def censoring_survival(outcome: Outcome, weights: np.ndarray) -> np.ndarray:
    """Kaplan-Meier estimate of the censoring survival ``G`` at each unique time.

    Parameters
    ----------
    outcome : Outcome
        The patients.
    weights : numpy.ndarray, shape (n_resamples, n)
        Case weights, one row per resample.

    Returns
    -------
    numpy.ndarray, shape (n_resamples, n_unique_times)
        ``G`` just after each unique time (censorings at that time included).
        Events at a time are taken to precede censorings at the same time.
    """
    events = _group_sum(weights * outcome.event, outcome)
    totals = _group_sum(weights, outcome)
    censored = totals - events
    at_risk = np.cumsum(totals[:, ::-1], axis=1)[:, ::-1] - events

    ratio = np.divide(
        censored, at_risk, out=np.zeros_like(censored), where=censored > 0
    )
    return np.cumprod(1.0 - ratio, axis=1)


def censoring_at(
    outcome: Outcome, survival: np.ndarray, times: np.ndarray
) -> np.ndarray:
    """Evaluate a censoring survival step function at ``times``.

    Returns
    -------
    numpy.ndarray, shape (n_resamples, len(times))
        ``G(t)``; 1 before the first time, the last value after the last.
    """
    index = np.searchsorted(outcome.unique_time, times, side="right") - 1
    values = survival[:, np.clip(index, 0, None)]
    return np.where(index < 0, 1.0, values)


def concordance_matrices(
    outcome: Outcome,
    risk: np.ndarray,
    weights: np.ndarray,
    control_masks: np.ndarray,
    tied_tol: float = TIED_TOL,
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted sums over pairs that every concordance metric is built from.

    Parameters
    ----------
    outcome : Outcome
        The patients.
    risk : numpy.ndarray, shape (n,)
        Risk scores, higher = worse.
    weights : numpy.ndarray, shape (n_resamples, n)
        Case weights.
    control_masks : numpy.ndarray, shape (n_horizons, n)
        For each AUC horizon ``t``, which patients are controls (``t_j > t``).
    tied_tol : float
        Risk scores closer than this count as tied (half concordant).

    Returns
    -------
    harrell_sum : numpy.ndarray, shape (n_resamples, n)
        ``sum_j w_j comparable_ij concordant_ij`` for each patient ``i``.
    control_sum : numpy.ndarray, shape (n_horizons, n_resamples, n)
        ``sum_j w_j control_j(t) concordant_ij`` for each patient ``i``.
    """
    n = outcome.n
    harrell_sum = np.zeros((weights.shape[0], n))
    control_weights = weights[None, :, :] * control_masks[:, None, :]
    control_sum = np.zeros((control_masks.shape[0], weights.shape[0], n))

    for start in range(0, n, _BLOCK_ROWS):
        rows = slice(start, min(start + _BLOCK_ROWS, n))
        concordant = _concordance_block(risk[rows], risk, tied_tol)
        comparable = _comparable_block(outcome, rows)
        harrell_sum[:, rows] = weights @ (comparable * concordant).T
        control_sum[:, :, rows] = control_weights @ concordant.T
    return harrell_sum, control_sum


def comparable_sum(outcome: Outcome, weights: np.ndarray) -> np.ndarray:
    """``sum_j w_j comparable_ij`` for each patient ``i`` and resample.

    Returns
    -------
    numpy.ndarray, shape (n_resamples, n)
    """
    total = np.zeros((weights.shape[0], outcome.n))
    for start in range(0, outcome.n, _BLOCK_ROWS):
        rows = slice(start, min(start + _BLOCK_ROWS, outcome.n))
        total[:, rows] = weights @ _comparable_block(outcome, rows).T
    return total


def bootstrap_weights(n: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Resampling counts of ``n`` patients, one row per bootstrap resample.

    Returns
    -------
    numpy.ndarray, shape (n_resamples, n)
        How many times each patient was drawn (rows sum to ``n``).
    """
    draws = rng.integers(0, n, size=(n_resamples, n))
    counts = np.zeros((n_resamples, n))
    np.add.at(counts, (np.arange(n_resamples)[:, None], draws), 1.0)
    return counts


@dataclasses.dataclass
class DiscriminationResult:
    """Per-resample discrimination of one set of risk scores."""

    harrell_c: np.ndarray
    uno_c: np.ndarray
    auc: np.ndarray


class ResampledMetrics:
    """Metrics of many risk scores on one outcome under fixed case weights.

    The parts that depend only on the outcome and the weights (censoring
    distribution, comparable pairs, cases and controls at each horizon) are
    computed once, so comparing several models on the same bootstrap resamples
    costs one pass over the pairs per model.

    Parameters
    ----------
    outcome : Outcome
        The patients.
    weights : numpy.ndarray, shape (n_resamples, n)
        Case weights, one row per resample (all ones for the plain estimate).
    horizons : array-like of float
        Times of the cumulative/dynamic AUC.
    tau : float, optional
        Truncation time of Uno's C; no truncation when None.
    tied_tol : float
        Risk scores closer than this count as tied.
    """

    def __init__(
        self,
        outcome: Outcome,
        weights: np.ndarray,
        *,
        horizons: Sequence[float] = (),
        tau: float | None = None,
        tied_tol: float = TIED_TOL,
    ) -> None:
        weights = np.atleast_2d(np.asarray(weights, dtype=float))
        if weights.shape[1] != outcome.n:
            raise DataError(
                f"expected weights for {outcome.n} patients, found {weights.shape[1]}"
            )
        self.outcome = outcome
        self.weights = weights
        self.horizons = np.atleast_1d(np.asarray(horizons, dtype=float))
        self.tau = tau
        self.tied_tol = tied_tol

        self.censoring = censoring_survival(outcome, weights)
        g_at_time = self.censoring[:, outcome.time_group]
        self._inverse_g = np.divide(
            1.0, g_at_time, out=np.zeros_like(g_at_time), where=g_at_time > 0
        )

        in_window = (
            outcome.event if tau is None else outcome.event & (outcome.time < tau)
        )
        self._uno_weights = weights * self._inverse_g**2 * in_window
        self._comparable = comparable_sum(outcome, weights)

        horizons = self.horizons
        self._controls = (outcome.time[None, :] > horizons[:, None]).astype(float)
        cases = outcome.event[None, :] & (outcome.time[None, :] <= horizons[:, None])
        self._case_weights = (
            weights[None, :, :] * self._inverse_g[None, :, :] * cases[:, None, :]
        )
        control_totals = (weights[None, :, :] * self._controls[:, None, :]).sum(axis=2)
        self._auc_denominator = (self._case_weights.sum(axis=2) * control_totals).T

    def discrimination(self, risk: Sequence[float]) -> DiscriminationResult:
        """Harrell's C, Uno's C and cumulative/dynamic AUC for each resample.

        Parameters
        ----------
        risk : array-like of float, shape (n,)
            Risk scores, higher = worse.

        Returns
        -------
        DiscriminationResult
            ``harrell_c`` and ``uno_c`` of shape (n_resamples,), ``auc`` of
            shape (n_resamples, n_horizons); NaN where a resample has no
            comparable pair.
        """
        risk = np.asarray(risk, dtype=float)
        if risk.shape != (self.outcome.n,):
            raise DataError(
                f"expected {self.outcome.n} risk scores, but found shape {risk.shape}"
            )
        if not np.isfinite(risk).all():
            raise DataError("risk scores must be finite")

        harrell_sum, control_sum = concordance_matrices(
            self.outcome, risk, self.weights, self._controls, self.tied_tol
        )

        weights = self.weights
        harrell = _ratio(
            (weights * harrell_sum).sum(axis=1),
            (weights * self._comparable).sum(axis=1),
        )
        uno = _ratio(
            (self._uno_weights * harrell_sum).sum(axis=1),
            (self._uno_weights * self._comparable).sum(axis=1),
        )
        auc = _ratio(
            (self._case_weights * control_sum).sum(axis=2).T, self._auc_denominator
        )
        return DiscriminationResult(harrell, uno, auc)

    def brier(self, survival: np.ndarray, times: Sequence[float]) -> np.ndarray:
        """Time-dependent Brier score with inverse probability of censoring weights.

        Parameters
        ----------
        survival : numpy.ndarray, shape (n, n_times)
            Predicted probability of being event-free at each of ``times``.
        times : array-like of float, shape (n_times,)
            Evaluation times.

        Returns
        -------
        numpy.ndarray, shape (n_resamples, n_times)
        """
        outcome = self.outcome
        times = np.asarray(times, dtype=float)
        survival = np.asarray(survival, dtype=float)
        if survival.shape != (outcome.n, times.shape[0]):
            raise DataError(
                "expected survival probabilities of shape "
                f"{(outcome.n, times.shape[0])}, "
                f"but found {survival.shape}"
            )

        g_at_times = censoring_at(outcome, self.censoring, times)
        cases = outcome.event[:, None] & (outcome.time[:, None] <= times[None, :])
        controls = outcome.time[:, None] > times[None, :]
        case_part = (self.weights * self._inverse_g) @ np.where(cases, survival**2, 0.0)
        control_part = _ratio(
            self.weights @ np.where(controls, (1.0 - survival) ** 2, 0.0), g_at_times
        )
        return (case_part + control_part) / self.weights.sum(axis=1, keepdims=True)


def integrated_brier(brier: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Integrate Brier scores over ``times`` (trapezoid) and divide by their range."""
    times = np.asarray(times, dtype=float)
    if times.shape[0] < 2:
        raise DataError("the integrated Brier score needs at least two times")
    return np.trapezoid(brier, times, axis=-1) / (times[-1] - times[0])


def harrell_c(
    time: Sequence[float], event: Sequence[bool], risk: Sequence[float]
) -> float:
    """Harrell's concordance index of risk scores (higher = worse).

    Parameters
    ----------
    time : array-like of float
        Follow-up times.
    event : array-like of bool
        Event indicators.
    risk : array-like of float
        Risk scores.

    Returns
    -------
    float
        Share of comparable pairs ordered correctly (ties in risk count half).
    """
    outcome = Outcome.from_arrays(time, event)
    result = ResampledMetrics(outcome, _ones(outcome)).discrimination(risk)
    return float(result.harrell_c[0])


def uno_c(
    time: Sequence[float],
    event: Sequence[bool],
    risk: Sequence[float],
    *,
    tau: float | None = None,
) -> float:
    """Uno's inverse-probability-of-censoring weighted concordance index.

    The censoring distribution is estimated from the same patients.

    Parameters
    ----------
    time, event, risk : array-like
        Follow-up times, event indicators and risk scores.
    tau : float, optional
        Only pairs whose earlier time is before ``tau`` count.

    Returns
    -------
    float
        Uno's C.

    Raises
    ------
    DataError
        If the censoring distribution reaches zero before ``tau`` at an event.
    """
    outcome = Outcome.from_arrays(time, event)
    _check_positive_censoring(outcome, tau)
    result = ResampledMetrics(outcome, _ones(outcome), tau=tau).discrimination(risk)
    return float(result.uno_c[0])


def time_dependent_auc(
    time: Sequence[float],
    event: Sequence[bool],
    risk: Sequence[float],
    times: Sequence[float],
) -> np.ndarray:
    """Cumulative/dynamic AUC of risk scores at each of ``times``.

    Returns
    -------
    numpy.ndarray, shape (len(times),)
    """
    outcome = Outcome.from_arrays(time, event)
    result = ResampledMetrics(outcome, _ones(outcome), horizons=times).discrimination(
        risk
    )
    return result.auc[0]


def integrated_brier_score(
    time: Sequence[float],
    event: Sequence[bool],
    survival: np.ndarray,
    times: Sequence[float],
) -> float:
    """Integrated Brier score of predicted survival probabilities.

    Parameters
    ----------
    time, event : array-like
        Follow-up times and event indicators.
    survival : numpy.ndarray, shape (n, len(times))
        Predicted event-free probabilities at ``times``.
    times : array-like of float
        Increasing evaluation times (at least two).

    Returns
    -------
    float
    """
    outcome = Outcome.from_arrays(time, event)
    times = np.asarray(times, dtype=float)
    brier = ResampledMetrics(outcome, _ones(outcome)).brier(survival, times)
    return float(integrated_brier(brier, times)[0])


def _ones(outcome: Outcome) -> np.ndarray:
    return np.ones((1, outcome.n))


def _check_positive_censoring(outcome: Outcome, tau: float | None) -> None:
    censoring = censoring_survival(outcome, _ones(outcome))[0]
    used = outcome.event if tau is None else outcome.event & (outcome.time < tau)
    if (censoring[outcome.time_group][used] <= 0).any():
        raise DataError(
            "the censoring distribution reaches zero before the last event; choose a "
            "smaller tau"
        )


def _concordance_block(
    risk_rows: np.ndarray, risk: np.ndarray, tied_tol: float
) -> np.ndarray:
    difference = risk_rows[:, None] - risk[None, :]
    return np.where(np.abs(difference) <= tied_tol, 0.5, (difference > 0).astype(float))


def _comparable_block(outcome: Outcome, rows: slice) -> np.ndarray:
    time_i = outcome.time[rows, None]
    later = outcome.time[None, :] > time_i
    censored_same_time = (outcome.time[None, :] == time_i) & ~outcome.event[None, :]
    return (outcome.event[rows, None] & (later | censored_same_time)).astype(float)


def _group_sum(values: np.ndarray, outcome: Outcome) -> np.ndarray:
    """Sum the columns of ``values`` over patients sharing a time."""
    return np.add.reduceat(values[:, outcome.time_order], outcome.group_starts, axis=1)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(
        numerator,
        denominator,
        out=np.full(np.shape(numerator), np.nan),
        where=denominator > 0,
    )
