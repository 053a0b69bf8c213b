"""Plots of the longitudinal analysis: FVC trajectories and change versus outcome.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot state), so
they can be made from worker processes and without a display.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from radscl.models.longitudinal import TrajectoryFit

logger = logging.getLogger(__name__)

TERTILE_COLOURS = ("#1b9e77", "#7570b3", "#d95f02")
TERTILE_LABELS = ("lowest third", "middle third", "highest third")


def _figure(width_in: float, height_in: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_in, height_in), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _tertiles(values: pd.Series) -> pd.Series:
    """Tertile index 0, 1, 2 of each value (ranks break ties)."""
    return pd.qcut(values.rank(method="first"), 3, labels=False).astype(int)


def plot_fvc_trajectories(
    fit: TrajectoryFit,
    path: str | Path,
    *,
    outcome_label: str | None = None,
) -> Path:
    """Spaghetti plot of a lung-function series with the fitted trajectories.

    One panel per tertile of the baseline biomarker (one panel without a
    biomarker): each patient's observed series as a thin line, and the
    model's mean trajectory for a patient at the tertile's median biomarker
    with its 95% band. The fitted lines of the other tertiles are drawn
    faintly for comparison.

    Parameters
    ----------
    fit : TrajectoryFit
        A fit from :func:`radscl.models.longitudinal.fit_fvc_trajectory`.
    path : str or pathlib.Path
        PNG file to write.
    outcome_label : str, optional
        Y-axis label; defaults to the outcome column.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    path = Path(path)
    data = fit.data
    horizon = float(np.quantile(data["time_years"], 0.95)) or 1.0
    grid = np.linspace(0.0, horizon, 50)

    if fit.biomarker is not None:
        per_patient = data.drop_duplicates("patient").set_index("patient")[
            "biomarker_z"
        ]
        tertile = _tertiles(per_patient)
        groups = [per_patient.index[tertile == k] for k in range(3)]
        centres = [float(per_patient[tertile == k].median()) for k in range(3)]
        titles = []
        for k in range(3):
            values = per_patient[tertile == k] * fit.biomarker_sd + fit.biomarker_mean
            titles.append(
                f"{fit.biomarker}: {TERTILE_LABELS[k]}\n"
                f"({values.min():.3g} to {values.max():.3g}, n={len(values)})"
            )
    else:
        groups = [pd.Index(data["patient"].unique())]
        centres = [0.0]
        titles = [f"all patients (n={len(groups[0])})"]

    curves = [fit.population_trajectory(grid, centre) for centre in centres]
    figure = _figure(4.2 * len(groups), 4.0)
    axes = figure.subplots(1, len(groups), sharey=True, squeeze=False)[0]
    by_patient = data.groupby("patient", sort=False)
    for k, (ax, members) in enumerate(zip(axes, groups, strict=True)):
        colour = TERTILE_COLOURS[k] if len(groups) == 3 else "#3b6ea5"
        for patient in members:
            visits = by_patient.get_group(patient)
            ax.plot(
                visits["time_years"], visits["outcome"], color=colour, lw=0.6, alpha=0.3
            )
        for j, curve in enumerate(curves):
            if j != k:
                ax.plot(
                    curve["time_years"], curve["mean"], color="0.55", lw=1.0, ls="--"
                )
        curve = curves[k]
        ax.fill_between(
            curve["time_years"],
            curve["lower95"],
            curve["upper95"],
            color=colour,
            alpha=0.25,
        )
        ax.plot(
            curve["time_years"], curve["mean"], color=colour, lw=2.5, label="model mean"
        )
        ax.set_title(titles[k], fontsize=9)
        ax.set_xlabel("years since first visit")
        ax.set_xlim(0, max(horizon, float(data["time_years"].max())) * 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(outcome_label or fit.outcome)
    axes[0].legend(loc="lower left", fontsize=8)
    slope = fit.estimates.set_index("term")["estimate"]
    if fit.biomarker is not None:
        interaction = slope[f"{fit.biomarker}_z:time_years"]
        figure.suptitle(
            f"{fit.outcome}: {slope['time_years']:+.2f}/year at the mean, "
            f"{interaction:+.2f}/year per SD of {fit.biomarker}",
            fontsize=10,
        )
    figure.savefig(path)
    logger.debug("wrote %s", path)
    return path


def plot_change_vs_outcome(
    data: pd.DataFrame,
    path: str | Path,
    *,
    change_col: str,
    time_col: str,
    event_col: str,
    change_label: str | None = None,
    outcome_label: str = "event",
) -> Path:
    """Change between scans against later outcome.

    Left: Kaplan-Meier curves of the outcome by tertile of the change.
    Right: each patient's change against follow-up time, events filled and
    censored times open.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per patient, e.g. from
        :func:`radscl.models.longitudinal.landmark_dataset`.
    path : str or pathlib.Path
        PNG file to write.
    change_col, time_col, event_col : str
        Columns of the change, the time and the event indicator.
    change_label : str, optional
        Axis label of the change; defaults to ``change_col``.
    outcome_label : str
        Name of the event in labels (e.g. ``death``, ``progression``).

    Returns
    -------
    pathlib.Path
        The written file.
    """
    from lifelines import KaplanMeierFitter

    path = Path(path)
    frame = data[[change_col, time_col, event_col]].dropna()
    change_label = change_label or change_col
    figure = _figure(9.0, 4.0)
    km_ax, scatter_ax = figure.subplots(1, 2)

    if len(frame) >= 6:
        tertile = _tertiles(frame[change_col])
        for k in range(3):
            members = frame[tertile == k]
            fitter = KaplanMeierFitter()
            fitter.fit(members[time_col], members[event_col])
            survival = fitter.survival_function_.iloc[:, 0]
            km_ax.step(
                survival.index,
                survival.to_numpy(),
                where="post",
                color=TERTILE_COLOURS[k],
                lw=2,
                label=(
                    f"{TERTILE_LABELS[k]} ({members[change_col].min():.3g} to "
                    f"{members[change_col].max():.3g}, n={len(members)})"
                ),
            )
        km_ax.legend(fontsize=7, title=f"tertile of {change_label}", title_fontsize=7)
    else:
        km_ax.text(0.5, 0.5, "too few patients", ha="center", transform=km_ax.transAxes)
    km_ax.set_ylim(0, 1.02)
    km_ax.set_xlabel(f"years ({time_col})")
    km_ax.set_ylabel(f"free of {outcome_label}")
    km_ax.grid(alpha=0.3)

    events = frame[event_col] == 1
    scatter_ax.scatter(
        frame.loc[events, change_col],
        frame.loc[events, time_col],
        color="#d95f02",
        s=18,
        label=outcome_label,
    )
    scatter_ax.scatter(
        frame.loc[~events, change_col],
        frame.loc[~events, time_col],
        facecolors="none",
        edgecolors="0.4",
        s=18,
        label="censored",
    )
    from matplotlib.ticker import MaxNLocator

    scatter_ax.xaxis.set_major_locator(MaxNLocator(6))
    scatter_ax.set_xlabel(change_label)
    scatter_ax.set_ylabel(f"years to {outcome_label} or censoring")
    scatter_ax.legend(fontsize=8)
    scatter_ax.grid(alpha=0.3)
    figure.savefig(path)
    logger.debug("wrote %s", path)
    return path
