"""Survival tables: features joined to clinical outcomes, one row per patient.

A features table has one row per scan; a clinical table has one row per patient
with the outcome (a follow-up time and an event indicator) and the lung-function
values measured at baseline. :func:`build_survival_table` picks each patient's
baseline scan, joins the two on the patient identifier and validates the outcome
so that every model downstream sees the same, checked rows.

Messages never quote a patient identifier: problems are reported by row number
(1-based, as a spreadsheet shows them) and by count.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from radscl.errors import DataError
from radscl.errors import ParameterError

logger = logging.getLogger(__name__)

#: Columns tried, in order, to put a patient's scans in time order.
SCAN_ORDER_COLUMNS = ("scan_date", "years_from_baseline", "scan_index")


@dataclasses.dataclass
class SurvivalTable:
    """One row per patient with a validated outcome.

    Attributes
    ----------
    table : pandas.DataFrame
        Patients (rows) with covariates and the outcome columns.
    time : str
        Name of the follow-up time column (time >= 0).
    event : str
        Name of the event column (0 censored, 1 event; for competing risks the
        cause codes 1, 2, ...).
    n_dropped : int
        Clinical rows without a baseline scan, left out of ``table``.
    """

    table: pd.DataFrame
    time: str
    event: str
    n_dropped: int = 0

    @property
    def y(self) -> np.ndarray:
        """The structured target (``event``, ``time``) scikit-survival expects."""
        return survival_target(self.table[self.time], self.table[self.event] == 1)

    def covariates(self, names: Sequence[str]) -> pd.DataFrame:
        """Return the named covariates as a float table (checked, see
        :func:`covariate_frame`)."""
        return covariate_frame(self.table, names)

    def missingness(self, names: Sequence[str]) -> pd.DataFrame:
        """Missing values of the named columns (see :func:`missingness_report`)."""
        return missingness_report(self.table, names)


def survival_target(time: Sequence[float], event: Sequence[bool]) -> np.ndarray:
    """Build a scikit-survival structured target from times and event flags.

    Parameters
    ----------
    time : array-like of float
        Follow-up time, finite and >= 0.
    event : array-like of bool or {0, 1}
        True (1) where the event was observed, False (0) where censored.

    Returns
    -------
    numpy.ndarray
        Structured array with boolean field ``event`` and float field ``time``.

    Raises
    ------
    DataError
        If a time is missing, negative or not finite, or an event flag is not
        0/1.
    """
    time_values = np.asarray(time, dtype=float)
    event_values = np.asarray(event)
    _check_time(time_values, "time")
    _check_binary_event(event_values, "event")

    from sksurv.util import Surv

    return Surv.from_arrays(event=event_values.astype(bool), time=time_values)


def validate_outcome(
    table: pd.DataFrame,
    time: str,
    event: str,
    *,
    event_codes: Sequence[int] = (0, 1),
    source: str = "table",
) -> None:
    """Check the outcome columns of a table.

    Parameters
    ----------
    table : pandas.DataFrame
        The table to check.
    time, event : str
        Names of the follow-up time and event columns.
    event_codes : sequence of int
        Allowed event codes: (0, 1) for one event type, (0, 1, 2) for a cause
        of interest and a competing event.
    source : str
        How to name the table in messages (usually its file name).

    Raises
    ------
    DataError
        If a column is absent, a time is missing, negative or not numeric, or
        an event value is not one of ``event_codes``.
    """
    require_columns(table, [time, event], source=source)

    time_values = pd.to_numeric(table[time], errors="coerce").to_numpy(dtype=float)
    not_numeric = np.isnan(time_values) & table[time].notna().to_numpy()
    if not_numeric.any():
        raise DataError(
            f"{source}: time column {time!r} must be numeric, but "
            f"{int(not_numeric.sum())} value(s) are not ({_rows(not_numeric)})"
        )
    _check_time(time_values, time, source)

    raw_event = table[event]
    if raw_event.dtype == bool:
        raw_event = raw_event.astype(int)
    event_values = pd.to_numeric(raw_event, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isin(event_values, np.asarray(event_codes, dtype=float))
    if bad.any():
        found = sorted({str(v) for v in table[event][bad].head(5)})
        raise DataError(
            f"{source}: event column {event!r} must hold "
            f"{'/'.join(str(c) for c in event_codes)}, but found {', '.join(found)} "
            f"in {int(bad.sum())} row(s) ({_rows(bad)})"
        )
    if not (event_values >= 1).any():
        raise DataError(
            f"{source}: event column {event!r} has no events; nothing to model"
        )


def require_columns(
    table: pd.DataFrame, columns: Sequence[str], *, source: str = "table"
) -> None:
    """Raise :class:`DataError` naming every column of ``columns`` absent from
    ``table``."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataError(
            f"{source}: missing column(s) {', '.join(repr(c) for c in missing)}; "
            f"found {len(table.columns)} columns"
        )


