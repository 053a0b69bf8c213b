"""Files and report of a model comparison (``radscl model compare``).

:func:`write_comparison` writes the tables (``comparison.csv`` and the
supporting CSVs), one PNG per figure and ``report.html`` with every figure
embedded.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from radscl.models.comparison import Comparison
from radscl.models.survival import missingness_report
from radscl.report import plots
from radscl.report.html import HtmlReport

logger = logging.getLogger(__name__)

#: At most this many biomarkers get their own Kaplan-Meier figure.
MAX_KM_FIGURES = 8


def write_comparison(
    comparison: Comparison,
    table: pd.DataFrame,
    out_dir: str | Path,
    *,
    status: pd.Series | None = None,
    cause: int | None = None,
    time_label: str | None = None,
) -> dict[str, Path]:
    """Write a comparison's tables, figures and ``report.html``.

    Parameters
    ----------
    comparison : Comparison
        Result of :func:`radscl.models.compare_models`.
    table : pandas.DataFrame
        The patients it was computed on (for the Kaplan-Meier figures and the
        missingness table).
    out_dir : str or Path
        Output folder, created if needed.
    status : pandas.Series, optional
        The original competing-risks status column, when the outcome was one
        cause of several; adds cumulative incidence figures.
    cause : int, optional
        The cause of interest in ``status``.
    time_label : str, optional
        Label of time axes; the time column's name by default.

    Returns
    -------
    dict of str to Path
        Every file written, by short name.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = comparison.settings
    time, event = settings["time"], settings["event"]
    time_label = time_label or time
    written: dict[str, Path] = {}

    comparison.table.to_csv(out / "comparison.csv", index=False)
    written["comparison"] = out / "comparison.csv"
    comparison.cox_summary.to_csv(out / "cox_summary_per_sd.csv", index=False)
    comparison.proportional_hazards.to_csv(
        out / "proportional_hazards.csv", index=False
    )
    calibration = pd.concat(
        [t.assign(model=name) for name, t in comparison.calibration.items()],
        ignore_index=True,
    )
    calibration.to_csv(out / "calibration.csv", index=False)
    comparison.auc_curves.to_csv(out / "td_auc_curves.csv", index=False)

    figures: list[tuple[str, object, str]] = []
    figures.append(
        (
            "forest",
            plots.forest_plot(
                comparison.cox_summary,
                title="Cox model, hazard ratio per standard deviation",
            ),
            "Combined Cox model (complete cases), hazard ratio per standard deviation.",
        )
    )
    figures.append(
        (
            "td_auc",
            plots.auc_over_time(comparison.auc_curves, time_label=time_label),
            "Cumulative/dynamic AUC of each model over follow-up (cross-validated).",
        )
    )
    shown = _calibration_models(comparison)
    figures.append(
        (
            "calibration",
            plots.calibration_plot(
                {name: comparison.calibration[name] for name in shown},
                at_time=settings["calibration_time"],
            ),
            f"Calibration at {settings['calibration_time']:g}: quintiles of "
            "cross-validated "
            "predicted risk against Kaplan-Meier observed risk (95 % interval).",
        )
    )
    event_flags = table[event].to_numpy() == 1
    for name in settings["biomarkers"][:MAX_KM_FIGURES]:
        if table[name].notna().sum() < 3:
            continue
        figure, _ = plots.kaplan_meier_by_tertile(
            table[time], event_flags, table[name], label=name, time_label=time_label
        )
        figures.append(
            (f"km_{_safe(name)}", figure, f"Kaplan-Meier by tertile of {name}.")
        )
        if status is not None and cause is not None:
            incidence = plots.cumulative_incidence_by_tertile(
                table[time],
                status,
                table[name],
                cause=cause,
                label=name,
                cause_label=f"{event} (cause {cause})",
                time_label=time_label,
            )
            figures.append(
                (
                    f"cif_{_safe(name)}",
                    incidence,
                    f"Aalen-Johansen cumulative incidence of cause {cause} by "
                    "tertile of "
                    f"{name}; other causes compete.",
                )
            )

    for short, figure, _ in figures:
        written[short] = plots.save_figure(figure, out / f"{short}.png")

    report = _build_report(comparison, table, figures, status is not None, cause)
    written["report"] = report.write(out / "report.html")
    logger.info("wrote %d files to %s", len(written) + 4, out)
    return written


