"""The cohort report: one self-contained HTML file from extraction to prognosis.

:func:`build_cohort_report` takes what a study has after ``radscl extract``
(one row of features per scan), its clinical table (one row per patient with
lung function and outcome) and, optionally, the lung-function series, and
writes ``report.html`` with every picture embedded:

1. the cohort by centre, scanner and protocol;
2. QC thumbnails, failed and flagged cases first;
3. biomarker distributions by batch before and after ComBat;
4. Kaplan-Meier curves, the forest plot, the model-comparison table with its
   intervals and the time-dependent AUC, for mortality and for progression;
5. change between repeat scans and FVC trajectories;
6. a methods section stating every threshold, definition and version used.

The same function serves ``radscl demo`` (synthetic cohort) and
``radscl report`` (a study's own outputs). Sections whose inputs are absent
(no lung-function series, no repeat scans, too few events) say why they are
empty instead of failing the report.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import io
import json
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from radscl import __version__
from radscl.errors import DataError
from radscl.report.html import HtmlReport
from radscl.report.plots import figure_png

logger = logging.getLogger(__name__)

#: CT biomarkers compared with lung function, in report order (when present).
DEFAULT_BIOMARKERS = (
    "fibrosis_extent_pct",
    "airway_lung_ratio_pct",
    "vessel_volume_ml",
)

#: Further imaging columns shown in the distributions and harmonised.
DESCRIPTIVE_FEATURES = (
    "lung_volume_ml",
    "airway_volume_ml",
    "vessel_volume_csa_lt5_ml",
    "haa_pct",
    "laa950_pct",
    "mld_hu",
)

#: Lung-function baseline of the comparison.
DEFAULT_BASELINE = ("fvc_pct", "dlco_pct")

#: Scan metadata forming the harmonisation batch.
DEFAULT_BATCH_COLUMNS = ("centre", "manufacturer", "kernel", "contiguous")

#: Smallest harmonisation batch: smaller ones are merged with their nearest
#: relative (see radscl.harmonize.make_batch), so that every batch keeps
#: enough rows in each cross-validation training fold.
MIN_BATCH_SCANS = 10

#: Fewest patients for which random survival forests are fitted.
MIN_FOREST_PATIENTS = 60

#: Most QC thumbnails embedded (failed and flagged ones are always shown).
MAX_THUMBNAILS = 24


@dataclasses.dataclass
class ReportSettings:
    """What the cohort report computes, and how.

    Attributes
    ----------
    biomarkers : sequence of str
        CT biomarkers added to the lung-function baseline.
    baseline : sequence of str
        Lung-function covariates of the baseline model.
    time, event : str
        Mortality outcome columns of the clinical table.
    batch_columns : sequence of str
        Scan metadata combined into the harmonisation batch.
    covariates : sequence of str
        Biological covariates ComBat keeps.
    progression_rule : str
        Rule deriving progression from the lung-function series
        (:func:`radscl.models.progression.get_rule`).
    trajectory_biomarker : str
        Baseline biomarker whose interaction with time is estimated in the
        FVC mixed model.
    folds, repeats, n_bootstrap, seed, jobs : int
        Cross-validation and bootstrap settings.
    estimators : sequence of str
        Models of the comparison (``cox``, ``coxnet``, ``rsf``).
    """

    biomarkers: Sequence[str] = DEFAULT_BIOMARKERS
    baseline: Sequence[str] = DEFAULT_BASELINE
    time: str = "time_years"
    event: str = "death"
    batch_columns: Sequence[str] = DEFAULT_BATCH_COLUMNS
    covariates: Sequence[str] = ("age", "sex")
    progression_rule: str = "ssc"
    trajectory_biomarker: str = "airway_lung_ratio_pct"
    folds: int = 5
    repeats: int = 2
    n_bootstrap: int = 200
    seed: int = 0
    jobs: int = 1
    estimators: Sequence[str] = ("cox", "rsf")


def build_cohort_report(
    features: pd.DataFrame,
    clinical: pd.DataFrame,
    out_dir: str | Path,
    *,
    lung_function: pd.DataFrame | None = None,
    extraction_dir: str | Path | None = None,
    settings: ReportSettings | None = None,
    title: str = "radscl cohort report",
    notes: Sequence[str] = (),
    truth: pd.DataFrame | None = None,
) -> Path:
    """Analyse a cohort and write ``out_dir/report.html``.

    Parameters
    ----------
    features : pandas.DataFrame
        One row per scan, as ``features.csv``: ``case_id``, ``patient_id``,
        ``scan_date`` and the batch columns besides the biomarkers.
    clinical : pandas.DataFrame
        One row per patient: ``patient_id``, the baseline and covariate
        columns and the outcome (``time_years``, ``death`` by default).
    out_dir : str or Path
        Folder of the report and its tables; created if needed.
    lung_function : pandas.DataFrame, optional
        Visits: ``patient_id``, ``date``, ``fvc_pct`` and optionally
        ``fvc_ml``, ``dlco_pct``; enables progression and FVC trajectories.
    extraction_dir : str or Path, optional
        The ``radscl extract`` folder, for QC pictures, failures and the
        provenance of the measurements.
    settings : ReportSettings, optional
        What to compute; the defaults suit an SSc-ILD cohort.
    title : str
        Report title.
    notes : sequence of str
        Paragraphs shown under the title (for example, that the cohort is
        synthetic).
    truth : pandas.DataFrame, optional
        Known true measurements per ``case_id`` (phantoms), compared with the
        extracted values in their own section.

    Returns
    -------
    pathlib.Path
        The written ``report.html``.

    Raises
    ------
    DataError
        When the tables lack the columns the report needs or share no patient.
    """
    settings = settings or ReportSettings()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    extraction = Path(extraction_dir) if extraction_dir is not None else None
    _require(features, ("case_id", "patient_id"), "features table")
    _require(clinical, ("patient_id", settings.time, settings.event), "clinical table")

    scans = _scans_with_covariates(features, clinical, settings)
    baseline_scans = _baseline_scans(scans)
    biomarkers = [b for b in settings.biomarkers if _usable(baseline_scans, b)]
    baseline = [b for b in settings.baseline if _usable(clinical, b)]
    report = HtmlReport(title)
    for note in notes:
        report.paragraph(note, note=True)
    methods = _Methods(settings)

    logger.info("report: cohort summary and QC")
    _cohort_section(report, scans, clinical, settings)
    _qc_section(report, scans, extraction)
    if truth is not None:
        _truth_section(report, scans, truth)

    logger.info("report: harmonisation")
    harmonised = _harmonisation_section(report, baseline_scans, settings, methods, out)

    logger.info("report: mortality")
    patients = clinical.merge(
        harmonised.drop(
            columns=[c for c in harmonised if c in clinical and c != "patient_id"]
        ),
        on="patient_id",
        how="inner",
    )
    _survival_section(
        report,
        patients,
        time=settings.time,
        event=settings.event,
        label="mortality",
        baseline=baseline,
        biomarkers=biomarkers,
        settings=settings,
        methods=methods,
        out=out,
    )

    progression = None
    if lung_function is not None:
        logger.info("report: progression")
        progression = _progression_outcome(lung_function, settings, methods)
    if progression is not None:
        with_progression = _progression_free(patients, progression, settings)
        _survival_section(
            report,
            with_progression,
            time="pfs_years",
            event="pfs_event",
            label=f"progression-free survival ({settings.progression_rule} rule)",
            baseline=baseline,
            biomarkers=biomarkers,
            settings=settings,
            methods=methods,
            out=out,
        )
    else:
        report.heading("Progression")
        report.paragraph(
            "No lung-function series was given, so progression was not derived.",
            note=True,
        )

    logger.info("report: longitudinal analysis")
    _longitudinal_section(report, scans, lung_function, settings, methods, out)
    _methods_section(report, methods, extraction)

    path = report.write(out / "report.html")
    logger.info("report written to %s", path)
    return path


# --------------------------------------------------------------------------
# Inputs


def _require(frame: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{name}: missing column {missing[0]!r}")


def _usable(frame: pd.DataFrame, column: str, min_values: int = 5) -> bool:
    if column not in frame.columns:
        return False
    values = pd.to_numeric(frame[column], errors="coerce")
    return bool(values.notna().sum() >= min_values and values.std(skipna=True) > 0)


def _scans_with_covariates(
    features: pd.DataFrame, clinical: pd.DataFrame, settings: ReportSettings
) -> pd.DataFrame:
    """The scan table with the patient covariates ComBat keeps."""
    scans = features.copy()
    scans["patient_id"] = scans["patient_id"].astype(str)
    wanted = [c for c in settings.covariates if c in clinical and c not in scans]
    if wanted:
        patients = clinical[["patient_id", *wanted]].copy()
        patients["patient_id"] = patients["patient_id"].astype(str)
        scans = scans.merge(patients, on="patient_id", how="left")
    if "scan_date" in scans:
        scans["scan_date"] = pd.to_datetime(scans["scan_date"], errors="coerce")
    if not set(scans["patient_id"]) & set(clinical["patient_id"].astype(str)):
        raise DataError("the features and the clinical table share no patient_id")
    return scans


def _baseline_scans(scans: pd.DataFrame) -> pd.DataFrame:
    """Each patient's first scan (by date when known)."""
    order = ["patient_id", "scan_date"] if "scan_date" in scans else ["patient_id"]
    first = scans.sort_values(order, kind="stable").drop_duplicates("patient_id")
    return first.reset_index(drop=True)