def covariate_frame(
    table: pd.DataFrame, names: Sequence[str], *, source: str = "table"
) -> pd.DataFrame:
    """Return the named covariate columns as floats, checking they are usable.

    Parameters
    ----------
    table : pandas.DataFrame
        The survival table.
    names : sequence of str
        Covariate columns; booleans become 0/1.
    source : str
        How to name the table in messages.

    Returns
    -------
    pandas.DataFrame
        The covariates as float64, missing values kept as NaN.

    Raises
    ------
    DataError
        If a column is absent, not numeric, or has no values at all.
    """
    if len(names) == 0:
        raise ParameterError("at least one covariate is needed")
    duplicated = sorted({n for n in names if list(names).count(n) > 1})
    if duplicated:
        raise ParameterError(f"covariate(s) named twice: {', '.join(duplicated)}")
    require_columns(table, names, source=source)

    columns = {}
    for name in names:
        values = table[name]
        if values.dtype == bool:
            values = values.astype(float)
        if not pd.api.types.is_numeric_dtype(values):
            examples = ", ".join(
                repr(v) for v in sorted(values.dropna().astype(str).unique())[:3]
            )
            raise DataError(
                f"{source}: covariate {name!r} must be numeric, but found values "
                f"such as {examples}; encode it as numbers (e.g. 0/1)"
            )
        values = values.astype(float)
        if values.isna().all():
            raise DataError(f"{source}: covariate {name!r} has no values")
        if not np.isfinite(values.dropna()).all():
            raise DataError(f"{source}: covariate {name!r} has infinite values")
        columns[name] = values
    return pd.DataFrame(columns, index=table.index)


