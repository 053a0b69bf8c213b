"""Survival figures: Kaplan-Meier by tertile, forest plot, AUC over time,
calibration and cumulative incidence.

Every function returns a :class:`matplotlib.figure.Figure` drawn on the Agg
canvas without touching pyplot, so figures can be made from worker processes
and tests without a display. :func:`save_figure` writes PNG.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter
from matplotlib.ticker import MaxNLocator
from matplotlib.ticker import NullFormatter

from radscl.errors import DataError

logger = logging.getLogger(__name__)

_TERTILE_COLOURS = ("#1b9e77", "#7570b3", "#d95f02")
_DPI = 110


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(figure)
    return figure


def tertiles(values: Sequence[float]) -> np.ndarray:
    """Tertile (1, 2, 3) of each value; 0 where the value is missing."""
    values = np.asarray(values, dtype=float)
    present = np.isfinite(values)
    if present.sum() < 3:
        raise DataError("at least three values are needed to form tertiles")
    cuts = np.quantile(values[present], [1 / 3, 2 / 3])
    groups = np.zeros(values.shape, dtype=int)
    groups[present] = 1 + np.searchsorted(cuts, values[present], side="right")
    return groups


def kaplan_meier_by_tertile(
    time: Sequence[float],
    event: Sequence[bool],
    values: Sequence[float],
    *,
    label: str,
    time_label: str = "time",
) -> tuple[Figure, float]:
    """Kaplan-Meier curves by tertile of a biomarker, with numbers at risk.

    Parameters
    ----------
    time, event : array-like
        Outcome.
    values : array-like of float
        The biomarker; patients with a missing value are left out.
    label : str
        Biomarker name for the legend and title.
    time_label : str
        Label of the time axis.

    Returns
    -------
    (Figure, float)
        The figure and the log-rank p-value across tertiles.
    """
    from sksurv.compare import compare_survival
    from sksurv.nonparametric import kaplan_meier_estimator
    from sksurv.util import Surv

    time = np.asarray(time, dtype=float)
    event = np.asarray(event).astype(bool)
    groups = tertiles(values)
    keep = groups > 0
    _, p_value = compare_survival(
        Surv.from_arrays(event[keep], time[keep]), groups[keep]
    )

    figure = _figure(6.4, 4.8)
    grid = figure.add_gridspec(2, 1, height_ratios=(4, 1), hspace=0.35)
    axes = figure.add_subplot(grid[0])
    at_risk_axes = figure.add_subplot(grid[1], sharex=axes)
    horizon = float(np.quantile(time[keep], 0.95))
    ticks = MaxNLocator(nbins=6).tick_values(0.0, horizon)
    ticks = ticks[(ticks >= 0) & (ticks <= horizon)]
    cuts = np.quantile(np.asarray(values, dtype=float)[keep], [1 / 3, 2 / 3])
    names = (f"< {cuts[0]:.3g}", f"{cuts[0]:.3g} to {cuts[1]:.3g}", f"> {cuts[1]:.3g}")

    for tertile, colour, name in zip((1, 2, 3), _TERTILE_COLOURS, names, strict=True):
        member = groups == tertile
        km_time, km_survival, km_interval = kaplan_meier_estimator(
            event[member], time[member], conf_type="log-log"
        )
        axes.step(
            np.r_[0, km_time],
            np.r_[1, km_survival],
            where="post",
            color=colour,
            label=f"T{tertile}: {name}",
        )
        axes.fill_between(
            np.r_[0, km_time],
            np.r_[1, km_interval[0]],
            np.r_[1, km_interval[1]],
            step="post",
            color=colour,
            alpha=0.15,
            linewidth=0,
        )
        at_risk = [(time[member] >= t).sum() for t in ticks]
        for t, count in zip(ticks, at_risk, strict=True):
            at_risk_axes.text(
                t,
                3 - tertile,
                str(count),
                ha="center",
                va="center",
                color=colour,
                fontsize=8,
            )

    axes.set_ylim(0, 1.02)
    axes.set_xlim(0, horizon * 1.02)
    axes.set_ylabel("event-free probability")
    axes.set_title(
        f"{label} by tertile (log-rank p {_format_p(p_value, equals=True)})",
        fontsize=10,
    )
    axes.legend(fontsize=8, loc="lower left")
    axes.grid(alpha=0.3)
    at_risk_axes.set_yticks([2, 1, 0], ["T1", "T2", "T3"], fontsize=8)
    at_risk_axes.tick_params(axis="y", length=0, pad=16)
    at_risk_axes.set_ylim(-0.5, 2.5)
    at_risk_axes.set_xticks(ticks, [f"{t:g}" for t in ticks])
    at_risk_axes.set_xlabel(time_label)
    at_risk_axes.set_title("number at risk", fontsize=8, loc="left")
    for side in ("top", "right", "left"):
        at_risk_axes.spines[side].set_visible(False)
    return figure, float(p_value)


def cumulative_incidence_by_tertile(
    time: Sequence[float],
    status: Sequence[int],
    values: Sequence[float],
    *,
    cause: int,
    label: str,
    cause_label: str = "event",
    time_label: str = "time",
) -> Figure:
    """Aalen-Johansen cumulative incidence of one cause by biomarker tertile."""
    from radscl.models.competing import cumulative_incidence

    groups = tertiles(values)
    keep = groups > 0
    curves = cumulative_incidence(
        np.asarray(time, dtype=float)[keep],
        np.asarray(status).astype(int)[keep],
        cause=cause,
        groups=groups[keep],
    )

    figure = _figure(6.4, 4.2)
    axes = figure.add_subplot()
    for tertile, colour in zip((1, 2, 3), _TERTILE_COLOURS, strict=True):
        curve = curves[curves["group"] == tertile]
        axes.step(
            curve["time"],
            curve["incidence"],
            where="post",
            color=colour,
            label=f"T{tertile}",
        )
        axes.fill_between(
            curve["time"],
            curve["lower95"],
            curve["upper95"],
            step="post",
            color=colour,
            alpha=0.15,
            linewidth=0,
        )
    axes.set_xlabel(time_label)
    axes.set_ylabel(f"cumulative incidence of {cause_label}")
    axes.set_title(
        f"{cause_label} with competing events, by tertile of {label}", fontsize=10
    )
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    return figure


def forest_plot(summary: pd.DataFrame, *, title: str = "hazard ratios") -> Figure:
    """Hazard ratios with 95 % intervals on a log axis.

    Parameters
    ----------
    summary : pandas.DataFrame
        A coefficient table with ``covariate, hr, hr_lower95, hr_upper95, p``.
    title : str
        Figure title.
    """
    rows = summary.iloc[::-1]
    figure = _figure(7.5, 1.2 + 0.45 * len(rows))
    axes = figure.add_subplot()
    positions = np.arange(len(rows))
    axes.errorbar(
        rows["hr"],
        positions,
        xerr=[rows["hr"] - rows["hr_lower95"], rows["hr_upper95"] - rows["hr"]],
        fmt="s",
        color="#333333",
        capsize=3,
    )
    axes.axvline(1.0, color="#999999", linestyle="--", linewidth=1)
    axes.set_xscale("log")
    low = min(float(rows["hr_lower95"].min()), 1.0)
    high = max(float(rows["hr_upper95"].max()), 1.0)
    axes.set_xlim(low / 1.15, high * 1.15)
    candidates = np.array(
        [0.05, 0.1, 0.2, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20, 50]
    )
    axes.set_xticks(
        candidates[(candidates >= low / 1.15) & (candidates <= high * 1.15)]
    )
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set_yticks(positions, list(rows["covariate"]))
    for y, (_, row) in zip(positions, rows.iterrows(), strict=True):
        axes.annotate(
            f"{row['hr']:.2f} ({row['hr_lower95']:.2f}-{row['hr_upper95']:.2f}), "
            f"p {_format_p(row['p'], equals=True)}",
            xy=(1.02, y),
            xycoords=("axes fraction", "data"),
            va="center",
            fontsize=8,
        )
    axes.set_xlabel("hazard ratio (95 % CI)")
    axes.set_title(title, fontsize=10)
    figure.subplots_adjust(left=0.25, right=0.62)
    return figure


def auc_over_time(curves: pd.DataFrame, *, time_label: str = "time") -> Figure:
    """Cumulative/dynamic AUC of each model over follow-up.

    Parameters
    ----------
    curves : pandas.DataFrame
        A ``time`` column and one column of AUC values per model.
    """
    figure = _figure(6.4, 4.2)
    axes = figure.add_subplot()
    for name in curves.columns.drop("time"):
        axes.plot(curves["time"], curves[name], label=name, linewidth=1.5)
    axes.axhline(0.5, color="#999999", linestyle=":", linewidth=1)
    axes.set_xlabel(time_label)
    axes.set_ylabel("time-dependent AUC (cross-validated)")
    axes.set_ylim(0.4, 1.0)
    axes.legend(fontsize=7, ncol=2)
    axes.grid(alpha=0.3)
    return figure


def calibration_plot(tables: Mapping[str, pd.DataFrame], *, at_time: float) -> Figure:
    """Predicted against observed risk at ``at_time`` for each model.

    Parameters
    ----------
    tables : mapping of str to pandas.DataFrame
        Calibration tables (``predicted_risk``, ``observed_risk`` and its
        interval) by model name.
    at_time : float
        The time of the predictions.
    """
    figure = _figure(5.2, 5.0)
    axes = figure.add_subplot()
    upper = 0.05
    for name, table in tables.items():
        axes.errorbar(
            table["predicted_risk"],
            table["observed_risk"],
            yerr=[
                (table["observed_risk"] - table["observed_lower95"]).clip(lower=0),
                (table["observed_upper95"] - table["observed_risk"]).clip(lower=0),
            ],
            fmt="o-",
            markersize=4,
            capsize=2,
            label=name,
        )
        upper = max(
            upper,
            float(np.nanmax(table[["predicted_risk", "observed_upper95"]].to_numpy())),
        )
    axes.plot([0, upper], [0, upper], color="#999999", linestyle="--", linewidth=1)
    axes.set_xlabel(f"predicted risk at {at_time:g}")
    axes.set_ylabel(f"observed risk at {at_time:g} (Kaplan-Meier)")
    axes.legend(fontsize=7)
    axes.grid(alpha=0.3)
    return figure


def figure_png(figure: Figure) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def save_figure(figure: Figure, path: str | Path) -> Path:
    """Write the figure as PNG and return the path."""
    path = Path(path)
    path.write_bytes(figure_png(figure))
    logger.debug("wrote %s", path)
    return path


def _format_p(p: float, equals: bool = False) -> str:
    if not np.isfinite(p):
        return "n/a"
    if p < 0.001:
        return "< 0.001"
    return f"= {p:.3f}" if equals else f"{p:.3f}"