# --------------------------------------------------------------------------
# Sections


def _cohort_section(report, scans, clinical, settings) -> None:
    report.heading("Cohort")
    n_patients = scans["patient_id"].nunique()
    repeat = scans.groupby("patient_id").size()
    events = pd.to_numeric(clinical[settings.event], errors="coerce")
    follow_up = pd.to_numeric(clinical[settings.time], errors="coerce")
    report.paragraph(
        f"{n_patients} patients with {len(scans)} scans; "
        f"{int((repeat > 1).sum())} patients have a repeat scan. "
        f"{int(events.sum())} deaths over a median follow-up of "
        f"{follow_up.median():.1f} years."
    )
    by = [c for c in ("centre", "manufacturer", "model", "kernel") if c in scans]
    if "contiguous" in scans:
        scans = scans.assign(
            protocol=np.where(
                scans["contiguous"].astype(str).str.lower() == "false",
                "gapped HRCT",
                "volumetric",
            )
        )
        by.append("protocol")
    if by:
        summary = (
            scans.groupby(by, dropna=False)
            .agg(scans=("case_id", "size"), patients=("patient_id", "nunique"))
            .reset_index()
        )
        if "slice_interval_mm" in scans:
            interval = scans.groupby(by, dropna=False)["slice_interval_mm"].median()
            summary["median_slice_interval_mm"] = interval.to_numpy()
        report.table(summary, digits=1)


