"""Lung-function baselines the CT biomarkers are compared against.

Each score is computed from clinical columns with the published points and
cut-offs:

* GAP index (Ley et al., Ann Intern Med 2012;156:684-691): gender (female 0,
  male 1), age (<= 60: 0, 61-65: 1, > 65: 2), FVC % predicted (> 75: 0,
  50-75: 1, < 50: 2) and DLco % predicted (> 55: 0, 36-55: 1, <= 35: 2,
  cannot perform: 3); stage I 0-3, II 4-5, III 6-8.
* Goh staging (Goh et al., Am J Respir Crit Care Med 2008;177:1248-1254):
  extensive disease when HRCT extent > 30 %, limited when < 10 %, and in the
  indeterminate band 10-30 % (inclusive) extensive when FVC < 70 % predicted.
  Without FVC in the indeterminate band the paper's optimal 20 % extent
  threshold decides.
* Composite physiologic index (Wells et al., Am J Respir Crit Care Med
  2003;167:962-969): 91.0 - 0.65 DLco% - 0.53 FVC% + 0.34 FEV1%.

Ages, FVC and DLco between the integer bounds of the published tables (age
60.5, DLco 35.5 %) fall in the band whose closed bound they exceed: the
published tables are read as ``age <= 60``, ``60 < age <= 65``, ``age > 65``;
``FVC > 75``, ``50 <= FVC <= 75``, ``FVC < 50``; ``DLco > 55``,
``35 < DLco <= 55``, ``DLco <= 35``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from radscl.errors import DataError
from radscl.models.survival import require_columns

logger = logging.getLogger(__name__)

#: Names of the baseline models and the columns they use.
BASELINE_MODELS: dict[str, tuple[str, ...]] = {
    "fvc": ("fvc_pct",),
    "dlco": ("dlco_pct",),
    "fvc+dlco": ("fvc_pct", "dlco_pct"),
    "gap": ("gap_index",),
    "goh": ("goh_extensive",),
    "cpi": ("cpi",),
}

_MALE = {"m", "male", "1", "man"}
_FEMALE = {"f", "female", "0", "woman"}


def sex_is_male(sex: Sequence) -> np.ndarray:
    """Read a sex column (``M``/``F``, ``male``/``female`` or 1/0) as floats.

    Returns
    -------
    numpy.ndarray
        1.0 for male, 0.0 for female, NaN where missing.

    Raises
    ------
    DataError
        If a value is none of the accepted spellings.
    """
    values = pd.Series(sex, dtype=object)
    text = values.map(
        lambda v: None if pd.isna(v) else str(v).strip().lower().removesuffix(".0")
    )
    unknown = text.notna() & ~text.isin(_MALE | _FEMALE)
    if unknown.any():
        examples = ", ".join(
            repr(v) for v in sorted(set(values[unknown].astype(str)))[:3]
        )
        raise DataError(f"sex must be M/F, male/female or 1/0, but found {examples}")
    return np.where(text.isna(), np.nan, text.isin(_MALE).astype(float))


def gap_points(
    sex: Sequence,
    age: Sequence[float],
    fvc_pct: Sequence[float],
    dlco_pct: Sequence[float],
    dlco_not_performed: Sequence[bool] | None = None,
) -> np.ndarray:
    """GAP index points (0-8) of Ley et al. (2012).

    Parameters
    ----------
    sex : array-like
        ``M``/``F`` (or male/female, 1/0).
    age : array-like of float
        Age in years.
    fvc_pct, dlco_pct : array-like of float
        FVC and DLco in % predicted.
    dlco_not_performed : array-like of bool, optional
        True where the patient could not perform the DLco test (3 points).
        A missing DLco without this flag gives a missing index.

    Returns
    -------
    numpy.ndarray
        The index as floats, NaN where an input is missing.
    """
    male = sex_is_male(sex)
    age = np.asarray(age, dtype=float)
    fvc = np.asarray(fvc_pct, dtype=float)
    dlco = np.asarray(dlco_pct, dtype=float)

    age_points = np.select([age <= 60, age <= 65], [0.0, 1.0], 2.0)
    fvc_points = np.select([fvc > 75, fvc >= 50], [0.0, 1.0], 2.0)
    dlco_points = np.select([dlco > 55, dlco > 35], [0.0, 1.0], 2.0)
    dlco_points = np.where(np.isnan(dlco), np.nan, dlco_points)
    if dlco_not_performed is not None:
        not_performed = np.asarray(dlco_not_performed, dtype=bool)
        dlco_points = np.where(not_performed, 3.0, dlco_points)

    points = male + age_points + fvc_points + dlco_points
    missing = np.isnan(male) | np.isnan(age) | np.isnan(fvc) | np.isnan(dlco_points)
    return np.where(missing, np.nan, points)


def gap_stage(points: Sequence[float]) -> np.ndarray:
    """GAP stage from GAP points: I (0-3), II (4-5), III (6-8).

    Returns
    -------
    numpy.ndarray
        Stage as 1.0, 2.0 or 3.0; NaN where the points are missing.
    """
    points = np.asarray(points, dtype=float)
    if np.any((points < 0) | (points > 8)):
        raise DataError("GAP points must be between 0 and 8")
    stage = np.select([points <= 3, points <= 5], [1.0, 2.0], 3.0)
    return np.where(np.isnan(points), np.nan, stage)


def goh_extensive(
    extent_pct: Sequence[float],
    fvc_pct: Sequence[float] | None = None,
    *,
    indeterminate_pct: tuple[float, float] = (10.0, 30.0),
    threshold_pct: float = 20.0,
    fvc_threshold_pct: float = 70.0,
) -> np.ndarray:
    """Goh staging: 1 for extensive, 0 for limited disease.

    Parameters
    ----------
    extent_pct : array-like of float
        Disease extent on CT in % of lung (a visual score or
        ``fibrosis_extent_pct``).
    fvc_pct : array-like of float, optional
        FVC % predicted, used in the indeterminate band.
    indeterminate_pct : (float, float)
        The indeterminate band, inclusive at both ends.
    threshold_pct : float
        Extent above which disease counts as extensive when FVC is not
        available in the indeterminate band.
    fvc_threshold_pct : float
        FVC below which indeterminate disease counts as extensive.

    Returns
    -------
    numpy.ndarray
        1.0 extensive, 0.0 limited, NaN where the extent is missing.
    """
    extent = np.asarray(extent_pct, dtype=float)
    if fvc_pct is None:
        fvc = np.full(extent.shape, np.nan)
    else:
        fvc = np.asarray(fvc_pct, dtype=float)
    low, high = indeterminate_pct
    if not low <= threshold_pct <= high:
        raise DataError(
            f"the extent threshold {threshold_pct} must lie in the indeterminate "
            f"band {low}-{high}"
        )

    indeterminate = (extent >= low) & (extent <= high)
    by_fvc = np.where(np.isnan(fvc), extent > threshold_pct, fvc < fvc_threshold_pct)
    extensive = np.where(indeterminate, by_fvc, extent > high)
    return np.where(np.isnan(extent), np.nan, extensive.astype(float))


def composite_physiologic_index(
    fvc_pct: Sequence[float], dlco_pct: Sequence[float], fev1_pct: Sequence[float]
) -> np.ndarray:
    """Composite physiologic index of Wells et al. (2003).

    ``CPI = 91.0 - 0.65 DLco% - 0.53 FVC% + 0.34 FEV1%``, higher is worse.
    The published index is not truncated; values outside 0-100 are returned
    as computed.
    """
    fvc = np.asarray(fvc_pct, dtype=float)
    dlco = np.asarray(dlco_pct, dtype=float)
    fev1 = np.asarray(fev1_pct, dtype=float)
    return 91.0 - 0.65 * dlco - 0.53 * fvc + 0.34 * fev1


def add_baseline_scores(
    table: pd.DataFrame,
    *,
    sex: str = "sex",
    age: str = "age",
    fvc_pct: str = "fvc_pct",
    dlco_pct: str = "dlco_pct",
    fev1_pct: str = "fev1_pct",
    extent_pct: str | None = None,
    dlco_not_performed: str | None = None,
) -> pd.DataFrame:
    """Add ``gap_index``, ``gap_stage``, ``goh_extensive`` and ``cpi`` columns.

    A score is added only when its inputs are present: GAP needs sex, age,
    FVC and DLco; Goh needs a CT extent; CPI needs FVC, DLco and FEV1.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per patient.
    sex, age, fvc_pct, dlco_pct, fev1_pct : str
        Clinical column names.
    extent_pct : str, optional
        CT extent column for Goh staging; by default a ``visual_extent_pct``
        column if present, else ``fibrosis_extent_pct``.
    dlco_not_performed : str, optional
        Boolean column marking patients unable to perform DLco.

    Returns
    -------
    pandas.DataFrame
        A copy of ``table`` with the scores added.
    """
    out = table.copy()
    columns = set(table.columns)

    if {sex, age, fvc_pct, dlco_pct} <= columns:
        flags = None
        if dlco_not_performed is not None:
            require_columns(table, [dlco_not_performed])
            flags = table[dlco_not_performed].fillna(False).astype(bool)
        out["gap_index"] = gap_points(
            table[sex], table[age], table[fvc_pct], table[dlco_pct], flags
        )
        out["gap_stage"] = gap_stage(out["gap_index"])

    if extent_pct is None:
        extent_pct = next(
            (c for c in ("visual_extent_pct", "fibrosis_extent_pct") if c in columns),
            None,
        )
    elif extent_pct not in columns:
        require_columns(table, [extent_pct])
    if extent_pct is not None:
        fvc = table[fvc_pct] if fvc_pct in columns else None
        out["goh_extensive"] = goh_extensive(table[extent_pct], fvc)
        logger.debug("goh staging from %s", extent_pct)

    if {fvc_pct, dlco_pct, fev1_pct} <= columns:
        out["cpi"] = composite_physiologic_index(
            table[fvc_pct], table[dlco_pct], table[fev1_pct]
        )
    return out
