"""Pictures of feature distributions by batch, before and after harmonisation."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from radscl.errors import DataError

logger = logging.getLogger(__name__)

#: Batch labels longer than this are shortened on the axis.
_LABEL_CHARACTERS = 40


def select_features(diagnostics: pd.DataFrame, n_features: int = 6) -> list[str]:
    """Pick the features with the strongest batch effect before harmonisation.

    Parameters
    ----------
    diagnostics : pandas.DataFrame
        Output of :func:`radscl.harmonize.compare_batch_effects`.
    n_features : int
        How many features to pick.

    Returns
    -------
    list of str
        Feature names, smallest Kruskal–Wallis p-value before harmonisation
        first; features without a test come last.
    """
    ranked = diagnostics.sort_values(
        "kruskal_p_before", na_position="last", kind="stable"
    )
    return [str(f) for f in ranked["feature"].head(n_features)]


def plot_batch_distributions(
    before: pd.DataFrame,
    after: pd.DataFrame,
    batch: str,
    features: Sequence[str],
    path: str | Path,
    *,
    diagnostics: pd.DataFrame | None = None,
) -> Path:
    """Draw each feature's distribution per batch before and after harmonisation.

    One row per feature, with box plots by batch before (left) and after
    (right) on a shared axis, so a batch shift shows as misaligned boxes on the
    left that line up on the right. With ``diagnostics`` each panel is titled
    with the Kruskal–Wallis p-value of batch differences.

    Parameters
    ----------
    before, after : pandas.DataFrame
        The table before and after harmonisation, with the same rows.
    batch : str
        Batch column.
    features : sequence of str
        Features to draw (six or so keep the picture readable).
    path : str or pathlib.Path
        PNG file to write.
    diagnostics : pandas.DataFrame, optional
        Output of :func:`radscl.harmonize.compare_batch_effects`.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    DataError
        If a column is missing or no feature is given.
    """
    features = list(features)
    if not features:
        raise DataError("no feature to plot")
    for name in [batch, *features]:
        for table, label in ((before, "before"), (after, "after")):
            if name not in table.columns:
                raise DataError(
                    f"column {name!r} not in the table {label} harmonisation"
                )
    p_values = {}
    if diagnostics is not None:
        p_values = diagnostics.set_index("feature")[
            ["kruskal_p_before", "kruskal_p_after"]
        ]

    batches = sorted(before[batch].astype(str).unique())
    labels = [_short(b) for b in batches]
    height = 1.2 + len(features) * (0.6 + 0.28 * len(batches))
    figure = Figure(figsize=(11, height))
    axes = figure.subplots(len(features), 2, squeeze=False, sharey=True)
    # Fixed margins: a constrained layout takes seconds with thousands of points.
    figure.subplots_adjust(
        left=0.27,
        right=0.985,
        top=1 - 0.8 / height,
        bottom=0.35 / height,
        wspace=0.04,
        hspace=0.55 / (0.6 + 0.28 * len(batches)),
    )

    for row, name in enumerate(features):
        limits = _limits(before[name], after[name])
        for column, (table, stage) in enumerate(((before, "before"), (after, "after"))):
            axis = axes[row, column]
            groups = [
                table.loc[table[batch].astype(str) == b, name]
                .dropna()
                .to_numpy(dtype=float)
                for b in batches
            ]
            positions = np.arange(len(batches))
            drawn = [i for i, g in enumerate(groups) if g.size]
            axis.boxplot(
                [groups[i] for i in drawn],
                positions=positions[drawn],
                orientation="horizontal",
                widths=0.6,
                showfliers=False,
                manage_ticks=False,
                patch_artist=True,
                boxprops={"facecolor": "#dbe7f3" if stage == "before" else "#dcefdc"},
                medianprops={"color": "black"},
            )
            points = np.concatenate([groups[i] for i in drawn]) if drawn else []
            heights = (
                np.concatenate(
                    [i + np.linspace(-0.18, 0.18, groups[i].size) for i in drawn]
                )
                if drawn
                else []
            )
            axis.plot(points, heights, ".", color="0.35", markersize=2, alpha=0.5)
            if limits is not None:
                axis.set_xlim(limits)
            axis.tick_params(axis="x", labelsize=7)
            axis.set_title(_title(name, stage, p_values), fontsize=8)
            axis.grid(axis="x", color="0.9")

    # The rows share one batch axis; label it on the left column only.
    for row in range(len(features)):
        axes[row, 0].set_yticks(np.arange(len(batches)), labels, fontsize=7)
        axes[row, 1].tick_params(axis="y", labelleft=False)
    axes[0, 0].set_ylim(len(batches) - 0.4, -0.6)
    figure.suptitle(
        f"Distributions by batch ({batch}) before and after ComBat", fontsize=10
    )
    path = Path(path)
    figure.savefig(path, dpi=110)
    logger.debug("wrote %s", path)
    return path


def _short(label: str) -> str:
    if len(label) <= _LABEL_CHARACTERS:
        return label
    return label[: _LABEL_CHARACTERS - 1] + "…"


def _limits(before: pd.Series, after: pd.Series) -> tuple[float, float] | None:
    values = pd.concat([before, after]).to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    low, high = np.percentile(values, [0.5, 99.5])
    margin = 0.05 * (high - low) if high > low else 1.0
    return float(low - margin), float(high + margin)


def _title(name: str, stage: str, p_values: pd.DataFrame | dict) -> str:
    if isinstance(p_values, pd.DataFrame) and name in p_values.index:
        p_value = p_values.loc[name, f"kruskal_p_{stage}"]
        if np.isfinite(p_value):
            return f"{name}, {stage} (Kruskal–Wallis p = {p_value:.2g})"
    return f"{name}, {stage}"