def _qc_section(report, scans: pd.DataFrame, extraction: Path | None) -> None:
    report.heading("Quality control")
    if extraction is None:
        report.paragraph("No extraction folder was given: no QC pictures.", note=True)
        return

    failures_path = extraction / "failures.csv"
    failures = pd.read_csv(failures_path) if failures_path.is_file() else None
    if failures is not None and len(failures):
        report.paragraph(f"{len(failures)} scans failed and have no features:")
        report.table(failures[["case_id", "error_type", "message"]])
    else:
        report.paragraph("No scan failed.")

    flags = scans.get("quality_flags", pd.Series("", index=scans.index))
    flags = flags.fillna("").astype(str)
    flagged = scans.loc[flags != "", "case_id"].astype(str).tolist()
    if flagged:
        counts = pd.Series(
            [code for text in flags if text for code in text.split(";")]
        ).value_counts()
        report.paragraph(
            f"{len(flagged)} scans carry quality warnings: "
            + ", ".join(f"{code} ({n})" for code, n in counts.items())
            + "."
        )
    warnings_per_case = dict(
        zip(
            scans["case_id"].astype(str),
            flags.str.count(";") + (flags != ""),
            strict=True,
        )
    )
    ordered = sorted(scans["case_id"].astype(str), key=lambda c: -warnings_per_case[c])
    shown = ordered[:MAX_THUMBNAILS]
    thumbnails = []
    for case_id in shown:
        picture = extraction / "cases" / case_id / "qc.png"
        if picture.is_file():
            count = warnings_per_case[case_id]
            label = case_id + (f" ({count} warnings)" if count else "")
            thumbnails.append((label, _thumbnail(picture)))
    if not thumbnails:
        report.paragraph("The extraction wrote no QC pictures.", note=True)
        return
    report.gallery(thumbnails)
    if len(ordered) > len(shown):
        report.paragraph(
            f"{len(ordered) - len(shown)} more QC pictures are in "
            "cases/<case_id>/qc.png of the extraction folder.",
            note=True,
        )


