"""Progression of interstitial lung disease from serial lung function.

Published definitions of "progression" disagree on the measure (FVC alone or
with DLco), on whether a decline is *relative* (a percentage of the baseline
value) or *absolute* (percentage points of % predicted), and on the time
window. Each definition here is a small rule object that states its source,
and :func:`derive_progression` turns a lung-function table into one row per
patient with the time to progression and an event indicator, ready for a
survival model.

Conventions shared by every rule
--------------------------------
* The reference is the **baseline visit**: each patient's first visit with a
  value of the FVC column the rule reads. DLco criteria use the DLco measured
  at that same visit; a patient without baseline DLco can only meet the FVC
  criteria.
* A decline is positive when lung function falls:
  relative decline (%) = (baseline - value) / baseline x 100, computed from
  FVC % predicted; absolute decline = baseline - value in points of %
  predicted.
* Declines are rounded to 1e-9 % before comparison, so that a decline of
  exactly 10 % computed from decimal inputs (e.g. 85.1 to 80.1 = 5.0 points)
  is not lost to binary floating point.
* "Within N months" is calendar months and inclusive: a visit on the same
  day of the month N months after baseline counts (e.g. baseline 1 March
  2020, 24 months = 1 March 2022). Visits beyond the window are not assessed.
* Criteria are met at a single visit (FVC and DLco from the same visit); the
  event time is the first visit that meets them, in years (365.25 days) since
  baseline. A patient who never meets them is censored at the last visit
  assessed, i.e. the last visit within the window.
* A patient without any visit after baseline within the window cannot be
  assessed and is left out (logged).

Only the lung-function (physiological) part of each definition is
implemented: the 2022 guideline and INBUILD also accept worsening symptoms or
imaging, which a lung-function table does not hold.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
from typing import ClassVar

import numpy as np
import pandas as pd

from radscl.errors import DataError
from radscl.errors import ParameterError
from radscl.models.longitudinal import DAYS_PER_YEAR
from radscl.models.longitudinal import validate_lung_function

logger = logging.getLogger(__name__)

# Declines are compared after rounding to this many decimals (see module text).
_DECIMALS = 9


@dataclasses.dataclass(frozen=True)
class Declines:
    """Declines from baseline at each visit, positive when lung function falls.

    Each array has one value per visit (NaN when a measure is missing at the
    visit or at baseline, or its column is absent).
    """

    fvc_relative_pct: np.ndarray
    fvc_absolute_pct: np.ndarray
    dlco_relative_pct: np.ndarray
    dlco_absolute_pct: np.ndarray


class ProgressionRule(abc.ABC):
    """A published definition of progression from serial lung function.

    Subclasses set the class attributes and implement :meth:`meets`.

    Attributes
    ----------
    name : str
        Short name used on the command line (``--rule``).
    title : str
        One-line description with the thresholds.
    source : str
        The publication the thresholds come from.
    window_months : int
        Declines are assessed from baseline up to this many calendar months.
    needs_pct_predicted : bool
        The rule uses absolute declines, which are only defined in points of
        % predicted, so ``fvc_pct`` is required.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    source: ClassVar[str]
    window_months: int
    needs_pct_predicted: ClassVar[bool] = False

    @abc.abstractmethod
    def meets(self, declines: Declines) -> np.ndarray:
        """Return a boolean per visit: does the visit meet the criteria."""

    def band(self, declines: Declines) -> np.ndarray | None:
        """Return a category per visit, or None for rules without bands."""
        return None


@dataclasses.dataclass(frozen=True)
class SScILDProgression(ProgressionRule):
    """SSc-ILD progression: FVC relative decline >= 10 %, or 5 to < 10 % with DLco.

    Progression at a visit within ``window_months`` (default 24) of baseline
    when the relative decline in FVC % predicted is >= 10 %, or is >= 5 % and
    < 10 % while the relative decline in DLco % predicted at the same visit is
    >= 15 %.

    Goh et al. showed that these 1-year declines predict mortality in
    SSc-ILD; the consensus review of Distler et al. proposes them as the
    definition of progression over 1 to 2 years. Both state the middle band
    as 5-9 %; with measured (non-integer) declines it is read as 5 to < 10 %.
    """

    window_months: int = 24
    name: ClassVar[str] = "ssc"
    title: ClassVar[str] = (
        "SSc-ILD: relative FVC decline >= 10%, or 5 to <10% with relative DLco "
        "decline >= 15%"
    )
    source: ClassVar[str] = (
        "Goh NS et al. Arthritis Rheumatol 2017;69:1670-1678; "
        "Distler O et al. Eur Respir J 2020;55:1902026"
    )

    def meets(self, declines: Declines) -> np.ndarray:
        fvc = declines.fvc_relative_pct
        dlco = declines.dlco_relative_pct
        with np.errstate(invalid="ignore"):
            marginal = (fvc >= 5.0) & (fvc < 10.0) & (dlco >= 15.0)
            return (fvc >= 10.0) | marginal


