"""Outcomes with a competing risk: pulmonary hypertension before death.

A patient who dies cannot develop pulmonary hypertension afterwards, so death
is a competing event, not censoring. Two views answer two questions:

* the cause-specific hazard (Cox model of the cause of interest, competing
  events censored) asks whether a biomarker is associated with the rate of
  the event among patients still at risk of it;
* the cumulative incidence (Aalen-Johansen) gives the probability of having
  had the event by a time, with deaths removing patients from risk; one minus
  Kaplan-Meier would overstate it.

The cumulative incidence comes from scikit-survival's Aalen-Johansen estimator,
which handles tied times exactly; lifelines' ``AalenJohansenFitter`` breaks ties
by random jitter, so its curves would depend on a seed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from radscl.errors import DataError
from radscl.errors import ParameterError
from radscl.models.estimators import CoxPH
from radscl.models.survival import covariate_frame
from radscl.models.survival import require_columns
from radscl.models.survival import survival_target
from radscl.models.survival import validate_outcome

logger = logging.getLogger(__name__)


def cause_specific_table(
    table: pd.DataFrame, time: str, status: str, cause: int
) -> pd.DataFrame:
    """Recode a competing-risks status column to 0/1 for one cause.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per patient.
    time, status : str
        Follow-up time and status (0 censored, 1..K causes).
    cause : int
        The cause of interest; the other causes become censoring.

    Returns
    -------
    pandas.DataFrame
        A copy with ``status`` replaced by the 0/1 indicator of ``cause``.
    """
    codes = _status_codes(table, time, status)
    if cause not in codes or cause == 0:
        raise ParameterError(
            f"cause {cause} does not occur in {status!r} (codes found: "
            f"{', '.join(str(c) for c in codes)})"
        )
    out = table.copy()
    out[status] = (table[status].astype(int) == cause).astype(int)
    return out


def cause_specific_cox(
    table: pd.DataFrame,
    time: str,
    status: str,
    covariates: Sequence[str],
    *,
    cause: int = 1,
) -> pd.DataFrame:
    """Cause-specific Cox model: competing events censored at their time.

    Patients with a missing covariate are left out (complete cases).

    Returns
    -------
    pandas.DataFrame
        The coefficient table (``covariate, coef, hr, hr_lower95, hr_upper95,
        se, z, p``).
    """
    recoded = cause_specific_table(table, time, status, cause)
    frame = covariate_frame(recoded, list(covariates))
    complete = frame.notna().all(axis=1).to_numpy()
    if not complete.any():
        raise DataError("no patient has every covariate")
    y = survival_target(
        recoded[time].to_numpy()[complete], recoded[status].to_numpy()[complete]
    )
    return CoxPH().fit(frame[complete], y).summary_


def cumulative_incidence(
    time: Sequence[float],
    status: Sequence[int],
    *,
    cause: int = 1,
    groups: Sequence | None = None,
) -> pd.DataFrame:
    """Aalen-Johansen cumulative incidence of one cause, optionally by group.

    Parameters
    ----------
    time : array-like of float
        Follow-up times.
    status : array-like of int
        0 censored, 1..K the cause observed.
    cause : int
        The cause whose incidence is returned.
    groups : array-like, optional
        Group label of each patient (e.g. a biomarker tertile).

    Returns
    -------
    pandas.DataFrame
        ``group, time, incidence, lower95, upper95`` (log-log interval), a step
        function starting at time 0 with incidence 0.
    """
    from sksurv.nonparametric import cumulative_incidence_competing_risks

    time = np.asarray(time, dtype=float)
    status = np.asarray(status).astype(int)
    if (status < 0).any() or cause < 1:
        raise ParameterError("status codes must be 0 (censored) or positive causes")
    labels = np.asarray(groups) if groups is not None else np.full(time.shape, "all")

    frames = []
    for label in pd.unique(labels):
        member = labels == label
        if not member.any():
            continue
        event_times, incidence, interval = _aalen_johansen(
            cumulative_incidence_competing_risks, status[member], time[member], cause
        )
        frames.append(
            pd.DataFrame(
                {
                    "group": label,
                    "time": np.r_[0.0, event_times],
                    "incidence": np.r_[0.0, incidence],
                    "lower95": np.r_[0.0, interval[0]],
                    "upper95": np.r_[0.0, interval[1]],
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _aalen_johansen(estimator, status, time, cause):
    if not (status == cause).any():
        unique = np.unique(time)
        zeros = np.zeros(unique.shape)
        return unique, zeros, np.vstack([zeros, zeros])
    # scikit-survival expects every cause 1..K to occur; recode to the causes
    # present so a group without competing events still works
    present = np.unique(status[status > 0])
    recoded = np.searchsorted(present, status) + 1
    recoded[status == 0] = 0
    row = int(np.searchsorted(present, cause)) + 1
    event_times, incidence, interval = estimator(recoded, time, conf_type="log-log")
    return event_times, incidence[row], np.nan_to_num(interval[row], nan=0.0)


def _status_codes(table: pd.DataFrame, time: str, status: str) -> list[int]:
    require_columns(table, [time, status])
    codes = pd.to_numeric(table[status], errors="coerce")
    if codes.isna().any() or (codes % 1 != 0).any() or (codes < 0).any():
        raise DataError(
            f"status column {status!r} must hold 0 (censored) or a cause "
            "number 1, 2, ..."
        )
    found = sorted({int(c) for c in codes})
    validate_outcome(table, time, status, event_codes=found)
    return found
