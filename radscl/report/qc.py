"""QC picture of a segmentation: axial levels and a coronal view in lung window.

One PNG per scan that a person can check at a glance: six axial levels
spread over the lungs' height and a coronal view through the lungs, in a lung
window (width 1500, level -600 HU), with a coloured outline for every label of
:data:`radscl.segmentation.LABELS` and, optionally, translucent colours for a
pattern map (ground glass, reticulation, honeycombing...). Pictures are drawn
in millimetres, so gapped HRCT shows its slices as the bands they stand for.

The picture carries no patient identifier: only the title passed in, a
legend, slice positions relative to the lungs and the volumes a caller puts
in the title.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from radscl.errors import ParameterError
from radscl.segmentation import LABELS

logger = logging.getLogger(__name__)

#: Lung window (low, high) in HU: width 1500, level -600.
LUNG_WINDOW_HU = (-1350.0, 150.0)

#: Outline colour of each label of :data:`radscl.segmentation.LABELS`.
LABEL_COLOURS: dict[int, str] = {
    1: "#35c4ff",  # right lung
    2: "#ffb000",  # left lung
    3: "#ff3df2",  # trachea and main bronchi
    4: "#3dff6e",  # airway lumen
    5: "#ffffff",  # airway wall
    6: "#ff3d3d",  # vessel
}

#: Fill colours of pattern-map values, taken in order of the values present.
PATTERN_COLOURS = (
    "#ffe14d",
    "#ff7b00",
    "#e0004d",
    "#7d5cff",
    "#00d1c1",
    "#8cff00",
    "#ff66cc",
    "#a0a0a0",
)

_PANEL_PX = 320
_AXIAL_LEVELS = (0.1, 0.27, 0.43, 0.58, 0.73, 0.88)
_PATTERN_ALPHA = 0.45


def qc_picture(
    scan,
    label_map: np.ndarray,
    path: str | Path,
    patterns: np.ndarray | None = None,
    title: str = "radscl segmentation",
    *,
    pattern_names: Mapping[int, str] | None = None,
    spacing_mm: tuple[float, float, float] | None = None,
    slice_positions_mm: np.ndarray | None = None,
) -> Path:
    """Draw axial levels and a coronal view with label outlines to a PNG.

    Parameters
    ----------
    scan : Scan or numpy.ndarray
        The scan (its Hounsfield array, spacing and slice positions are used)
        or a Hounsfield array ``[z, y, x]``, in which case ``spacing_mm`` is
        needed.
    label_map : numpy.ndarray
        Integer ``[z, y, x]`` map with the values of
        :data:`radscl.segmentation.LABELS`; each label is outlined in its
        colour (:data:`LABEL_COLOURS`).
    path : str or path-like
        Output PNG.
    patterns : numpy.ndarray, optional
        Integer ``[z, y, x]`` pattern map (0 = none), shown as translucent
        fills.
    title : str
        Figure title. Keep patient identifiers out of it.
    pattern_names : mapping, optional
        Legend names of pattern values.
    spacing_mm : tuple of float, optional
        ``(z, y, x)`` spacing when ``scan`` is an array.
    slice_positions_mm : numpy.ndarray, optional
        Slice positions when ``scan`` is an array (gapped scans).

    Returns
    -------
    pathlib.Path
        The PNG written.

    Raises
    ------
    ParameterError
        When the arrays disagree in shape or the path is not a ``.png``.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    hounsfield, spacing, positions = _unpack_scan(scan, spacing_mm, slice_positions_mm)
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ParameterError(f'Argument "path" must end in .png, got {path.name}')
    label_map = np.asarray(label_map)
    if label_map.shape != hounsfield.shape:
        raise ParameterError(
            f"label_map has shape {label_map.shape}, but the scan has "
            f"{hounsfield.shape}"
        )
    if patterns is not None:
        patterns = np.asarray(patterns)
        if patterns.shape != hounsfield.shape:
            raise ParameterError(
                f"patterns has shape {patterns.shape}, but the scan has "
                f"{hounsfield.shape}"
            )

    levels = _axial_levels(label_map)
    pattern_colours = _pattern_palette(patterns)
    box = _display_box(label_map, hounsfield)
    show_coronal = hounsfield.shape[0] >= 3

    axial = [
        _axial_panel(hounsfield, label_map, patterns, k, box, spacing) for k in levels
    ]
    panel_aspect = axial[0][0].shape[0] / axial[0][0].shape[1]
    panel_in = 3.6
    widths = [1.0, 1.0, 1.0]
    coronal = None
    if show_coronal:
        coronal = _coronal_panel(hounsfield, label_map, patterns, box, spacing, positions)
        extent = coronal[3]
        coronal_aspect = (extent[3] - extent[2]) / (extent[1] - extent[0])
        # The coronal view spans both rows; its width keeps its aspect.
        widths.append(max(0.6, min(2.0, 2.0 * panel_aspect / coronal_aspect)))
    figure = Figure(
        figsize=(panel_in * sum(widths) + 0.2, 2.0 * panel_in * panel_aspect + 1.0),
        facecolor="black",
    )
    grid = figure.add_gridspec(
        2,
        len(widths),
        width_ratios=widths,
        left=0.01,
        right=0.99,
        bottom=0.07,
        top=0.9,
        wspace=0.02,
        hspace=0.1,
    )
    for index, (k, (image, labels, pattern)) in enumerate(zip(levels, axial, strict=True)):
        row, column = divmod(index, 3)
        axes = figure.add_subplot(grid[row, column])
        _draw_panel(axes, image, labels, pattern, pattern_colours)
        height_mm = positions[k] - positions[levels[0]]
        axes.set_title(f"axial {height_mm:+.0f} mm", color="white", fontsize=9)
    if coronal is not None:
        axes = figure.add_subplot(grid[:, 3])
        image, labels, pattern, extent = coronal
        _draw_panel(axes, image, labels, pattern, pattern_colours, extent)
        axes.set_title("coronal", color="white", fontsize=9)

    handles = [
        Patch(facecolor="none", edgecolor=LABEL_COLOURS[value], label=LABELS[value])
        for value in sorted(LABEL_COLOURS)
        if (label_map == value).any()
    ]
    names = dict(pattern_names or {})
    handles += [
        Patch(
            facecolor=colour,
            alpha=_PATTERN_ALPHA,
            label=names.get(value, f"pattern {value}"),
        )
        for value, colour in pattern_colours.items()
    ]
    if handles:
        figure.legend(
            handles=handles,
            loc="lower center",
            ncol=min(len(handles), 7),
            frameon=False,
            labelcolor="white",
            fontsize=8,
        )
    figure.suptitle(title, color="white", fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90, facecolor="black")
    return path


