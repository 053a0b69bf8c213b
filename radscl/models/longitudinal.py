"""Change between repeat CT scans, FVC trajectories and landmark analysis.

Three questions of a study with repeat scans and serial lung function:

* how much did each CT biomarker change between a patient's scans, per year,
  and is the change measurable at all when the two scans were acquired or
  reconstructed differently (:func:`scan_changes`);
* does a baseline biomarker predict how fast FVC declines: a linear
  mixed-effects model with a random intercept and slope per patient and a
  biomarker x time interaction (:func:`fit_fvc_trajectory`);
* does the change between the first two scans add to what the baseline scan
  already says about later outcome: a landmark Cox analysis at the second scan
  (:func:`landmark_dataset`, :func:`compare_landmark_models`).

Progression defined from lung-function series lives in
:mod:`radscl.models.progression`.

Times are in years of 365.25 days. Tables are validated on entry and a bad
table raises :class:`~radscl.errors.DataError` naming the column and the data
row (1 = first row after the header), never a patient identifier or a date.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from radscl.errors import DataError
from radscl.errors import ParameterError
from radscl.errors import RadsclWarning

logger = logging.getLogger(__name__)

DAYS_PER_YEAR = 365.25

#: Measures that need a contiguous volume to trace the airway or vessel tree;
#: they are empty for gapped HRCT, so their change is empty too.
TREE_MEASURE_PREFIXES: tuple[str, ...] = ("airway_", "vessel_")

#: Measures read from the attenuation histogram or texture, which the
#: reconstruction kernel shifts; a change across kernels is flagged.
KERNEL_SENSITIVE_PREFIXES: tuple[str, ...] = (
    "fibrosis_",
    "ggo_",
    "reticulation_",
    "honeycombing_",
    "emphysema_",
    "haa",
    "laa",
    "mld_",
    "hist_",
    "rad_",
)

#: Column-name stems of CT biomarkers (features.csv, incl. zone-wise variants).
BIOMARKER_PREFIXES: tuple[str, ...] = (
    "lung_",
    *TREE_MEASURE_PREFIXES,
    *KERNEL_SENSITIVE_PREFIXES,
)

Z_95 = 1.959963984540054


class MixedModelConvergenceWarning(RadsclWarning):
    """The FVC mixed model did not converge cleanly or sits on a boundary.

    The estimates are still returned; the message says which optimisers were
    tried and what to change (``optimizers``, ``random_slope``).
    """


# ---------------------------------------------------------------------------
# Input tables
# ---------------------------------------------------------------------------


def _data_row(frame: pd.DataFrame, mask: pd.Series) -> int:
    """1-based data row of the first True in ``mask`` (frame in input order)."""
    return int(np.flatnonzero(mask.to_numpy())[0]) + 1


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], source: str) -> None:
    for column in columns:
        if column not in frame.columns:
            shown = ", ".join(map(str, list(frame.columns)[:15]))
            more = ", ..." if frame.shape[1] > 15 else ""
            raise DataError(
                f"{source}: column '{column}' not found (columns: {shown}{more})"
            )


def _parse_dates(frame: pd.DataFrame, column: str, source: str) -> pd.Series:
    parsed = pd.to_datetime(frame[column], errors="coerce")
    bad = parsed.isna()
    if bad.any():
        count = int(bad.sum())
        raise DataError(
            f"{source}: column '{column}' is not a date in {count} "
            f"row{'s' if count > 1 else ''} (first at data row {_data_row(frame, bad)})"
        )
    return parsed.dt.normalize()


def _parse_numeric(frame: pd.DataFrame, column: str, source: str) -> pd.Series:
    values = frame[column]
    if pd.api.types.is_bool_dtype(values):
        raise DataError(
            f"{source}: column '{column}' must be numeric, but found booleans"
        )
    parsed = pd.to_numeric(values, errors="coerce")
    bad = parsed.isna() & values.notna() & (values.astype(str).str.strip() != "")
    if bad.any():
        raise DataError(
            f"{source}: column '{column}' must be numeric, but found text "
            f"(first at data row {_data_row(frame, bad)})"
        )
    return parsed.astype(float)


def _parse_bool(frame: pd.DataFrame, column: str, source: str) -> pd.Series:
    values = frame[column]
    if pd.api.types.is_bool_dtype(values):
        return values.astype(object)
    words = {
        "true": True,
        "1": True,
        "yes": True,
        "false": False,
        "0": False,
        "no": False,
    }
    text = values.astype(str).str.strip().str.lower()
    parsed = text.map(words)
    missing = values.isna() | text.isin({"", "nan", "none"})
    bad = parsed.isna() & ~missing
    if bad.any():
        raise DataError(
            f"{source}: column '{column}' must be true/false, but found other text "
            f"(first at data row {_data_row(frame, bad)})"
        )
    return parsed.where(~missing, None).astype(object)


def _check_patients(frame: pd.DataFrame, patient_col: str, source: str) -> None:
    empty = frame[patient_col].isna() | (
        frame[patient_col].astype(str).str.strip() == ""
    )
    if empty.any():
        raise DataError(
            f"{source}: column '{patient_col}' is empty in {int(empty.sum())} rows "
            f"(first at data row {_data_row(frame, empty)})"
        )


def _check_unique_dates(
    frame: pd.DataFrame, patient_col: str, date_col: str, source: str, hint: str
) -> None:
    repeated = frame.duplicated([patient_col, date_col], keep="first")
    if repeated.any():
        raise DataError(
            f"{source}: {int(repeated.sum())} rows repeat a patient's '{date_col}' "
            f"(first at data row {_data_row(frame, repeated)}); {hint}"
        )


def biomarker_columns(frame: pd.DataFrame) -> list[str]:
    """Return the columns of ``frame`` named like CT biomarkers of features.csv.

    Parameters
    ----------
    frame : pandas.DataFrame
        A features table.

    Returns
    -------
    list of str
        Columns whose name starts with a biomarker stem
        (:data:`BIOMARKER_PREFIXES`), in table order; the text columns giving
        the reason a measurement is empty (``airway_reason``) are not
        biomarkers.
    """
    return [
        c
        for c in frame.columns
        if str(c).startswith(BIOMARKER_PREFIXES) and not str(c).endswith("_reason")
    ]


def validate_scan_features(
    features: pd.DataFrame,
    measures: Sequence[str] | None = None,
    *,
    patient_col: str = "patient_id",
    date_col: str = "scan_date",
    source: str = "features table",
) -> pd.DataFrame:
    """Check a table of repeat-scan features and return a clean, sorted copy.

    Parameters
    ----------
    features : pandas.DataFrame
        One row per scan with a patient column, a scan date column and feature
        columns named as in features.csv. Optional ``contiguous`` (false for
        gapped HRCT), ``kernel`` and ``case_id`` columns are used when present.
    measures : sequence of str, optional
        Feature columns to keep; by default every biomarker column.
    patient_col, date_col : str
        Names of the patient and scan date columns.
    source : str
        How the table is named in error messages (e.g. its file name).

    Returns
    -------
    pandas.DataFrame
        The table sorted by patient and date, dates parsed, measures numeric,
        ``contiguous`` as True/False/None.

    Raises
    ------
    DataError
        If a column is missing or malformed, or a patient has two scans on one
        date.
    """
    _require_columns(features, [patient_col, date_col], source)
    if measures is None:
        measures = biomarker_columns(features)
    _require_columns(features, measures, source)
    if not measures:
        raise DataError(
            f"{source}: no feature columns found (expected names such as "
            "'fibrosis_extent_pct' or 'airway_lung_ratio_pct')"
        )

    clean = features.reset_index(drop=True).copy()
    _check_patients(clean, patient_col, source)
    clean[date_col] = _parse_dates(clean, date_col, source)
    for column in measures:
        clean[column] = _parse_numeric(clean, column, source)
    if "contiguous" in clean.columns:
        clean["contiguous"] = _parse_bool(clean, "contiguous", source)
    if "kernel" in clean.columns:
        clean["kernel"] = clean["kernel"].astype("string").str.strip()
    _check_unique_dates(
        clean,
        patient_col,
        date_col,
        source,
        "keep one reconstruction per scan date",
    )

    return clean.sort_values([patient_col, date_col], kind="stable").reset_index(
        drop=True
    )


#: Lung-function columns: FVC in ml and/or % predicted, DLco % predicted.
LUNG_FUNCTION_COLUMNS: tuple[str, ...] = ("fvc_pct", "fvc_ml", "dlco_pct")


def validate_lung_function(
    lung_function: pd.DataFrame,
    *,
    patient_col: str = "patient_id",
    date_col: str = "date",
    source: str = "lung-function table",
) -> pd.DataFrame:
    """Check a lung-function table and return a clean copy sorted by date.

    Parameters
    ----------
    lung_function : pandas.DataFrame
        One row per visit: patient, date and at least one of ``fvc_pct``
        (FVC % predicted) and ``fvc_ml`` (FVC in ml); ``dlco_pct`` (DLco %
        predicted) is optional. Empty cells are allowed (a test not done).
    patient_col, date_col : str
        Names of the patient and visit date columns.
    source : str
        How the table is named in error messages.

    Returns
    -------
    pandas.DataFrame
        The table sorted by patient and date, with numeric lung-function
        columns.

    Raises
    ------
    DataError
        If a column is missing, not numeric or implausible (FVC in litres in
        the ``fvc_ml`` column, negative values), or a patient has two visits
        on one date.
    """
    _require_columns(lung_function, [patient_col, date_col], source)
    if not any(c in lung_function.columns for c in ("fvc_pct", "fvc_ml")):
        raise DataError(
            f"{source}: needs column 'fvc_pct' (FVC % predicted) or 'fvc_ml' "
            "(FVC in ml), found neither"
        )

    clean = lung_function.reset_index(drop=True).copy()
    _check_patients(clean, patient_col, source)
    clean[date_col] = _parse_dates(clean, date_col, source)
    for column in LUNG_FUNCTION_COLUMNS:
        if column not in clean.columns:
            continue
        clean[column] = _parse_numeric(clean, column, source)
        non_positive = clean[column] <= 0
        if non_positive.any():
            raise DataError(
                f"{source}: column '{column}' must be positive, but has "
                f"{int(non_positive.sum())} values <= 0 (first at data row "
                f"{_data_row(clean, non_positive)})"
            )
    if "fvc_ml" in clean.columns and (clean["fvc_ml"].dropna() < 20).any():
        litres = clean["fvc_ml"] < 20
        raise DataError(
            f"{source}: column 'fvc_ml' holds values below 20 (first at data row "
            f"{_data_row(clean, litres)}); FVC looks like litres, give it in ml"
        )
    if all(clean[c].isna().all() for c in ("fvc_pct", "fvc_ml") if c in clean.columns):
        raise DataError(f"{source}: FVC columns are empty")
    _check_unique_dates(
        clean,
        patient_col,
        date_col,
        source,
        "keep one test per visit date",
    )

    return clean.sort_values([patient_col, date_col], kind="stable").reset_index(
        drop=True
    )


# ---------------------------------------------------------------------------
# Change between scans
# ---------------------------------------------------------------------------

PAIR_KINDS: tuple[str, ...] = ("consecutive", "first_last")


def _is_tree_measure(name: str) -> bool:
    return name.startswith(TREE_MEASURE_PREFIXES)


def _is_kernel_sensitive(name: str) -> bool:
    return name.startswith(KERNEL_SENSITIVE_PREFIXES)


def _scan_pairs(
    scans: pd.DataFrame, patient_col: str, kinds: Sequence[str]
) -> pd.DataFrame:
    """Join each scan to the scan it is compared with, columns ``*_from``/``*_to``."""
    scans = scans.copy()
    grouped = scans.groupby(patient_col, sort=False)
    scans["_number"] = grouped.cumcount()
    scans["_count"] = grouped[patient_col].transform("size")
    scans = scans[scans["_count"] >= 2]

    pairs = []
    if "consecutive" in kinds:
        later = scans.assign(_number=scans["_number"] - 1)
        joined = scans.merge(
            later, on=[patient_col, "_number"], suffixes=("_from", "_to")
        )
        joined["scan_from"] = joined["_number"] + 1
        joined["scan_to"] = joined["_number"] + 2
        pairs.append(joined.assign(pair="consecutive"))
    if "first_last" in kinds:
        first = scans[scans["_number"] == 0]
        last = scans[scans["_number"] == scans["_count"] - 1]
        joined = first.merge(last, on=patient_col, suffixes=("_from", "_to"))
        joined["scan_from"] = 1
        joined["scan_to"] = joined["_count_to"]
        pairs.append(joined.assign(pair="first_last"))
    if not pairs:
        return pd.DataFrame()
    return pd.concat(pairs, ignore_index=True)


def scan_changes(
    features: pd.DataFrame,
    measures: Sequence[str] | None = None,
    *,
    patient_col: str = "patient_id",
    date_col: str = "scan_date",
    pairs: Sequence[str] = PAIR_KINDS,
    source: str = "features table",
) -> pd.DataFrame:
    """Absolute and annualised change of each biomarker between a patient's scans.

    Each patient's scans are ordered by date and compared pairwise:
    consecutive scans (1 to 2, 2 to 3, ...) and the first with the last scan
    (also for patients with two scans, where it repeats the consecutive pair).

    A change is only as good as the two measurements behind it, so each
    (pair, measure) row says whether it is ``comparable``:

    * tree-dependent measures (``airway_*``, ``vessel_*``) cannot be measured
      on gapped HRCT (``contiguous`` false); if either scan is gapped the change
      is empty, never zero;
    * histogram and texture measures (``fibrosis_extent*``, ``haa*``, ``laa*``,
      ``mld_*``, ``hist_*``, ``rad_*``) shift with the reconstruction kernel; if
      the kernels differ the change is reported but flagged not comparable;
    * a change with a missing value at either scan is empty.

    Without ``contiguous`` or ``kernel`` columns the protocol cannot be checked
    and is reported as ``unknown``.

    Parameters
    ----------
    features : pandas.DataFrame
        One row per scan (see :func:`validate_scan_features`).
    measures : sequence of str, optional
        Feature columns to compare; by default every biomarker column.
    patient_col, date_col : str
        Names of the patient and scan date columns.
    pairs : sequence of {"consecutive", "first_last"}
        Which pairs of scans to compare.
    source : str
        How the table is named in error messages.

    Returns
    -------
    pandas.DataFrame
        One row per pair of scans and measure: the patient, ``pair``,
        ``scan_from``/``scan_to`` (1 = first scan), ``case_id_from``/``to`` when
        the table has ``case_id``, ``date_from``/``date_to``,
        ``interval_years``, protocol columns (``contiguous_from``/``to``,
        ``kernel_from``/``to`` when known, ``protocol`` text), ``measure``,
        ``value_from``, ``value_to``, ``change`` (to minus from, in the
        measure's unit), ``change_per_year``, ``comparable`` and ``note``.
        Patients with a single scan have no rows.

    Raises
    ------
    DataError
        If the table is malformed (see :func:`validate_scan_features`).
    ParameterError
        If ``pairs`` names an unknown kind of pair.
    """
    unknown = sorted(set(pairs) - set(PAIR_KINDS))
    if unknown:
        raise ParameterError(
            f"pairs must be among {', '.join(PAIR_KINDS)}, "
            f"but found {', '.join(unknown)}"
        )
    scans = validate_scan_features(
        features, measures, patient_col=patient_col, date_col=date_col, source=source
    )
    measures = list(measures) if measures is not None else biomarker_columns(features)

    table = _scan_pairs(scans, patient_col, pairs)
    if table.empty:
        logger.info("no patient has two scans; no change to compute")
        return pd.DataFrame(columns=_change_columns(scans, patient_col))
    interval_days = (table[f"{date_col}_to"] - table[f"{date_col}_from"]).dt.days
    interval_years = interval_days.to_numpy(dtype=float) / DAYS_PER_YEAR

    has_contiguity = "contiguous" in scans.columns
    has_kernel = "kernel" in scans.columns
    if has_contiguity:
        contiguous_from = table["contiguous_from"]
        contiguous_to = table["contiguous_to"]
        gapped = (contiguous_from == False) | (contiguous_to == False)  # noqa: E712
        both_gapped = (contiguous_from == False) & (contiguous_to == False)  # noqa: E712
        mixed = gapped & ~both_gapped
    else:
        gapped = pd.Series(False, index=table.index)
        both_gapped = mixed = gapped
    if has_kernel:
        kernel_from = table["kernel_from"].str.casefold()
        kernel_to = table["kernel_to"].str.casefold()
        kernel_differs = (kernel_from != kernel_to).fillna(False).astype(bool)
    else:
        kernel_differs = pd.Series(False, index=table.index)
    protocol = _protocol_text(
        mixed, both_gapped, kernel_differs, has_contiguity, has_kernel
    )

    base = pd.DataFrame(
        {
            patient_col: table[patient_col].to_numpy(),
            "pair": table["pair"].to_numpy(),
            "scan_from": table["scan_from"].to_numpy(),
            "scan_to": table["scan_to"].to_numpy(),
        }
    )
    if "case_id" in scans.columns:
        base["case_id_from"] = table["case_id_from"].to_numpy()
        base["case_id_to"] = table["case_id_to"].to_numpy()
    base["date_from"] = table[f"{date_col}_from"].dt.date.to_numpy()
    base["date_to"] = table[f"{date_col}_to"].dt.date.to_numpy()
    base["interval_years"] = interval_years
    if has_contiguity:
        base["contiguous_from"] = table["contiguous_from"].to_numpy()
        base["contiguous_to"] = table["contiguous_to"].to_numpy()
    if has_kernel:
        base["kernel_from"] = table["kernel_from"].to_numpy()
        base["kernel_to"] = table["kernel_to"].to_numpy()
    base["protocol"] = protocol

    blocks = []
    for measure in measures:
        value_from = table[f"{measure}_from"].to_numpy(dtype=float)
        value_to = table[f"{measure}_to"].to_numpy(dtype=float)
        change = value_to - value_from
        note = np.full(len(table), "", dtype=object)
        comparable = np.isfinite(change)
        note[~comparable] = "missing value"

        if _is_tree_measure(measure):
            blocked = gapped.to_numpy()
            change = np.where(blocked, np.nan, change)
            comparable &= ~blocked
            note[blocked] = "tree measure not measurable on gapped HRCT"
        elif _is_kernel_sensitive(measure):
            flagged = kernel_differs.to_numpy() & np.isfinite(change)
            comparable &= ~flagged
            note[flagged] = "kernels differ: density/texture change not comparable"

        block = base.copy()
        block["measure"] = measure
        block["value_from"] = value_from
        block["value_to"] = value_to
        block["change"] = change
        block["change_per_year"] = change / interval_years
        block["comparable"] = comparable
        block["note"] = note
        blocks.append(block)

    changes = pd.concat(blocks, ignore_index=True).sort_values(
        [patient_col, "pair", "scan_from"], kind="stable", ignore_index=True
    )
    logger.debug(
        "scan changes: %d pairs, %d measures, %d not comparable",
        len(table),
        len(measures),
        int((~changes["comparable"]).sum()),
    )
    return changes


def _change_columns(scans: pd.DataFrame, patient_col: str) -> list[str]:
    columns = [patient_col, "pair", "scan_from", "scan_to"]
    if "case_id" in scans.columns:
        columns += ["case_id_from", "case_id_to"]
    columns += ["date_from", "date_to", "interval_years"]
    if "contiguous" in scans.columns:
        columns += ["contiguous_from", "contiguous_to"]
    if "kernel" in scans.columns:
        columns += ["kernel_from", "kernel_to"]
    return columns + [
        "protocol",
        "measure",
        "value_from",
        "value_to",
        "change",
        "change_per_year",
        "comparable",
        "note",
    ]


def _protocol_text(
    mixed: pd.Series,
    both_gapped: pd.Series,
    kernel_differs: pd.Series,
    has_contiguity: bool,
    has_kernel: bool,
) -> np.ndarray:
    texts = []
    for is_mixed, is_both, differs in zip(
        mixed, both_gapped, kernel_differs, strict=True
    ):
        parts = []
        if is_mixed:
            parts.append("gapped vs volumetric")
        if is_both:
            parts.append("both gapped")
        if differs:
            parts.append("different kernel")
        if not parts:
            parts.append("same" if has_contiguity and has_kernel else "unknown")
        texts.append("; ".join(parts))
    return np.array(texts, dtype=object)


def first_change_per_patient(
    changes: pd.DataFrame,
    *,
    patient_col: str = "patient_id",
    comparable_only: bool = True,
) -> pd.DataFrame:
    """One row per patient: the change between the first two scans, wide.

    Parameters
    ----------
    changes : pandas.DataFrame
        The output of :func:`scan_changes` (with consecutive pairs).
    patient_col : str
        Name of the patient column.
    comparable_only : bool
        Blank changes that are flagged not comparable (kernel differs).

    Returns
    -------
    pandas.DataFrame
        Indexed by patient: ``interval_years``, ``protocol``, and per measure
        ``<measure>`` (value at the first scan), ``<measure>_change`` and
        ``<measure>_change_per_year``.
    """
    first = changes[(changes["pair"] == "consecutive") & (changes["scan_from"] == 1)]
    if first.empty:
        return pd.DataFrame(columns=["interval_years", "protocol"]).rename_axis(
            patient_col
        )
    change = first["change"].where(first["comparable"] | ~comparable_only)
    per_year = first["change_per_year"].where(first["comparable"] | ~comparable_only)
    first = first.assign(change=change, change_per_year=per_year)

    wide = first.pivot(
        index=patient_col,
        columns="measure",
        values=["value_from", "change", "change_per_year"],
    )
    measures = list(dict.fromkeys(first["measure"]))
    columns = {}
    for measure in measures:
        columns[measure] = wide[("value_from", measure)]
        columns[f"{measure}_change"] = wide[("change", measure)]
        columns[f"{measure}_change_per_year"] = wide[("change_per_year", measure)]
    pair_info = first.drop_duplicates(patient_col).set_index(patient_col)
    result = pd.DataFrame(columns, index=wide.index)
    result.insert(0, "protocol", pair_info["protocol"])
    result.insert(0, "interval_years", pair_info["interval_years"])
    return result


# ---------------------------------------------------------------------------
# FVC trajectories: linear mixed-effects model
# ---------------------------------------------------------------------------

#: Optimisers tried in turn until one converges cleanly (statsmodels' own
#: order, then derivative-free methods that rescue fits stalled on a ridge).
DEFAULT_OPTIMIZERS: tuple[str, ...] = ("bfgs", "lbfgs", "cg", "powell", "nm")

# A random-effect variance this small relative to the residual variance (after
# scaling by the size of its design column) is a fit on the boundary.
_BOUNDARY_RELATIVE_VARIANCE = 1e-6
# A correlation of the random intercept and slope this close to +/-1 makes
# their covariance singular: also a boundary fit.
_BOUNDARY_CORRELATION = 0.999


@dataclasses.dataclass
class TrajectoryFit:
    """A fitted linear mixed-effects model of a lung-function series.

    Attributes
    ----------
    estimates : pandas.DataFrame
        One row per parameter: ``term``, ``kind`` (``fixed`` or ``random``),
        ``estimate``, ``se``, ``lower95``, ``upper95``, ``z``, ``p``. Fixed
        terms: ``intercept`` (outcome at time 0 for a patient with the mean
        biomarker), ``time_years`` (change per year at the mean biomarker),
        ``<biomarker>_z`` (difference at time 0 per standard deviation of the
        biomarker) and ``<biomarker>_z:time_years`` (difference in the change
        per year per standard deviation). Random terms (estimates only):
        ``sd_intercept``, ``sd_time_years``, ``corr_intercept_time_years``,
        ``sd_residual``.
    outcome : str
        The modelled column (e.g. ``fvc_pct``).
    biomarker : str or None
        The baseline biomarker in the interaction, if any.
    biomarker_mean, biomarker_sd : float
        Mean and population standard deviation used to standardise it.
    optimizer : str
        The optimiser whose fit is reported.
    converged : bool
        False when no optimiser converged cleanly (a warning was issued).
    n_patients, n_visits : int
        Patients and visits in the fit.
    log_likelihood : float
        (Restricted) log-likelihood of the fit.
    data : pandas.DataFrame
        The model frame: ``patient``, ``time_years``, ``outcome``,
        ``biomarker_z`` (when a biomarker is used) and ``fitted`` (with the
        patient's own random effects).
    result : statsmodels MixedLMResults
        The underlying statsmodels result.
    """

    estimates: pd.DataFrame
    outcome: str
    biomarker: str | None
    biomarker_mean: float
    biomarker_sd: float
    optimizer: str
    converged: bool
    n_patients: int
    n_visits: int
    log_likelihood: float
    data: pd.DataFrame
    result: Any

    def population_trajectory(
        self, time_years: np.ndarray, biomarker_z: float = 0.0
    ) -> pd.DataFrame:
        """Mean trajectory of a patient with a given biomarker, with a 95% band.

        Parameters
        ----------
        time_years : array_like
            Times since the first visit.
        biomarker_z : float
            Standardised baseline biomarker (0 = cohort mean).

        Returns
        -------
        pandas.DataFrame
            ``time_years``, ``mean``, ``lower95``, ``upper95`` (the interval
            of the mean, from the fixed effects' covariance).
        """
        time_years = np.asarray(time_years, dtype=float)
        design = [np.ones_like(time_years), time_years]
        if self.biomarker is not None:
            design += [np.full_like(time_years, biomarker_z), biomarker_z * time_years]
        design = np.column_stack(design)
        fixed = self.estimates[self.estimates["kind"] == "fixed"]
        beta = fixed["estimate"].to_numpy()
        k_fe = len(beta)
        covariance = np.asarray(self.result.cov_params())[:k_fe, :k_fe]

        mean = design @ beta
        se = np.sqrt(np.einsum("ij,jk,ik->i", design, covariance, design))
        return pd.DataFrame(
            {
                "time_years": time_years,
                "mean": mean,
                "lower95": mean - Z_95 * se,
                "upper95": mean + Z_95 * se,
            }
        )


def _moment_start(
    y: np.ndarray, exog: np.ndarray, exog_re: np.ndarray, groups: np.ndarray
) -> Any | None:
    """Starting values from per-patient least squares (a method of moments).

    statsmodels starts from a random-effects covariance equal to the residual
    variance, far from FVC's real structure (intercepts vary ~20 times more
    than visits scatter, slopes much less); from there L-BFGS often stops
    early. Per-patient regressions of the pooled residuals give the scale of
    each random effect, less their sampling noise, which is close enough for
    every optimiser to converge in a few steps.
    """
    from statsmodels.regression.mixed_linear_model import MixedLMParams

    beta = np.linalg.lstsq(exog, y, rcond=None)[0]
    residual = y - exog @ beta
    k_re = exog_re.shape[1]
    coefficients, sampling = [], []
    residual_ss, residual_df = 0.0, 0
    boundaries = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1], True])
    for start, stop in zip(boundaries[:-1], boundaries[1:], strict=True):
        if stop - start <= k_re:
            continue
        design = exog_re[start:stop]
        gram = design.T @ design
        if np.linalg.cond(gram) > 1e10:
            continue
        coefficient = np.linalg.solve(gram, design.T @ residual[start:stop])
        coefficients.append(coefficient)
        sampling.append(np.linalg.inv(gram))
        residual_ss += float(np.sum((residual[start:stop] - design @ coefficient) ** 2))
        residual_df += stop - start - k_re
    if len(coefficients) < k_re + 2 or residual_df == 0:
        return None

    scale = residual_ss / residual_df
    covariance = np.atleast_2d(np.cov(np.array(coefficients).T))
    covariance -= scale * np.mean(sampling, axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    eigenvalues = np.clip(eigenvalues, 1e-4 * scale, None)
    covariance = (eigenvectors * eigenvalues) @ eigenvectors.T
    return MixedLMParams.from_components(fe_params=beta, cov_re=covariance / scale)


def _fit_candidates(
    model: Any,
    reml: bool,
    optimizers: Sequence[str],
    exog_re: np.ndarray,
    start: Any | None,
) -> tuple[Any, str, bool, list[str]]:
    """Fit with each optimiser in turn; return the first clean fit or the best.

    Each attempt starts where the previous one stopped (as statsmodels does
    when given several methods). A fit that stalls on the boundary of the
    parameter space (a singular random-effects covariance) defeats the
    gradient methods, whose step never meets their gradient tolerance there,
    so Powell's derivative-free search is tried next.
    """
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    remaining = list(optimizers)
    attempts_start = start
    tried: list[tuple[Any, str, list[str]]] = []
    failures: list[str] = []
    while remaining:
        method = remaining.pop(0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = model.fit(
                    reml=reml, method=[method], start_params=attempts_start
                )
            except (np.linalg.LinAlgError, ValueError, OverflowError) as error:
                failures.append(f"{method}: {error}")
                continue
        problems = []
        for caught_warning in caught:
            message = str(caught_warning.message)
            if (
                issubclass(caught_warning.category, ConvergenceWarning)
                or "singular" in message
            ):
                problems.append(message)
            else:
                warnings.warn_explicit(
                    caught_warning.message,
                    caught_warning.category,
                    caught_warning.filename,
                    caught_warning.lineno,
                )
        # statsmodels' boundary test is on an absolute scale, so it is judged
        # here relative to the residual variance; at a true boundary the
        # information matrix is expected to be singular in that direction.
        on_boundary = bool(_boundary_terms(result, exog_re, ["re"] * exog_re.shape[1]))
        hard = [
            p
            for p in problems
            if "boundary" not in p and not (on_boundary and "positive definite" in p)
        ]
        finite = np.all(np.isfinite(result.fe_params)) and np.all(
            np.isfinite(result.bse_fe)
        )
        if not finite:
            hard.append("standard errors are not finite")
        if result.converged and not hard:
            return result, method, True, []
        tried.append((result, method, hard or problems))
        if finite:
            attempts_start = result.params_object
        if on_boundary and "powell" in remaining:
            remaining.remove("powell")
            remaining.insert(0, "powell")

    usable = [t for t in tried if np.all(np.isfinite(t[0].bse_fe))]
    if not usable:
        detail = "; ".join(failures + [f"{m}: {', '.join(p)}" for _, m, p in tried])
        raise DataError(
            f"the mixed model could not be fitted by any optimiser ({detail})"
        )
    result, method, _ = max(usable, key=lambda t: t[0].llf)
    problems = [f"{m}: {'; '.join(dict.fromkeys(p))}" for _, m, p in tried] + failures
    return result, method, False, problems


def _boundary_terms(
    result: Any, exog_re: np.ndarray, names: Sequence[str]
) -> list[str]:
    """Random effects whose covariance sits on the edge of the parameter space.

    A variance that is negligible next to the residual variance (scaled by
    the size of its design column, so the test does not depend on units), or
    a correlation of +/-1 between two random effects.
    """
    cov_re = np.asarray(result.cov_re)
    column_size = np.mean(exog_re**2, axis=0)
    relative = np.diag(cov_re) * column_size / result.scale
    terms = [names[k] for k in np.flatnonzero(relative < _BOUNDARY_RELATIVE_VARIANCE)]
    if cov_re.shape[0] == 2 and not terms:
        correlation = cov_re[0, 1] / math.sqrt(cov_re[0, 0] * cov_re[1, 1])
        if abs(correlation) > _BOUNDARY_CORRELATION:
            terms.append(f"{names[0]} and {names[1]} (correlation {correlation:+.4f})")
    return terms


def fit_mixed_trajectory(
    data: pd.DataFrame,
    *,
    outcome: str,
    time: str,
    group: str,
    biomarker_z: str | None = None,
    biomarker_name: str | None = None,
    random_slope: bool = True,
    reml: bool = True,
    optimizers: Sequence[str] = DEFAULT_OPTIMIZERS,
) -> TrajectoryFit:
    """Fit ``outcome ~ time (* biomarker_z)`` with random intercept and slope.

    The model for visit ``j`` of patient ``i`` is::

        y_ij = b0 + b1 t_ij + b2 z_i + b3 z_i t_ij + u0_i + u1_i t_ij + e_ij

    with ``(u0_i, u1_i)`` normal with an unstructured 2 x 2 covariance and
    ``e_ij`` normal with constant variance. Visit times may differ between
    patients. Intervals are Wald intervals from the observed information.

    Optimisers are tried in the order of ``optimizers`` until one converges
    with a finite, positive-definite information matrix. When none does, the
    fit with the highest likelihood is returned and a
    :class:`MixedModelConvergenceWarning` says what happened; the same warning
    reports a random-effect variance estimated at zero (a boundary fit).

    Parameters
    ----------
    data : pandas.DataFrame
        Long table, one row per visit, numeric columns.
    outcome, time, group : str
        Columns of the response, the time (years or any unit) and the patient.
    biomarker_z : str, optional
        Column of a per-patient (time-constant) standardised covariate whose
        interaction with time is estimated.
    biomarker_name : str, optional
        Name used for the biomarker terms; defaults to ``biomarker_z``.
    random_slope : bool
        Random slope per patient in addition to the random intercept.
    reml : bool
        Restricted maximum likelihood (default) or maximum likelihood.
    optimizers : sequence of str
        scipy.optimize methods to try in turn.

    Returns
    -------
    TrajectoryFit
        Estimates with 95% intervals and the fit's diagnostics.

    Raises
    ------
    DataError
        If there are too few patients or visits, or no optimiser yields a
        usable fit.
    ParameterError
        If ``optimizers`` is empty or names an unknown method.
    """
    from statsmodels.regression.mixed_linear_model import MixedLM

    unknown = [m for m in optimizers if m not in DEFAULT_OPTIMIZERS]
    if not optimizers or unknown:
        raise ParameterError(
            f"optimizers must be among {', '.join(DEFAULT_OPTIMIZERS)}, but found "
            f"{', '.join(map(str, optimizers)) or 'none'}"
        )
    columns = [group, time, outcome] + ([biomarker_z] if biomarker_z else [])
    frame = data[columns].dropna().sort_values([group, time], kind="stable")
    n_patients = frame[group].nunique()
    repeated = int((frame.groupby(group).size() >= 2).sum())
    if n_patients < 3 or repeated < 2:
        raise DataError(
            f"the mixed model of '{outcome}' needs at least 3 patients and 2 with "
            f"repeated visits, but found {n_patients} patients, {repeated} with "
            "repeated visits"
        )

    t = frame[time].to_numpy(dtype=float)
    y = frame[outcome].to_numpy(dtype=float)
    name = biomarker_name or biomarker_z
    exog_columns = [np.ones_like(t), t]
    terms = ["intercept", "time_years"]
    if biomarker_z is not None:
        z = frame[biomarker_z].to_numpy(dtype=float)
        exog_columns += [z, z * t]
        terms += [f"{name}_z", f"{name}_z:time_years"]
    exog = np.column_stack(exog_columns)
    exog_re = np.column_stack(
        [np.ones_like(t), t] if random_slope else [np.ones_like(t)]
    )
    re_names = ["intercept", "time_years"][: exog_re.shape[1]]

    groups = frame[group].to_numpy()
    model = MixedLM(y, exog, groups=groups, exog_re=exog_re)
    start = _moment_start(y, exog, exog_re, groups)
    result, method, converged, problems = _fit_candidates(
        model, reml, optimizers, exog_re, start
    )

    if not converged:
        warnings.warn(
            f"mixed model of '{outcome}' did not converge cleanly with any of "
            f"{', '.join(optimizers)} ({' | '.join(problems)}); reporting the "
            f"{method} fit with the highest likelihood. Try other optimizers, "
            "random_slope=False, or check for patients with implausible jumps",
            MixedModelConvergenceWarning,
            stacklevel=2,
        )
    on_boundary = _boundary_terms(result, exog_re, re_names)
    if on_boundary:
        warnings.warn(
            f"mixed model of '{outcome}': the random-effects covariance is on the "
            f"boundary of the parameter space for {', '.join(on_boundary)} (a "
            "variance estimated at zero or a correlation of +/-1); the data do not "
            "support that random effect, fixed-effect intervals may be too narrow, "
            "consider random_slope=False",
            MixedModelConvergenceWarning,
            stacklevel=2,
        )

    estimates = _estimate_table(result, terms, re_names)
    fitted = frame.rename(
        columns={group: "patient", time: "time_years", outcome: "outcome"}
    )
    if biomarker_z is not None:
        fitted = fitted.rename(columns={biomarker_z: "biomarker_z"})
    fitted = fitted.assign(fitted=np.asarray(result.fittedvalues)).reset_index(
        drop=True
    )
    logger.debug(
        "mixed model of %s: %d patients, %d visits, optimiser %s, converged %s",
        outcome,
        n_patients,
        len(frame),
        method,
        converged,
    )
    return TrajectoryFit(
        estimates=estimates,
        outcome=outcome,
        biomarker=name if biomarker_z is not None else None,
        biomarker_mean=math.nan,
        biomarker_sd=math.nan,
        optimizer=method,
        converged=converged,
        n_patients=n_patients,
        n_visits=len(frame),
        log_likelihood=float(result.llf),
        data=fitted,
        result=result,
    )


def _estimate_table(
    result: Any, terms: Sequence[str], re_names: Sequence[str]
) -> pd.DataFrame:
    from scipy import stats

    estimate = np.asarray(result.fe_params, dtype=float)
    se = np.asarray(result.bse_fe, dtype=float)
    z = estimate / se
    fixed = pd.DataFrame(
        {
            "term": list(terms),
            "kind": "fixed",
            "estimate": estimate,
            "se": se,
            "lower95": estimate - Z_95 * se,
            "upper95": estimate + Z_95 * se,
            "z": z,
            "p": 2.0 * stats.norm.sf(np.abs(z)),
        }
    )

    cov_re = np.asarray(result.cov_re, dtype=float)
    random_terms = {
        f"sd_{n}": math.sqrt(max(cov_re[k, k], 0.0)) for k, n in enumerate(re_names)
    }
    if len(re_names) == 2:
        denominator = math.sqrt(max(cov_re[0, 0] * cov_re[1, 1], 0.0))
        random_terms["corr_intercept_time_years"] = (
            cov_re[0, 1] / denominator if denominator > 0 else math.nan
        )
    random_terms["sd_residual"] = math.sqrt(result.scale)
    random = pd.DataFrame(
        {
            "term": list(random_terms),
            "kind": "random",
            "estimate": list(random_terms.values()),
        }
    )
    return pd.concat([fixed, random], ignore_index=True)


def baseline_scans(
    features: pd.DataFrame,
    *,
    patient_col: str = "patient_id",
    date_col: str = "scan_date",
    source: str = "features table",
) -> pd.DataFrame:
    """Return each patient's first scan (by date) from a repeat-scan table.

    Parameters
    ----------
    features : pandas.DataFrame
        One row per scan.
    patient_col, date_col : str
        Names of the patient and scan date columns.
    source : str
        How the table is named in error messages.

    Returns
    -------
    pandas.DataFrame
        One row per patient.
    """
    scans = validate_scan_features(
        features, patient_col=patient_col, date_col=date_col, source=source
    )
    return scans.drop_duplicates(patient_col, keep="first").reset_index(drop=True)


def fit_fvc_trajectory(
    lung_function: pd.DataFrame,
    baseline: pd.DataFrame | None = None,
    *,
    biomarker: str | None = None,
    outcome: str = "fvc_pct",
    patient_col: str = "patient_id",
    date_col: str = "date",
    random_slope: bool = True,
    reml: bool = True,
    optimizers: Sequence[str] = DEFAULT_OPTIMIZERS,
    source: str = "lung-function table",
    baseline_source: str = "baseline table",
) -> TrajectoryFit:
    """Model FVC over time and ask whether a baseline biomarker predicts its slope.

    Time is years since each patient's first visit with a value of
    ``outcome``; visit times may be irregular and differ between patients.
    The biomarker is standardised over the patients in the fit (mean 0,
    population standard deviation 1), so ``<biomarker>_z:time_years`` is the
    difference in the annual change of ``outcome`` per standard deviation of
    the baseline biomarker. See :func:`fit_mixed_trajectory` for the model.

    Parameters
    ----------
    lung_function : pandas.DataFrame
        One row per visit (see :func:`validate_lung_function`).
    baseline : pandas.DataFrame, optional
        One row per patient with ``patient_col`` and the ``biomarker`` column,
        e.g. :func:`baseline_scans` of a features table. Patients without a
        biomarker value are left out (logged).
    biomarker : str, optional
        The baseline biomarker; without it the model has time alone.
    outcome : str
        Lung-function column to model: ``fvc_pct`` (default), ``fvc_ml`` or
        ``dlco_pct``.
    patient_col, date_col : str
        Patient and visit date columns of ``lung_function``.
    random_slope, reml, optimizers
        See :func:`fit_mixed_trajectory`.
    source, baseline_source : str
        How the tables are named in error messages.

    Returns
    -------
    TrajectoryFit
        Estimates with 95% intervals and the fit's diagnostics.

    Raises
    ------
    DataError
        If a table or column is missing or malformed, or too few patients
        remain.
    """
    visits = validate_lung_function(
        lung_function, patient_col=patient_col, date_col=date_col, source=source
    )
    _require_columns(visits, [outcome], source)
    visits = visits[[patient_col, date_col, outcome]].dropna()
    first_date = visits.groupby(patient_col)[date_col].transform("min")
    visits["_time_years"] = (visits[date_col] - first_date).dt.days / DAYS_PER_YEAR

    mean = sd = math.nan
    z_column = None
    if biomarker is not None:
        if baseline is None:
            raise ParameterError(f"biomarker '{biomarker}' needs a baseline table")
        _require_columns(baseline, [patient_col, biomarker], baseline_source)
        if baseline[patient_col].duplicated().any():
            repeated = baseline[patient_col].duplicated().reset_index(drop=True)
            raise DataError(
                f"{baseline_source}: needs one row per patient, but "
                f"'{patient_col}' repeats (first at data row "
                f"{_data_row(baseline.reset_index(drop=True), repeated)})"
            )
        values = _parse_numeric(
            baseline.reset_index(drop=True), biomarker, baseline_source
        )
        per_patient = pd.Series(
            values.to_numpy(), index=baseline[patient_col].to_numpy()
        )
        visits["_biomarker"] = visits[patient_col].map(per_patient)
        missing = visits.loc[visits["_biomarker"].isna(), patient_col].nunique()
        if missing:
            logger.info(
                "%d patients without a baseline %s are left out", missing, biomarker
            )
        visits = visits.dropna(subset=["_biomarker"])
        patient_values = visits.drop_duplicates(patient_col)["_biomarker"]
        mean = float(patient_values.mean())
        sd = float(patient_values.std(ddof=0))
        if not np.isfinite(sd) or sd == 0:
            raise DataError(
                f"{baseline_source}: column '{biomarker}' does not vary between the "
                "patients with lung function; it cannot predict the slope"
            )
        visits["_biomarker_z"] = (visits["_biomarker"] - mean) / sd
        z_column = "_biomarker_z"

    fit = fit_mixed_trajectory(
        visits,
        outcome=outcome,
        time="_time_years",
        group=patient_col,
        biomarker_z=z_column,
        biomarker_name=biomarker,
        random_slope=random_slope,
        reml=reml,
        optimizers=optimizers,
    )
    fit.biomarker_mean = mean
    fit.biomarker_sd = sd
    return fit


# ---------------------------------------------------------------------------
# Landmark analysis: does change between the first two scans add to baseline?
# ---------------------------------------------------------------------------


def landmark_dataset(
    features: pd.DataFrame,
    outcomes: pd.DataFrame,
    *,
    time_col: str,
    event_col: str,
    measures: Sequence[str] | None = None,
    patient_col: str = "patient_id",
    date_col: str = "scan_date",
    landmark_years: float | None = None,
    comparable_only: bool = True,
    source: str = "features table",
    outcome_source: str = "outcome table",
) -> pd.DataFrame:
    """Patients at risk at the landmark, with baseline values and first change.

    The landmark is the second scan: by default each patient's own second
    scan date; with ``landmark_years`` a fixed time after the first scan, and
    only patients whose second scan came by then are kept. Outcome times are
    taken as years since the first scan. A patient enters the data set only if
    event-free and under follow-up just after the landmark (outcome time
    strictly greater than the landmark), and time is reset to start there, so
    the change used as a predictor was known at time zero (no immortal-time
    bias).

    Parameters
    ----------
    features : pandas.DataFrame
        One row per scan (see :func:`validate_scan_features`).
    outcomes : pandas.DataFrame
        One row per patient with ``time_col`` (years since the first scan) and
        ``event_col`` (1 event, 0 censored); other columns (e.g. age, FVC at
        baseline) are carried along as candidate baseline covariates.
    time_col, event_col : str
        Outcome columns.
    measures : sequence of str, optional
        CT measures whose baseline value and change are added; by default
        every biomarker column.
    patient_col, date_col : str
        Patient column (both tables) and scan date column.
    landmark_years : float, optional
        Fixed landmark; default: each patient's second scan.
    comparable_only : bool
        Blank changes that are flagged not comparable (kernel differs); tree
        measures of gapped scans are always empty.
    source, outcome_source : str
        How the tables are named in error messages.

    Returns
    -------
    pandas.DataFrame
        One row per patient at risk: the patient, ``landmark_years``,
        ``time_from_landmark_years``, ``event``, ``interval_years`` between
        the first two scans, ``protocol``, per measure ``<measure>``
        (first scan), ``<measure>_change`` and ``<measure>_change_per_year``,
        then the other outcome columns.

    Raises
    ------
    DataError
        If a table is malformed.
    ParameterError
        If ``landmark_years`` is not positive.
    """
    if landmark_years is not None and not landmark_years > 0:
        raise ParameterError(
            f"landmark_years must be positive, but found {landmark_years}"
        )
    _require_columns(outcomes, [patient_col, time_col, event_col], outcome_source)
    outcome = outcomes.reset_index(drop=True).copy()
    outcome[time_col] = _parse_numeric(outcome, time_col, outcome_source)
    outcome[event_col] = _parse_numeric(outcome, event_col, outcome_source)
    bad_event = ~outcome[event_col].isin([0, 1])
    if bad_event.any():
        raise DataError(
            f"{outcome_source}: column '{event_col}' must be 0 or 1 (first other value "
            f"at data row {_data_row(outcome, bad_event)})"
        )
    bad_time = ~(outcome[time_col] >= 0)
    if bad_time.any():
        raise DataError(
            f"{outcome_source}: column '{time_col}' must be a time >= 0 (first other "
            f"value at data row {_data_row(outcome, bad_time)})"
        )
    if outcome[patient_col].duplicated().any():
        repeated = outcome[patient_col].duplicated()
        raise DataError(
            f"{outcome_source}: needs one row per patient, but '{patient_col}' "
            f"repeats (first at data row {_data_row(outcome, repeated)})"
        )

    changes = scan_changes(
        features,
        measures,
        patient_col=patient_col,
        date_col=date_col,
        pairs=("consecutive",),
        source=source,
    )
    first = first_change_per_patient(
        changes, patient_col=patient_col, comparable_only=comparable_only
    )
    if landmark_years is None:
        first.insert(0, "landmark_years", first["interval_years"])
    else:
        first = first[first["interval_years"] <= landmark_years]
        first.insert(0, "landmark_years", float(landmark_years))

    clashing = [c for c in outcome.columns if c in first.columns and c != patient_col]
    if clashing:
        logger.info(
            "outcome columns also measured on CT are taken from the scans: %s", clashing
        )
    joined = first.reset_index().merge(
        outcome.drop(columns=clashing), on=patient_col, how="inner"
    )
    at_risk = joined[time_col] > joined["landmark_years"]
    logger.info(
        "landmark: %d patients with two scans and an outcome, %d at risk after the "
        "landmark",
        len(joined),
        int(at_risk.sum()),
    )
    joined = joined[at_risk].reset_index(drop=True)
    time_values = joined.pop(time_col)
    event_values = joined.pop(event_col)
    joined.insert(2, "time_from_landmark_years", time_values - joined["landmark_years"])
    joined.insert(3, "event", event_values.astype(int))
    return joined


@dataclasses.dataclass
class LandmarkComparison:
    """Baseline-only versus baseline-plus-change Cox models at the landmark.

    Attributes
    ----------
    comparison : pandas.DataFrame
        One row per model (``baseline``, ``baseline + change``):
        ``covariates``, ``n_patients``, ``n_events``, ``harrell_c`` (in
        sample), ``harrell_c_cv`` (mean over cross-validation folds),
        ``log_likelihood``, and for the larger model ``delta_c``,
        ``delta_c_cv``, ``lr_statistic``, ``lr_df`` and ``lr_p`` (likelihood
        ratio test of the nested models).
    cox_summary : pandas.DataFrame
        Coefficients of the larger model: ``covariate, coef, hr, hr_lower95,
        hr_upper95, se, z, p``.
    baseline_summary : pandas.DataFrame
        Coefficients of the baseline model, same columns.
    """

    comparison: pd.DataFrame
    cox_summary: pd.DataFrame
    baseline_summary: pd.DataFrame


def _cox_summary(fitter: Any) -> pd.DataFrame:
    summary = fitter.summary
    return pd.DataFrame(
        {
            "covariate": summary.index.to_numpy(),
            "coef": summary["coef"].to_numpy(),
            "hr": summary["exp(coef)"].to_numpy(),
            "hr_lower95": summary["exp(coef) lower 95%"].to_numpy(),
            "hr_upper95": summary["exp(coef) upper 95%"].to_numpy(),
            "se": summary["se(coef)"].to_numpy(),
            "z": summary["z"].to_numpy(),
            "p": summary["p"].to_numpy(),
        }
    )


def compare_landmark_models(
    dataset: pd.DataFrame,
    *,
    baseline: Sequence[str],
    change: Sequence[str],
    time_col: str = "time_from_landmark_years",
    event_col: str = "event",
    cv_folds: int = 5,
    penalizer: float = 0.0,
    seed: int = 0,
) -> LandmarkComparison:
    """Does adding the change between scans improve a baseline Cox model?

    Both models are fitted on the same patients (complete cases for all
    covariates), so their likelihoods are comparable: the likelihood-ratio
    statistic ``2 (l_full - l_baseline)`` is referred to chi-squared with as
    many degrees of freedom as change covariates. Harrell's C is reported in
    sample and as the mean over ``cv_folds`` cross-validation folds (the
    in-sample C of the larger model can only be optimistic).

    Parameters
    ----------
    dataset : pandas.DataFrame
        The output of :func:`landmark_dataset` (or any table with a time, an
        event and the covariates).
    baseline, change : sequence of str
        Covariates of the baseline model and those added to it.
    time_col, event_col : str
        Time since the landmark and the event indicator.
    cv_folds : int
        Folds of the cross-validated C (0 to skip).
    penalizer : float
        Ridge penalty of lifelines' CoxPHFitter (0 = none).
    seed : int
        Seed of the fold assignment.

    Returns
    -------
    LandmarkComparison
        The comparison table and the coefficients of both models.

    Raises
    ------
    DataError
        If a covariate is missing or there are too few events to fit.
    ParameterError
        If ``baseline`` or ``change`` is empty or they overlap.
    """
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError
    from lifelines.utils import k_fold_cross_validation
    from scipy import stats

    baseline, change = list(baseline), list(change)
    if not baseline or not change:
        raise ParameterError("both baseline and change covariates are needed")
    overlap = sorted(set(baseline) & set(change))
    if overlap:
        raise ParameterError(
            f"covariates in both baseline and change: {', '.join(overlap)}"
        )
    _require_columns(
        dataset, [time_col, event_col, *baseline, *change], "landmark data"
    )
    columns = [time_col, event_col, *baseline, *change]
    data = dataset[columns].apply(pd.to_numeric, errors="coerce").dropna()
    n_events = int(data[event_col].sum())
    if n_events < 2 * (len(baseline) + len(change)):
        raise DataError(
            f"landmark data: {n_events} events in {len(data)} complete patients "
            f"are too few for {len(baseline) + len(change)} covariates (need at "
            "least 2 per covariate)"
        )
    dropped = len(dataset) - len(data)
    if dropped:
        logger.info(
            "landmark models: %d patients with missing covariates left out", dropped
        )

    fits = {}
    rows = []
    for label, covariates in (
        ("baseline", baseline),
        ("baseline + change", baseline + change),
    ):
        frame = data[[time_col, event_col, *covariates]]
        fitter = CoxPHFitter(penalizer=penalizer)
        try:
            fitter.fit(frame, duration_col=time_col, event_col=event_col)
        except ConvergenceError as error:
            raise DataError(
                f"landmark data: the {label} Cox model did not converge "
                f"({_one_line(str(error))[:200]})"
            ) from error
        c_cv = math.nan
        if cv_folds >= 2:
            scores = k_fold_cross_validation(
                CoxPHFitter(penalizer=penalizer),
                frame,
                duration_col=time_col,
                event_col=event_col,
                k=cv_folds,
                scoring_method="concordance_index",
                seed=seed,
            )
            c_cv = float(np.mean(scores))
        fits[label] = fitter
        rows.append(
            {
                "model": label,
                "covariates": ", ".join(covariates),
                "n_patients": len(frame),
                "n_events": n_events,
                "harrell_c": float(fitter.concordance_index_),
                "harrell_c_cv": c_cv,
                "log_likelihood": float(fitter.log_likelihood_),
            }
        )

    lr_statistic = 2.0 * (rows[1]["log_likelihood"] - rows[0]["log_likelihood"])
    rows[1].update(
        delta_c=rows[1]["harrell_c"] - rows[0]["harrell_c"],
        delta_c_cv=rows[1]["harrell_c_cv"] - rows[0]["harrell_c_cv"],
        lr_statistic=lr_statistic,
        lr_df=len(change),
        lr_p=float(stats.chi2.sf(max(lr_statistic, 0.0), len(change))),
    )
    comparison = pd.DataFrame(rows)
    return LandmarkComparison(
        comparison=comparison,
        cox_summary=_cox_summary(fits["baseline + change"]),
        baseline_summary=_cox_summary(fits["baseline"]),
    )


def _one_line(message: str) -> str:
    return " ".join(message.split())