@dataclasses.dataclass(frozen=True)
class PPFPhysiology(ProgressionRule):
    """Progressive pulmonary fibrosis (2022), physiological criterion.

    Progression at a visit within ``window_months`` (default 12) of baseline
    when the **absolute** decline in FVC is >= 5 points of % predicted, or the
    absolute decline in DLco is >= 10 points of % predicted (the guideline
    asks for DLco corrected for haemoglobin; the table's ``dlco_pct`` is used
    as given).

    The guideline defines PPF as two of three criteria (symptoms,
    physiology, imaging) within the past year; this rule is the physiological
    criterion alone.
    """

    window_months: int = 12
    name: ClassVar[str] = "ppf"
    title: ClassVar[str] = (
        "PPF 2022 physiology: absolute FVC decline >= 5% predicted or absolute "
        "DLco decline >= 10% predicted within 1 year"
    )
    source: ClassVar[str] = (
        "Raghu G et al. ATS/ERS/JRS/ALAT guideline, Am J Respir Crit Care Med "
        "2022;205:e18-e47"
    )
    needs_pct_predicted: ClassVar[bool] = True

    def meets(self, declines: Declines) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return (declines.fvc_absolute_pct >= 5.0) | (
                declines.dlco_absolute_pct >= 10.0
            )


@dataclasses.dataclass(frozen=True)
class InbuildProgression(ProgressionRule):
    """INBUILD: relative decline in FVC % predicted >= 10 % within 24 months.

    The first INBUILD criterion of progression (the trial also accepted a
    5 to < 10 % decline with worsening symptoms or imaging).
    """

    window_months: int = 24
    name: ClassVar[str] = "inbuild"
    title: ClassVar[str] = "INBUILD: relative FVC decline >= 10% within 24 months"
    source: ClassVar[str] = "Flaherty KR et al. N Engl J Med 2019;381:1718-1727"

    def meets(self, declines: Declines) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return declines.fvc_relative_pct >= 10.0


#: EUSTAR categories of relative FVC change, best to worst.
EUSTAR_BANDS: tuple[str, ...] = (
    "improved",
    "stable",
    "moderate",
    "significant",
    "major",
)


@dataclasses.dataclass(frozen=True)
class EustarBands(ProgressionRule):
    """EUSTAR categories of relative change in FVC % predicted.

    With d the relative decline (positive = FVC fell), as published by
    Hoffmann-Vold et al. (EUSTAR database):

    ============ =======================
    improved     d <= -5 (FVC rose >= 5 %)
    stable       -5 < d < 5
    moderate     5 <= d <= 10
    significant  10 < d <= 20
    major        d > 20
    ============ =======================

    so a decline of exactly 10 % is moderate and exactly 20 % significant.
    EUSTAR assessed change over 12 +/- 3 months, hence the default window of
    15 months. The event is the first visit at or beyond ``min_band``
    (default ``moderate``: the paper's "progressive ILD" is a moderate or
    significant decline); the reported band is the worst one within the
    window.
    """

    window_months: int = 15
    min_band: str = "moderate"
    name: ClassVar[str] = "eustar"
    title: ClassVar[str] = (
        "EUSTAR bands of relative FVC change: stable <5%, moderate 5-10%, "
        "significant >10-20%, major >20%"
    )
    source: ClassVar[str] = (
        "Hoffmann-Vold AM et al. Ann Rheum Dis 2021;80:219-227 (EUSTAR)"
    )

    def __post_init__(self) -> None:
        if self.min_band not in EUSTAR_BANDS[2:]:
            raise ParameterError(
                f"min_band must be one of {', '.join(EUSTAR_BANDS[2:])}, but found "
                f"'{self.min_band}'"
            )

    def band(self, declines: Declines) -> np.ndarray:
        decline = declines.fvc_relative_pct
        rank = np.select(
            [
                decline <= -5.0,
                decline < 5.0,
                decline <= 10.0,
                decline <= 20.0,
                decline > 20.0,
            ],
            [0, 1, 2, 3, 4],
            default=-1,
        )
        return np.array(
            [EUSTAR_BANDS[r] if r >= 0 else None for r in rank], dtype=object
        )

    def meets(self, declines: Declines) -> np.ndarray:
        threshold = EUSTAR_BANDS.index(self.min_band)
        bands = self.band(declines)
        return np.array(
            [b is not None and EUSTAR_BANDS.index(b) >= threshold for b in bands],
            dtype=bool,
        )