def _unpack_scan(scan, spacing_mm, slice_positions_mm):
    if isinstance(scan, np.ndarray):
        if spacing_mm is None:
            raise ParameterError(
                'Argument "spacing_mm" is needed when "scan" is an array'
            )
        hounsfield = scan
        spacing = tuple(float(s) for s in spacing_mm)
        positions = slice_positions_mm
    else:
        hounsfield = scan.hounsfield
        spacing = tuple(float(s) for s in scan.spacing_mm)
        positions = scan.slice_positions_mm
    if hounsfield.ndim != 3:
        raise ParameterError(
            f"the scan must be a [z, y, x] volume, but has shape {hounsfield.shape}"
        )
    if positions is None or len(positions) != hounsfield.shape[0]:
        positions = np.arange(hounsfield.shape[0]) * spacing[0]
    return hounsfield, spacing, np.asarray(positions, dtype=float)


def _axial_levels(label_map: np.ndarray) -> list[int]:
    """Six slices spread over the labelled height (or the whole scan)."""
    present = np.flatnonzero(label_map.reshape(label_map.shape[0], -1).any(axis=1))
    if present.size == 0:
        present = np.arange(label_map.shape[0])
    low, high = int(present[0]), int(present[-1])
    return [int(round(low + f * (high - low))) for f in _AXIAL_LEVELS]