def _truth_section(report, scans: pd.DataFrame, truth: pd.DataFrame) -> None:
    """Extracted values against the phantoms' truth, per measure and protocol."""
    report.heading("Measurement against phantom truth")
    merged = scans.merge(truth, on="case_id", suffixes=("", "_truth"))
    rows = []
    for measure in [c for c in truth.columns if c != "case_id"]:
        if measure not in merged or f"{measure}_truth" not in merged:
            continue
        for protocol, part in merged.groupby(
            merged.get("contiguous", pd.Series(True, index=merged.index))
            .astype(str)
            .str.lower()
            .map({"true": "volumetric", "false": "gapped HRCT"})
            .fillna("unknown")
        ):
            measured = pd.to_numeric(part[measure], errors="coerce")
            expected = pd.to_numeric(part[f"{measure}_truth"], errors="coerce")
            known = measured.notna() & expected.notna()
            error = measured[known] - expected[known]
            rows.append(
                {
                    "measure": measure,
                    "protocol": protocol,
                    "scans": int(known.sum()),
                    "empty": int(measured.isna().sum()),
                    "mean_truth": expected[known].mean(),
                    "mean_error": error.mean(),
                    "mean_abs_error": error.abs().mean(),
                }
            )
    report.paragraph(
        "Extracted minus true value on the rendered phantoms. Empty values "
        "are measurements radscl refuses on that protocol (tree measures on "
        "gapped HRCT)."
    )
    report.table(pd.DataFrame(rows), digits=2)


def _thumbnail(path: Path, width: int = 640) -> bytes:
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        height = max(1, round(image.height * width / image.width))
        small = image.resize((width, height), Image.LANCZOS)
        buffer = io.BytesIO()
        small.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _harmonisation_section(report, baseline_scans, settings, methods, out):
    """ComBat over the baseline scans, with diagnostics and distributions."""
    from radscl.harmonize import ComBat
    from radscl.harmonize import compare_batch_effects
    from radscl.harmonize import make_batch
    from radscl.report.harmonize_plots import plot_batch_distributions
    from radscl.report.harmonize_plots import select_features

    report.heading("Harmonisation across centres and scanners")
    batch_columns = [c for c in settings.batch_columns if c in baseline_scans]
    covariates = [c for c in settings.covariates if _has_values(baseline_scans, c)]
    candidates = [*settings.biomarkers, *DESCRIPTIVE_FEATURES]
    features = [c for c in dict.fromkeys(candidates) if _usable(baseline_scans, c)]
    if not batch_columns or len(features) < 2:
        report.paragraph(
            "Fewer than two imaging features or no batch columns: not harmonised.",
            note=True,
        )
        return baseline_scans

    table = baseline_scans.copy()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table["batch"] = make_batch(
            table,
            batch_columns,
            n_covariates=len(covariates),
            min_size=MIN_BATCH_SCANS,
        ).to_numpy()
    for warning in caught:
        logger.info("%s", warning.message)
    if table["batch"].nunique() < 2:
        report.paragraph("All scans form one batch: nothing to harmonise.", note=True)
        return baseline_scans

    combat = ComBat(batch="batch", covariates=covariates, features=features)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        harmonised = combat.fit_transform(table)
    diagnostics = compare_batch_effects(
        table, harmonised, "batch", covariates, features
    )
    diagnostics.to_csv(out / "harmonisation_diagnostics.csv", index=False)
    picture = plot_batch_distributions(
        table,
        harmonised,
        "batch",
        select_features(diagnostics, 6),
        out / "harmonisation.png",
        diagnostics=diagnostics,
    )
    methods.harmonisation = (
        f"ComBat (parametric empirical Bayes, location and scale) over "
        f"{table['batch'].nunique()} batches formed from "
        f"{', '.join(batch_columns)} (batches too small to estimate merged), "
        f"keeping {', '.join(covariates) or 'no covariates'}; features "
        f"{', '.join(features)}. In the survival models ComBat is refitted "
        "inside each training fold."
    )
    report.paragraph(methods.harmonisation)
    counts = table["batch"].value_counts().rename_axis("batch").reset_index()
    report.table(counts.rename(columns={"count": "baseline scans"}))
    shown = [
        c
        for c in (
            "feature",
            "anova_p_before",
            "anova_p_after",
            "kruskal_p_before",
            "kruskal_p_after",
        )
        if c in diagnostics
    ]
    report.table(diagnostics[shown])
    report.figure(picture.read_bytes(), "distributions by batch, before and after")
    for warning in caught:
        report.paragraph(f"ComBat: {warning.message}", note=True)
    harmonised = harmonised.drop(columns=["batch"])
    harmonised["batch"] = table["batch"].to_numpy()
    return harmonised