#: The rules by command-line name.
RULES: dict[str, type[ProgressionRule]] = {
    rule.name: rule
    for rule in (SScILDProgression, PPFPhysiology, InbuildProgression, EustarBands)
}


def get_rule(name: str, **options: object) -> ProgressionRule:
    """Return the rule called ``name`` (``ssc``, ``ppf``, ``inbuild``, ``eustar``).

    Parameters
    ----------
    name : str
        Rule name.
    **options
        Fields of the rule, e.g. ``window_months=12``.

    Returns
    -------
    ProgressionRule
        The rule object.

    Raises
    ------
    ParameterError
        If the name is unknown.
    """
    if name not in RULES:
        raise ParameterError(
            f"rule must be one of {', '.join(RULES)}, but found '{name}'"
        )
    return RULES[name](**options)


def _decline(baseline: np.ndarray, value: np.ndarray, relative: bool) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        decline = baseline - value
        if relative:
            decline = decline / baseline * 100.0
    return np.round(decline, _DECIMALS)


def derive_progression(
    lung_function: pd.DataFrame,
    rule: ProgressionRule | str,
    *,
    patient_col: str = "patient_id",
    date_col: str = "date",
    fvc_column: str | None = None,
    source: str = "lung-function table",
) -> pd.DataFrame:
    """Apply a progression rule to every patient's lung-function series.

    Parameters
    ----------
    lung_function : pandas.DataFrame
        One row per visit with the patient, the date and ``fvc_pct`` and/or
        ``fvc_ml``; ``dlco_pct`` is used by rules with DLco criteria.
    rule : ProgressionRule or str
        A rule object or its name (see :data:`RULES`).
    patient_col, date_col : str
        Patient and visit date columns.
    fvc_column : str, optional
        FVC column for relative declines: ``fvc_pct`` (default when present)
        or ``fvc_ml``. Absolute declines always use ``fvc_pct``.
    source : str
        How the table is named in error messages.

    Returns
    -------
    pandas.DataFrame
        One row per assessable patient: the patient, ``rule``,
        ``baseline_date``, ``time_years`` (to the first visit meeting the rule,
        else to the last visit assessed), ``event`` (1 progression, 0
        censored), ``progression_date`` (empty if censored),
        ``last_assessed_date``, ``visits_assessed`` (visits after baseline in
        the window), ``worst_fvc_relative_decline_pct`` and, when the table
        has DLco, ``worst_dlco_relative_decline_pct`` (largest declines in the
        window), and ``band`` for banded rules (worst band in the window).

    Raises
    ------
    DataError
        If the table is malformed, or a rule needs ``fvc_pct`` and the table
        has none.
    ParameterError
        If the rule or ``fvc_column`` is unknown.
    """
    if isinstance(rule, str):
        rule = get_rule(rule)
    visits = validate_lung_function(
        lung_function, patient_col=patient_col, date_col=date_col, source=source
    )
    fvc_column = _choose_fvc_column(visits, rule, fvc_column, source)

    has_fvc = visits[fvc_column].notna()
    first_fvc = has_fvc.groupby(visits[patient_col]).cumsum()
    visits = visits[first_fvc >= 1].copy()
    baseline = visits.groupby(patient_col, sort=False).head(1).set_index(patient_col)

    baseline_date = visits[patient_col].map(baseline[date_col])
    window_end = baseline_date + pd.DateOffset(months=rule.window_months)
    after_baseline = visits[date_col] > baseline_date
    in_window = after_baseline & (visits[date_col] <= window_end)
    assessed = visits[in_window].copy()
    assessed_baseline_date = baseline_date[in_window]

    declines = _declines(assessed, baseline, patient_col, fvc_column)
    assessed["_meets"] = rule.meets(declines)
    assessed["_fvc_relative"] = declines.fvc_relative_pct
    assessed["_dlco_relative"] = declines.dlco_relative_pct
    bands = rule.band(declines)
    if bands is not None:
        assessed["_band_rank"] = [
            EUSTAR_BANDS.index(b) if b is not None else -1 for b in bands
        ]
    assessed["_years"] = (
        assessed[date_col] - assessed_baseline_date
    ).dt.days.to_numpy() / DAYS_PER_YEAR

    result = _per_patient(
        assessed, baseline, rule, patient_col, date_col, bands is not None
    )
    dropped = baseline.index.difference(result[patient_col])
    if len(dropped):
        logger.info(
            "%s: %d patients without a visit within %d months of baseline are left out",
            rule.name,
            len(dropped),
            rule.window_months,
        )
    if "dlco_pct" not in visits.columns:
        result = result.drop(columns="worst_dlco_relative_decline_pct")
    logger.debug(
        "%s: %d patients assessed, %d progressed",
        rule.name,
        len(result),
        int(result["event"].sum()),
    )
    return result