def _display_box(label_map: np.ndarray, hounsfield: np.ndarray) -> tuple[slice, slice]:
    """In-plane box around the labels (or the body), with a margin."""
    footprint = label_map.any(axis=0)
    if not footprint.any():
        footprint = (hounsfield > -500).any(axis=0)
    if not footprint.any():
        return slice(0, hounsfield.shape[1]), slice(0, hounsfield.shape[2])
    rows = np.flatnonzero(footprint.any(axis=1))
    cols = np.flatnonzero(footprint.any(axis=0))
    margin_y = max(4, (rows[-1] - rows[0]) // 12)
    margin_x = max(4, (cols[-1] - cols[0]) // 12)
    return (
        slice(max(rows[0] - margin_y, 0), min(rows[-1] + margin_y + 1, footprint.shape[0])),
        slice(max(cols[0] - margin_x, 0), min(cols[-1] + margin_x + 1, footprint.shape[1])),
    )


def _sample(n_source: int, length_mm: float, pixel_mm: float) -> np.ndarray:
    """Nearest source index of every display pixel along one axis."""
    n_display = max(1, int(round(length_mm / pixel_mm)))
    centres = (np.arange(n_display) + 0.5) * (n_source / n_display)
    return np.minimum(centres.astype(int), n_source - 1)


def _axial_panel(hounsfield, label_map, patterns, k, box, spacing):
    rows, cols = box
    height_mm = (rows.stop - rows.start) * spacing[1]
    width_mm = (cols.stop - cols.start) * spacing[2]
    pixel_mm = max(height_mm, width_mm) / _PANEL_PX
    iy = rows.start + _sample(rows.stop - rows.start, height_mm, pixel_mm)
    ix = cols.start + _sample(cols.stop - cols.start, width_mm, pixel_mm)
    grid = np.ix_(iy, ix)
    image = hounsfield[k][grid]
    labels = label_map[k][grid]
    pattern = None if patterns is None else patterns[k][grid]
    return image, labels, pattern


def _coronal_panel(hounsfield, label_map, patterns, box, spacing, positions):
    """Coronal slice through the middle of the lungs, in millimetres."""
    rows, cols = box
    lungs = (label_map == 1) | (label_map == 2)
    profile = lungs.sum(axis=(0, 2)) if lungs.any() else (hounsfield > -500).sum(axis=(0, 2))
    y = int(np.searchsorted(np.cumsum(profile), 0.5 * profile.sum()))
    y = min(max(y, 0), hounsfield.shape[1] - 1)

    # Each slice stands for the interval half way to its neighbours.
    if len(positions) > 1:
        middles = 0.5 * (positions[1:] + positions[:-1])
        lower = np.concatenate([[positions[0] - (middles[0] - positions[0])], middles])
        upper = np.concatenate([middles, [positions[-1] + (positions[-1] - middles[-1])]])
    else:
        lower, upper = positions - 0.5 * spacing[0], positions + 0.5 * spacing[0]
    bottom, top = float(lower[0]), float(upper[-1])
    width_mm = (cols.stop - cols.start) * spacing[2]
    pixel_mm = max(top - bottom, width_mm) / (2 * _PANEL_PX)
    n_rows = max(1, int(round((top - bottom) / pixel_mm)))
    heights = top - (np.arange(n_rows) + 0.5) * (top - bottom) / n_rows
    iz = np.clip(np.searchsorted(upper, heights), 0, len(positions) - 1)
    ix = cols.start + _sample(cols.stop - cols.start, width_mm, pixel_mm)
    grid = np.ix_(iz, ix)
    image = hounsfield[:, y, :][grid]
    labels = label_map[:, y, :][grid]
    pattern = None if patterns is None else patterns[:, y, :][grid]
    extent = (0.0, width_mm, 0.0, top - bottom)
    return image, labels, pattern, extent


def _outline_rgba(labels: np.ndarray) -> np.ndarray:
    """RGBA image with each label's border, two pixels wide, in its colour."""
    from matplotlib.colors import to_rgba

    padded = np.pad(labels, 2, mode="edge")
    centre = padded[2:-2, 2:-2]
    n_rows, n_cols = labels.shape
    border = np.zeros(labels.shape, dtype=bool)
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1), (-2, 0), (2, 0), (0, -2), (0, 2)):
        shifted = padded[2 + dy : 2 + dy + n_rows, 2 + dx : 2 + dx + n_cols]
        border |= shifted != centre
    border &= labels > 0
    rgba = np.zeros((*labels.shape, 4), dtype=np.float32)
    for value, colour in LABEL_COLOURS.items():
        rgba[border & (labels == value)] = to_rgba(colour)
    return rgba


def _pattern_palette(patterns: np.ndarray | None) -> dict[int, str]:
    if patterns is None:
        return {}
    values = [int(v) for v in np.unique(patterns) if v != 0]
    return {v: PATTERN_COLOURS[i % len(PATTERN_COLOURS)] for i, v in enumerate(values)}


def _draw_panel(axes, image, labels, pattern, pattern_colours, extent=None):
    from matplotlib.colors import to_rgba

    low, high = LUNG_WINDOW_HU
    options = {"interpolation": "nearest", "extent": extent}
    axes.imshow(image, cmap="gray", vmin=low, vmax=high, **options)
    if pattern is not None and pattern_colours:
        fill = np.zeros((*pattern.shape, 4), dtype=np.float32)
        for value, colour in pattern_colours.items():
            red, green, blue, _ = to_rgba(colour)
            fill[pattern == value] = (red, green, blue, _PATTERN_ALPHA)
        axes.imshow(fill, **options)
    axes.imshow(_outline_rgba(labels), **options)
    axes.set_axis_off()