def missingness_report(table: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """Count the missing values of each named column.

    Parameters
    ----------
    table : pandas.DataFrame
        The survival table.
    names : sequence of str
        Columns to report.

    Returns
    -------
    pandas.DataFrame
        ``column, n, n_missing, missing_pct``, one row per column, in the order
        given.
    """
    require_columns(table, names)
    n = len(table)
    n_missing = [int(table[name].isna().sum()) for name in names]
    return pd.DataFrame(
        {
            "column": list(names),
            "n": n,
            "n_missing": n_missing,
            "missing_pct": [100.0 * m / n if n else np.nan for m in n_missing],
        }
    )


def select_baseline_scans(
    features: pd.DataFrame,
    *,
    patient_id: str = "patient_id",
    order_by: str | None = None,
    prefer_contiguous: bool = False,
) -> pd.DataFrame:
    """Keep each patient's baseline (earliest) scan.

    Parameters
    ----------
    features : pandas.DataFrame
        One row per scan with a patient identifier column.
    patient_id : str
        The patient identifier column.
    order_by : str, optional
        Column that puts a patient's scans in time order; by default the first
        present of ``scan_date``, ``years_from_baseline``, ``scan_index``.
    prefer_contiguous : bool
        Among scans on the baseline date, take a contiguous (volumetric) one
        over gapped HRCT when a ``contiguous`` column exists.

    Returns
    -------
    pandas.DataFrame
        One row per patient.

    Raises
    ------
    DataError
        If the patient column or an ordering column is absent while a patient
        has more than one scan, or an ordering value is missing.
    """
    require_columns(features, [patient_id], source="features")
    if features[patient_id].isna().any():
        rows = features[patient_id].isna().to_numpy()
        raise DataError(
            f"features: {patient_id!r} is empty in {int(rows.sum())} row(s) "
            f"({_rows(rows)})"
        )

    if not features[patient_id].duplicated().any():
        return features.copy()

    if order_by is None:
        order_by = next((c for c in SCAN_ORDER_COLUMNS if c in features.columns), None)
        if order_by is None:
            raise DataError(
                "features: patients have several scans but there is no column to order "
                f"them by (one of {', '.join(SCAN_ORDER_COLUMNS)}); pass order_by"
            )
    require_columns(features, [order_by], source="features")
    order_values = features[order_by]
    if order_by == "scan_date":
        order_values = pd.to_datetime(order_values, errors="coerce")
    if order_values.isna().any():
        rows = order_values.isna().to_numpy()
        raise DataError(
            f"features: {order_by!r} is missing or unreadable in "
            f"{int(rows.sum())} row(s) "
            f"({_rows(rows)}); cannot tell which scan is the baseline"
        )

    keys = pd.DataFrame({"order": order_values.to_numpy()}, index=features.index)
    sort_columns = ["order"]
    if prefer_contiguous and "contiguous" in features.columns:
        keys["gapped"] = ~features["contiguous"].astype(bool)
        sort_columns.append("gapped")
    keys["patient"] = features[patient_id].to_numpy()
    first = (
        keys.sort_values(sort_columns, kind="mergesort")
        .groupby("patient", sort=False)
        .head(1)
    )
    logger.debug("baseline scans: %d of %d scans", len(first), len(features))
    return features.loc[features.index.isin(first.index)].copy()


def build_survival_table(
    features: pd.DataFrame | None,
    clinical: pd.DataFrame,
    *,
    time: str,
    event: str,
    patient_id: str = "patient_id",
    order_by: str | None = None,
    event_codes: Sequence[int] = (0, 1),
    source: str = "clinical table",
) -> SurvivalTable:
    """Join baseline scan features to the clinical table and validate the outcome.

    Parameters
    ----------
    features : pandas.DataFrame or None
        One row per scan (``features.csv``); ``None`` when ``clinical`` already
        holds everything (one row per patient).
    clinical : pandas.DataFrame
        One row per patient: identifier, outcome and clinical covariates.
    time, event : str
        Outcome columns of ``clinical``.
    patient_id : str
        Identifier column present in both tables.
    order_by : str, optional
        Column ordering a patient's scans (see :func:`select_baseline_scans`).
    event_codes : sequence of int
        Allowed event codes, (0, 1) or with competing causes (0, 1, 2).
    source : str
        How to name the clinical table in messages.

    Returns
    -------
    SurvivalTable
        Patients with a baseline scan and a valid outcome.

    Raises
    ------
    DataError
        On duplicated patients in the clinical table, absent columns, an
        invalid outcome, or no patient in common between the tables.
    """
    validate_outcome(clinical, time, event, event_codes=event_codes, source=source)
    if patient_id in clinical.columns:
        duplicated = clinical[patient_id].duplicated(keep=False).to_numpy()
        if duplicated.any():
            n_duplicated = int(clinical[patient_id][duplicated].nunique())
            raise DataError(
                f"{source}: {n_duplicated} patient(s) "
                f"appear more than once in {patient_id!r} ({_rows(duplicated)}); "
                "the clinical table needs one row per patient"
            )

    if features is None:
        return SurvivalTable(clinical.reset_index(drop=True), time, event)

    require_columns(clinical, [patient_id], source=source)
    baseline = select_baseline_scans(features, patient_id=patient_id, order_by=order_by)
    overlapping = [
        c for c in baseline.columns if c in clinical.columns and c != patient_id
    ]
    joined = clinical.merge(
        baseline.drop(columns=overlapping),
        on=patient_id,
        how="inner",
        validate="one_to_one",
    )
    if joined.empty:
        raise DataError(
            f"{source}: no patient in {patient_id!r} matches a patient in the features"
        )

    n_dropped = len(clinical) - len(joined)
    if n_dropped:
        logger.warning(
            "%d of %d patients have no scan and are left out", n_dropped, len(clinical)
        )
    if overlapping:
        logger.debug("columns kept from the clinical table: %s", ", ".join(overlapping))
    return SurvivalTable(joined.reset_index(drop=True), time, event, n_dropped)


def _check_time(values: np.ndarray, name: str, source: str = "table") -> None:
    if np.isnan(values).any():
        rows = np.isnan(values)
        raise DataError(
            f"{source}: time column {name!r} has {int(rows.sum())} missing value(s) "
            f"({_rows(rows)}); remove those patients or fill in their follow-up"
        )
    if not np.isfinite(values).all():
        raise DataError(f"{source}: time column {name!r} has infinite values")
    if (values < 0).any():
        rows = values < 0
        raise DataError(
            f"{source}: time column {name!r} must be >= 0, but {int(rows.sum())} "
            f"value(s) are negative ({_rows(rows)})"
        )


def _check_binary_event(values: np.ndarray, name: str) -> None:
    if values.dtype == bool:
        return
    numeric = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)
    bad = ~np.isin(numeric, (0.0, 1.0))
    if bad.any():
        raise DataError(
            f"event column {name!r} must hold 0/1, but found "
            f"{values[bad][0]!r} in {int(bad.sum())} row(s) ({_rows(bad)})"
        )


def _rows(mask: np.ndarray, limit: int = 5) -> str:
    """Describe flagged rows by 1-based row number, never by identifier."""
    rows = np.flatnonzero(mask) + 1
    shown = ", ".join(str(r) for r in rows[:limit])
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more}"
