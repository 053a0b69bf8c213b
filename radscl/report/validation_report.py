"""Files and report of a validated prognostic model (``radscl model fit``).

:func:`write_validation` writes the leave-one-centre-out tables, one
calibration figure per horizon and ``report.html``: a TRIPOD-style account of
what was predicted, from what, in whom, how it was validated and how well.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from radscl.report import plots
from radscl.report.html import HtmlReport

logger = logging.getLogger(__name__)

_SHOWN = [
    "centre",
    "n",
    "events",
    "harrell_c",
    "harrell_c_lower95",
    "harrell_c_upper95",
    "uno_c",
    "calibration_slope",
    "calibration_slope_lower95",
    "calibration_slope_upper95",
    "reason",
]


def write_validation(model, out_dir: str | Path) -> dict[str, Path]:
    """Write a fitted model's validation tables, figures and ``report.html``.

    Parameters
    ----------
    model : radscl.models.saved.PrognosticModel
        A model fitted with a centre column (its ``validation`` is set).
    out_dir : str or Path
        The model folder.

    Returns
    -------
    dict of str to Path
        Every file written, by short name.
    """
    validation = model.validation
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {
        "validation_centres": out / "validation_centres.csv",
        "validation_heterogeneity": out / "validation_heterogeneity.csv",
    }
    validation.table.to_csv(written["validation_centres"], index=False)
    validation.heterogeneity.to_csv(written["validation_heterogeneity"], index=False)
    figures = validation.calibration_figure()
    for horizon, figure in figures.items():
        written[f"calibration_{horizon:g}"] = plots.save_figure(
            figure, out / f"calibration_{horizon:g}.png"
        )

    card = model.card
    report = HtmlReport("Prognostic model: development and validation")
    report.heading("What was predicted")
    report.paragraph(card["outcome"]["definition"])
    report.paragraph(
        "Predicted: a risk score, the probability of being event-free at "
        + ", ".join(f"{h:g}" for h in model.horizons)
        + " and a risk group (tertiles of the training scores)."
    )
    report.heading("From what")
    report.table(
        pd.DataFrame(card["features"])[
            ["name", "unit", "training_min", "training_max", "harmonised"]
        ]
    )
    report.items(card["preprocessing"])
    report.heading("In whom")
    cohort = card["training_cohort"]
    follow = cohort["follow_up"]
    report.paragraph(
        f"{cohort['n']} patients, {cohort['events']} events, median follow-up "
        f"{follow['median_reverse_km']:.2f} (reverse Kaplan-Meier)."
    )
    for key in ("centres", "scanners"):
        if key in cohort:
            report.items([f"{k}: {v}" for k, v in cohort[key].items()])
    report.heading("How it was validated")
    report.paragraph(card["validation"]["method"])
    report.heading("How well")
    report.table(validation.table[_SHOWN])
    report.table(validation.heterogeneity)
    for horizon, figure in figures.items():
        report.figure(figure, f"pooled held-out calibration at {horizon:g}")
    report.heading("Intended use and known limits")
    report.paragraph(card["intended_use"])
    report.items(card["known_limits"])
    written["report"] = report.write(out / "report.html")
    logger.debug("wrote the validation report to %s", written["report"])
    return written


__all__ = ["write_validation"]