def _calibration_models(comparison: Comparison) -> list[str]:
    reference = comparison.settings["reference"]
    combined = [
        name for name in comparison.calibration if name.endswith("baseline+biomarkers")
    ]
    return [reference, *combined]


def _build_report(
    comparison: Comparison,
    table: pd.DataFrame,
    figures: Sequence[tuple[str, object, str]],
    competing: bool,
    cause: int | None,
) -> HtmlReport:
    settings = comparison.settings
    results = comparison.table
    report = HtmlReport("radscl: CT biomarkers against lung-function baselines")

    n = int(results["n"].iloc[0])
    events = int(results["events"].iloc[0])
    outcome = f"outcome {settings['event']} over {settings['time']}"
    if competing:
        outcome += f" (cause {cause}; other causes are competing events, censored)"
    report.paragraph(
        f"{n} patients, {events} events; {outcome}. Baseline: "
        f"{', '.join(settings['baseline'])}. "
        f"Biomarkers: {', '.join(settings['biomarkers'])}."
    )
    headline = results[
        (results["estimator"] == "cox") & (results["role"] == "baseline+biomarkers")
    ]
    if not headline.empty:
        row = headline.iloc[0]
        report.paragraph(
            f"Adding the biomarkers to the baseline Cox model changes Harrell's C by "
            f"{row['delta_c']:+.3f} (95 % interval {row['delta_c_lower95']:+.3f} to "
            f"{row['delta_c_upper95']:+.3f}); likelihood-ratio test "
            f"chi2 = {row['lr_chi2']:.2f} on {int(row['lr_df'])} df, "
            f"p = {_p(row['lr_p'])} (n = {settings['lr_n']} complete)."
        )

    report.heading("Discrimination and accuracy (cross-validated)")
    columns = [
        "model",
        "harrell_c",
        "harrell_c_lower95",
        "harrell_c_upper95",
        "uno_c",
        "uno_c_lower95",
        "uno_c_upper95",
    ]
    columns += [
        c for c in results.columns if c.startswith("td_auc_") and not c.endswith("95")
    ]
    columns += [
        "ibs",
        "ibs_lower95",
        "ibs_upper95",
        "delta_c",
        "delta_c_lower95",
        "delta_c_upper95",
        "lr_p",
    ]
    report.table(results[columns])
    tau = settings["tau"]
    report.items(
        [
            f"{settings['repeats']} x {settings['folds']}-fold cross-validation "
            "stratified on the event; imputation (median) and scaling fitted within "
            "each training fold.",
            "95 % intervals of C, AUC and Brier score: percentile bootstrap of the "
            f"cross-validated predictions ({settings['n_bootstrap']} resamples of "
            "patients).",
            "Interval of the change in C: corrected repeated-CV t interval "
            "(Nadeau-Bengio), "
            f"paired with the reference model {settings['reference']!r}.",
            "Uno's C truncated at "
            + (f"{tau:g}" if tau is not None else "the last time")
            + "; "
            f"integrated Brier score from {settings['brier_range'][0]:.3g} to "
            f"{settings['brier_range'][1]:.3g}.",
            "Likelihood-ratio test: nested Cox models on the patients complete for all "
            "covariates.",
        ]
    )

    report.heading("Figures")
    for _, figure, caption in figures:
        report.figure(figure, caption)

    report.heading("Cox model per standard deviation")
    report.table(comparison.cox_summary)
    report.heading("Proportional hazards (scaled Schoenfeld residuals, rank time)")
    report.table(comparison.proportional_hazards)
    small = comparison.proportional_hazards["p"] < 0.05
    if small.any():
        report.paragraph(
            "Hazard ratios may change over follow-up for: "
            + ", ".join(comparison.proportional_hazards.loc[small, "covariate"])
            + ". Consider stratifying or a time-varying effect.",
            note=True,
        )
    report.heading(f"Calibration at {settings['calibration_time']:g}")
    for name in _calibration_models(comparison):
        report.heading(name, level=3)
        report.table(comparison.calibration[name])
    report.heading("Missing values (imputed within folds)")
    report.table(
        missingness_report(table, [*settings["baseline"], *settings["biomarkers"]])
    )
    return report


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def _p(value: float) -> str:
    if not np.isfinite(value):
        return "n/a"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"