def _has_values(frame: pd.DataFrame, column: str) -> bool:
    return (
        column in frame and frame[column].notna().all() and frame[column].nunique() > 1
    )


def _survival_section(
    report,
    patients,
    *,
    time,
    event,
    label,
    baseline,
    biomarkers,
    settings,
    methods,
    out,
) -> None:
    from radscl.harmonize import ComBat
    from radscl.report.plots import auc_over_time
    from radscl.report.plots import forest_plot
    from radscl.report.plots import kaplan_meier_by_tertile

    report.heading(f"Prognosis: {label}")
    table = patients.copy()
    table[time] = pd.to_numeric(table[time], errors="coerce")
    table[event] = pd.to_numeric(table[event], errors="coerce")
    table = table[table[time].notna() & table[event].notna() & (table[time] > 0)]
    table = table.reset_index(drop=True)
    n_events = int(table[event].sum())
    report.paragraph(f"{len(table)} patients, {n_events} events.")
    if n_events < 8 or len(table) < 20 or not baseline or not biomarkers:
        report.paragraph(
            "Too few patients, events or covariates for cross-validated "
            "models (at least 20 patients and 8 events are needed).",
            note=True,
        )
        return

    for biomarker in biomarkers[:3]:
        values = pd.to_numeric(table[biomarker], errors="coerce")
        known = values.notna()
        if known.sum() < 12:
            continue
        figure, p_value = kaplan_meier_by_tertile(
            table.loc[known, time],
            table.loc[known, event].astype(bool),
            values[known],
            label=biomarker,
            time_label="years",
        )
        report.figure(
            figure_png(figure),
            f"Kaplan-Meier by tertile of {biomarker} (log-rank p = {p_value:.3g})",
        )

    harmonizer = None
    if "batch" in table and table["batch"].nunique() > 1:
        covariates = [c for c in settings.covariates if _has_values(table, c)]
        harmonizer = ComBat(batch="batch", covariates=covariates, features=biomarkers)
    estimators = list(settings.estimators)
    if "rsf" in estimators and len(table) < MIN_FOREST_PATIENTS:
        estimators.remove("rsf")
        report.paragraph(
            f"Random survival forests need at least {MIN_FOREST_PATIENTS} patients "
            f"to grow beyond a single leaf; with {len(table)} only Cox models "
            "are compared.",
            note=True,
        )
    settings = dataclasses.replace(settings, estimators=tuple(estimators))
    horizons = _horizons(table[time], table[event])
    attempts = [harmonizer, None] if harmonizer is not None else [None]
    for attempt in attempts:
        try:
            comparison = _compare(
                table, time, event, baseline, biomarkers, settings, horizons, attempt
            )
            break
        except Exception as error:  # an unseen batch in a fold, a singular fit
            if attempt is None:
                raise
            logger.warning("fold-wise harmonisation failed (%s); raw values", error)
            report.paragraph(
                f"Harmonisation inside the folds failed ({error}); the models "
                "below use unharmonised values.",
                note=True,
            )
    slug = label.split()[0]
    comparison.table.to_csv(out / f"comparison_{slug}.csv", index=False)
    shown = [
        c
        for c in (
            "model",
            "n",
            "events",
            "harrell_c",
            "harrell_c_lower95",
            "harrell_c_upper95",
            "uno_c",
            "ibs",
            "delta_c",
            "delta_c_lower95",
            "delta_c_upper95",
            "lr_p",
        )
        if c in comparison.table
    ]
    report.heading("Model comparison", level=3)
    report.table(comparison.table[shown])
    if len(comparison.cox_summary):
        report.figure(
            figure_png(forest_plot(comparison.cox_summary, title=f"{label}: Cox")),
            "hazard ratios per standard deviation, combined Cox model",
        )
    if len(comparison.auc_curves):
        report.figure(
            figure_png(auc_over_time(comparison.auc_curves, time_label="years")),
            "time-dependent AUC (cumulative cases, dynamic controls)",
        )
    methods.survival[label] = (
        f"{label}: {len(table)} patients, {n_events} events; baseline "
        f"{', '.join(baseline)}; CT biomarkers {', '.join(biomarkers)}; "
        f"{settings.folds}-fold cross-validation repeated {settings.repeats} "
        f"times, {settings.n_bootstrap} bootstrap resamples; models "
        f"{', '.join(settings.estimators)}."
    )