def _choose_fvc_column(
    visits: pd.DataFrame, rule: ProgressionRule, fvc_column: str | None, source: str
) -> str:
    has_pct = "fvc_pct" in visits.columns and visits["fvc_pct"].notna().any()
    if rule.needs_pct_predicted and not has_pct:
        raise DataError(
            f"{source}: rule '{rule.name}' uses absolute declines in % predicted and "
            "needs column 'fvc_pct' (FVC % predicted)"
        )
    if fvc_column is None:
        return "fvc_pct" if has_pct else "fvc_ml"
    if fvc_column not in ("fvc_pct", "fvc_ml"):
        raise ParameterError(
            f"fvc_column must be 'fvc_pct' or 'fvc_ml', but found '{fvc_column}'"
        )
    if fvc_column not in visits.columns or visits[fvc_column].isna().all():
        raise DataError(f"{source}: column '{fvc_column}' not found or empty")
    return fvc_column


def _declines(
    assessed: pd.DataFrame, baseline: pd.DataFrame, patient_col: str, fvc_column: str
) -> Declines:
    def column_pair(column: str) -> tuple[np.ndarray, np.ndarray]:
        if column not in assessed.columns:
            missing = np.full(len(assessed), np.nan)
            return missing, missing
        reference = assessed[patient_col].map(baseline[column]).to_numpy(dtype=float)
        return reference, assessed[column].to_numpy(dtype=float)

    fvc_reference, fvc = column_pair(fvc_column)
    pct_reference, fvc_pct = column_pair("fvc_pct")
    dlco_reference, dlco = column_pair("dlco_pct")
    return Declines(
        fvc_relative_pct=_decline(fvc_reference, fvc, relative=True),
        fvc_absolute_pct=_decline(pct_reference, fvc_pct, relative=False),
        dlco_relative_pct=_decline(dlco_reference, dlco, relative=True),
        dlco_absolute_pct=_decline(dlco_reference, dlco, relative=False),
    )


def _per_patient(
    assessed: pd.DataFrame,
    baseline: pd.DataFrame,
    rule: ProgressionRule,
    patient_col: str,
    date_col: str,
    banded: bool,
) -> pd.DataFrame:
    grouped = assessed.groupby(patient_col, sort=False)
    last = grouped.tail(1).set_index(patient_col)
    first_event = assessed[assessed["_meets"]].groupby(patient_col, sort=False).head(1)
    first_event = first_event.set_index(patient_col)

    patients = last.index
    event = patients.isin(first_event.index)
    time_years = np.where(
        event,
        first_event["_years"].reindex(patients).to_numpy(),
        last["_years"].to_numpy(),
    )
    result = pd.DataFrame(
        {
            patient_col: patients,
            "rule": rule.name,
            "baseline_date": baseline[date_col].reindex(patients).dt.date.to_numpy(),
            "time_years": time_years,
            "event": event.astype(int),
            "progression_date": first_event[date_col]
            .reindex(patients)
            .dt.date.to_numpy(),
            "last_assessed_date": last[date_col].dt.date.to_numpy(),
            "visits_assessed": grouped.size().reindex(patients).to_numpy(),
            "worst_fvc_relative_decline_pct": grouped["_fvc_relative"]
            .max()
            .reindex(patients)
            .to_numpy(),
            "worst_dlco_relative_decline_pct": grouped["_dlco_relative"]
            .max()
            .reindex(patients)
            .to_numpy(),
        }
    )
    if banded:
        worst = grouped["_band_rank"].max().reindex(patients).to_numpy()
        result["band"] = [EUSTAR_BANDS[r] if r >= 0 else None for r in worst]
    return result