def _compare(
    table,
    time,
    event,
    baseline,
    biomarkers,
    settings,
    horizons,
    harmonizer,
):
    from radscl.models.comparison import compare_models

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return compare_models(
            table,
            time=time,
            event=event,
            baseline=list(baseline),
            biomarkers=list(biomarkers),
            estimators=list(settings.estimators),
            folds=settings.folds,
            repeats=settings.repeats,
            n_bootstrap=settings.n_bootstrap,
            seed=settings.seed,
            n_jobs=settings.jobs,
            horizons=horizons,
            harmonizer=harmonizer,
        )


def _horizons(time: pd.Series, event: pd.Series) -> list[float]:
    """Yearly horizons inside the follow-up where events happened."""
    event_times = time[event.astype(bool)]
    last = float(np.quantile(event_times, 0.9)) if len(event_times) else 1.0
    first = float(event_times.min()) if len(event_times) else 0.5
    horizons = [h for h in (1.0, 2.0, 3.0, 4.0, 5.0) if first < h <= last]
    return horizons or [float(np.median(event_times))]


def _progression_outcome(lung_function, settings, methods) -> pd.DataFrame | None:
    from radscl.models.progression import derive_progression
    from radscl.models.progression import get_rule

    rule = get_rule(settings.progression_rule)
    try:
        progressed = derive_progression(lung_function, rule)
    except DataError as error:
        logger.warning("progression not derived: %s", error)
        return None
    methods.progression = f"{rule.title} ({rule.source})"
    outcome = progressed[["patient_id", "time_years", "event"]].rename(
        columns={"time_years": "progression_years", "event": "progressed"}
    )
    outcome["patient_id"] = outcome["patient_id"].astype(str)
    return outcome


def _progression_free(
    patients: pd.DataFrame, progression: pd.DataFrame, settings: ReportSettings
) -> pd.DataFrame:
    """Time to the first of progression and death; censored at follow-up end."""
    table = patients.drop(
        columns=[c for c in ("pfs_years", "pfs_event") if c in patients]
    ).copy()
    table["patient_id"] = table["patient_id"].astype(str)
    table = table.merge(progression, on="patient_id", how="inner")
    death_time = pd.to_numeric(table[settings.time], errors="coerce")
    died = pd.to_numeric(table[settings.event], errors="coerce") == 1
    progressed = table["progressed"] == 1
    progression_time = pd.to_numeric(table["progression_years"], errors="coerce")
    table["pfs_years"] = np.where(
        progressed, np.minimum(progression_time, death_time), death_time
    )
    table["pfs_event"] = (progressed | died).astype(int)
    return table


def _longitudinal_section(report, scans, lung_function, settings, methods, out):
    from radscl.models import longitudinal as lg
    from radscl.report.longitudinal_plots import plot_fvc_trajectories

    report.heading("Change over time")
    repeat = scans.groupby("patient_id").size()
    if (repeat > 1).any() and "scan_date" in scans:
        measures = [
            m for m in (*settings.biomarkers, "lung_volume_ml", "haa_pct") if m in scans
        ]
        changes = lg.scan_changes(scans, measures)
        changes.to_csv(out / "change.csv", index=False)
        consecutive = changes[changes["pair"] == "consecutive"]
        summary = (
            consecutive.groupby("measure")
            .agg(
                pairs=("patient_id", "size"),
                comparable=("comparable", "sum"),
                median_change_per_year=("change_per_year", "median"),
            )
            .reset_index()
        )
        report.paragraph(
            "Change between consecutive scans of the same patient, per year; "
            "pairs of unequal protocol are compared only on measures valid for "
            "both."
        )
        report.table(summary)
    else:
        report.paragraph("No patient has a repeat scan.", note=True)

    if lung_function is None:
        report.paragraph("No lung-function series: no FVC trajectories.", note=True)
        return
    biomarker = settings.trajectory_biomarker
    baseline = lg.baseline_scans(scans)
    if biomarker not in baseline or baseline[biomarker].notna().sum() < 10:
        biomarker = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", lg.MixedModelConvergenceWarning)
        fit = lg.fit_fvc_trajectory(lung_function, baseline, biomarker=biomarker)
    for warning in caught:
        report.paragraph(str(warning.message), note=True)
    fit.estimates.to_csv(out / "trajectory.csv", index=False)
    picture = plot_fvc_trajectories(fit, out / "fvc_trajectories.png")
    report.heading("FVC trajectories", level=3)
    report.paragraph(
        f"Linear mixed model of {fit.outcome} over time (random intercept and "
        f"slope per patient), {fit.n_patients} patients, {fit.n_visits} visits"
        + (f", with a baseline {biomarker} x time interaction." if biomarker else ".")
    )
    report.table(fit.estimates)
    report.figure(picture.read_bytes(), "FVC series and fitted trajectories")
    methods.trajectory = (
        f"FVC trajectories: linear mixed-effects model of {fit.outcome} with a "
        "random intercept and slope per patient (REML, statsmodels)"
        + (
            f" and a standardised baseline {biomarker} x time interaction"
            if biomarker
            else ""
        )
        + "."
    )


# --------------------------------------------------------------------------
# Methods


@dataclasses.dataclass
class _Methods:
    settings: ReportSettings
    harmonisation: str = "Not harmonised."
    progression: str = ""
    trajectory: str = ""
    survival: dict[str, str] = dataclasses.field(default_factory=dict)


def _methods_section(report, methods: _Methods, extraction: Path | None) -> None:
    report.heading("Methods")
    provenance = {}
    if extraction is not None and (extraction / "provenance.json").is_file():
        provenance = json.loads((extraction / "provenance.json").read_text())
    lines = []
    stages = provenance.get("stages") or {}
    for name, record in stages.items():
        lines.append(f"{name}: {_describe_method(record)}")
    if not stages:
        lines.append("Imaging features were taken as given (no extraction provenance).")
    lines += [
        "Volumes are computed from slice positions (each slice stands for half "
        "the distance to its neighbours), never from slice thickness; on gapped "
        "HRCT, airway-tree and vessel measurements are left empty.",
        "Density: high-attenuation area = % of parenchyma in [-600, -250] HU; "
        "low-attenuation area = % below -950 HU; kurtosis is excess kurtosis.",
        "Vessel cross-sectional area bins: < 5, 5-10 and > 10 mm2.",
        "Fibrosis extent = reticulation + ground glass + honeycombing as % of "
        "lung volume.",
        methods.harmonisation,
        *methods.survival.values(),
        "Discrimination: Harrell's C, Uno's C, cumulative/dynamic time-dependent "
        "AUC and the integrated Brier score on out-of-fold predictions with "
        "percentile bootstrap intervals over patients; the change in C against "
        "the baseline Cox model with the corrected repeated-CV t interval "
        "(Nadeau and Bengio) and the likelihood-ratio test of nested Cox models.",
    ]
    if methods.progression:
        lines.append(f"Progression: {methods.progression}.")
    if methods.trajectory:
        lines.append(methods.trajectory)
    lines.append("Software: " + _versions(provenance))
    report.items([line for line in lines if line])


def _describe_method(record: Any) -> str:
    if not isinstance(record, dict):
        return str(record)
    parts = []
    for key, value in record.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        parts.append(f"{key}: {value}")
    return "; ".join(parts)


def _versions(provenance: dict) -> str:
    from radscl.extract.cohort import library_versions

    versions = dict(provenance.get("libraries") or library_versions())
    for name in ("scikit-survival", "lifelines", "statsmodels", "matplotlib"):
        try:
            versions.setdefault(name, importlib.metadata.version(name))
        except importlib.metadata.PackageNotFoundError:
            continue
    entries = [f"radscl {__version__}"] + [
        f"{name} {version}" for name, version in sorted(versions.items())
    ]
    return ", ".join(entries) + "."
