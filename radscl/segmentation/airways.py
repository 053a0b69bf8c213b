"""Airway lumen segmentation: trachea seed, adaptive region growing, refinement.

:func:`segment_airways` finds the airway lumen of one scan in five steps, all
inside the bounding box of the lungs and the trachea:

1. **Seed.** The trachea of the lung segmentation when it has one; otherwise
   a search of the upper slices for a round, air-filled tube inside the body
   that runs through several slices (it need not be central, and the scan may
   start anywhere below the larynx).
2. **Adaptive region growing.** SimpleITK's connected-threshold filter grows
   from the seed with an upper threshold raised stepwise from
   :attr:`AirwayParams.start_threshold_hu`. The lumen volume grows smoothly as
   long as the airway walls hold; when one step multiplies the volume (a leak
   into the parenchyma through a thin or blurred wall), the growth stops at
   the step before and the leak is recorded as a finding.
3. **Peripheral refinement.** Around every end point of the current tree,
   a local region growing with thresholds raised from the global one recovers
   airways that the global threshold could not reach without leaking
   elsewhere. A local extension is kept only when it is small, elongated and
   did not itself explode; otherwise the next lower local threshold is kept.
4. **Lumen boundary.** Region growing at a threshold near air stops inside
   the blurred lumen edge. The boundary is moved outwards, one voxel layer at
   a time up to :attr:`AirwayParams.boundary_band_mm`, to the half-way level
   between the darkest lumen value and the brightest wall value nearby (the
   full-width-at-half-maximum edge). A voxel is only added from an inner
   neighbour, so the walls, which are brighter than that level, are never
   crossed: airway walls are not lumen.
5. **Wall.** A shell outside the lumen, as thick as the bright wall ring
   measured around it, capped by the lumen radius, so that vessel and fibrosis
   measurements can leave it out.

Tree measurements (centreline, branches, generations, calibre, tapering) are
in :mod:`radscl.segmentation.airway_tree`.

Known limits
------------
Airways whose lumen is smaller than the scanner's resolution are not found:
once blurred, a lumen of about 1 mm radius at 0.7 mm pixels with a soft kernel
is no darker than the lung around it. The segmented tree therefore ends
around the seventh or eighth generation on a thin-slice scan, and airway
volumes count only the airways that a scan can show; they are comparable
between scans of similar resolution, not absolute anatomical volumes.

Gapped (incremental) HRCT has no three-dimensional continuity: only the
trachea and main bronchi are segmented, slice by slice, and no tree is traced.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import ndimage

from radscl.errors import ParameterError
from radscl.io import QualityFinding
from radscl.segmentation import AIRWAY_LUMEN
from radscl.segmentation import AIRWAY_WALL
from radscl.segmentation import TRACHEA
from radscl.segmentation.airway_tree import AirwayTree
from radscl.segmentation.airway_tree import analyse_tree
from radscl.segmentation.lungs import LungSegmentation

logger = logging.getLogger(__name__)

INFO = logging.INFO
WARNING = logging.WARNING
ERROR = logging.ERROR


@dataclasses.dataclass(frozen=True)
class AirwayParams:
    """Settings of :func:`segment_airways`.

    Attributes
    ----------
    start_threshold_hu : float
        First upper threshold of the region growing: only near-pure air.
    threshold_step_hu : float
        Amount the threshold is raised by at every step.
    max_threshold_hu : float
        The threshold is never raised above this, leak or not.
    leak_growth_ratio : float
        A step that multiplies the lumen volume by more than this is a leak.
    leak_volume_ml : float
        A step that adds more than this volume at once is a leak too, however
        large the tree already is.
    boundary_band_mm : float
        Furthest the lumen boundary may move outwards from the grown region.
    refine_rounds : int
        Rounds of local growing around tree end points (0 switches it off).
    refine_step_hu : float
        Threshold step of the local growing.
    refine_max_rise_hu : float
        Highest local threshold above the global one.
    smooth_noise_hu : float
        Noise level (standard deviation in the tracheal air) above which the
        image is smoothed before growing; sharp kernels need it.
    """

    start_threshold_hu: float = -950.0
    threshold_step_hu: float = 10.0
    max_threshold_hu: float = -700.0
    leak_growth_ratio: float = 1.5
    leak_volume_ml: float = 60.0
    boundary_band_mm: float = 1.6
    refine_rounds: int = 3
    refine_step_hu: float = 20.0
    refine_max_rise_hu: float = 160.0
    smooth_noise_hu: float = 25.0

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> AirwayParams:
        """Build parameters from a mapping, rejecting unknown or ill-typed keys.

        Raises
        ------
        ParameterError
            Naming the first unknown key or bad value.
        """
        if values is None:
            return cls()
        if isinstance(values, AirwayParams):
            return values
        known = {field.name: field for field in dataclasses.fields(cls)}
        converted: dict[str, Any] = {}
        for key, value in values.items():
            if key not in known:
                raise ParameterError(
                    f"unknown airway parameter {key!r}; expected one of {sorted(known)}"
                )
            target = int if known[key].type == "int" else float
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ParameterError(
                    f"airway parameter {key!r} must be a number, but found {value!r}"
                )
            converted[key] = target(value)
        params = cls(**converted)
        params.validate()
        return params

    def validate(self) -> None:
        """Raise :class:`ParameterError` naming the first inconsistent value."""
        if not -1100.0 <= self.start_threshold_hu <= self.max_threshold_hu <= -400.0:
            raise ParameterError(
                "airway thresholds must satisfy -1100 <= start_threshold_hu <= "
                f"max_threshold_hu <= -400, but found {self.start_threshold_hu} "
                f"and {self.max_threshold_hu}"
            )
        for name in ("threshold_step_hu", "refine_step_hu", "leak_volume_ml"):
            if getattr(self, name) <= 0:
                raise ParameterError(
                    f"airway parameter {name!r} must be positive, but found "
                    f"{getattr(self, name)}"
                )
        if self.leak_growth_ratio <= 1.0:
            raise ParameterError(
                "airway parameter 'leak_growth_ratio' must exceed 1, but found "
                f"{self.leak_growth_ratio}"
            )
        if self.refine_rounds < 0 or self.boundary_band_mm < 0:
            raise ParameterError(
                "airway parameters 'refine_rounds' and 'boundary_band_mm' must not "
                "be negative"
            )


@dataclasses.dataclass
class AirwaySegmentation:
    """The airway lumen of one scan, its wall and its tree.

    Attributes
    ----------
    lumen : numpy.ndarray
        ``bool [z, y, x]``: all airway lumen, trachea and main bronchi included.
    wall : numpy.ndarray
        ``bool [z, y, x]``: an estimate of the airway wall, a shell around
        ``lumen`` that does not overlap it.
    spacing_mm : tuple of float
        ``(z, y, x)``; ``z`` is the slice interval.
    tree : AirwayTree or None
        Centreline, branches, generations and calibre; None when no tree could
        be traced (gapped scan, no seed).
    findings : list of QualityFinding
        Leaks stopped, a seed found by search or not at all, a gapped scan.
    threshold_hu : float
        The global region-growing threshold reached without a leak (NaN when
        nothing was grown).
    seed_source : str
        ``"lung segmentation"``, ``"image search"`` or ``"none"``.
    """

    lumen: np.ndarray
    wall: np.ndarray
    spacing_mm: tuple[float, float, float]
    tree: AirwayTree | None = None
    findings: list[QualityFinding] = dataclasses.field(default_factory=list)
    threshold_hu: float = math.nan
    seed_source: str = "none"

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel, from the slice interval."""
        return float(np.prod(self.spacing_mm)) / 1000.0

    @property
    def volume_ml(self) -> float:
        """Volume of all segmented lumen."""
        return float(np.count_nonzero(self.lumen)) * self.voxel_volume_ml


def airway_labels(
    lungs: LungSegmentation,
    airways: AirwaySegmentation,
    base: np.ndarray | None = None,
) -> np.ndarray:
    """Combine the lung labels with the airway lumen and wall.

    Lumen inside the lungs becomes :data:`~radscl.segmentation.AIRWAY_LUMEN`,
    lumen outside them :data:`~radscl.segmentation.TRACHEA` (the lung
    segmentation's own trachea label is replaced by the airway lumen), and the
    wall :data:`~radscl.segmentation.AIRWAY_WALL` where it is not lumen.

    Parameters
    ----------
    lungs : LungSegmentation
        The lungs of the scan.
    airways : AirwaySegmentation
        The airways of the same scan.
    base : numpy.ndarray, optional
        Label map to paint the airways into (a copy is returned); the lung
        labels when omitted.

    Returns
    -------
    numpy.ndarray
        ``uint8 [z, y, x]`` label map with the values of
        :data:`~radscl.segmentation.LABELS`.
    """
    if lungs.labels.shape != airways.lumen.shape:
        raise ParameterError(
            f"lung labels {lungs.labels.shape} and airway lumen "
            f"{airways.lumen.shape} must have the same shape"
        )

    labels = (lungs.labels if base is None else base).copy()
    if labels.shape != airways.lumen.shape:
        raise ParameterError(
            f"label map {labels.shape} and airway lumen {airways.lumen.shape} "
            "must have the same shape"
        )
    labels[labels == TRACHEA] = 0
    in_lung = lungs.lung_mask
    labels[airways.wall & ~airways.lumen] = AIRWAY_WALL
    labels[airways.lumen & in_lung] = AIRWAY_LUMEN
    labels[airways.lumen & ~in_lung] = TRACHEA
    return labels


def segment_airways(
    scan,
    lungs: LungSegmentation,
    params: AirwayParams | Mapping[str, Any] | None = None,
) -> AirwaySegmentation:
    """Segment the airway lumen of a chest CT and analyse its tree.

    Parameters
    ----------
    scan : radscl.io.Scan
        The scan; ``scan.hounsfield`` is ``int16 [z, y, x]``.
    lungs : LungSegmentation
        Its lungs; their trachea label, when present, seeds the growing.
    params : AirwayParams or mapping, optional
        Settings; see :class:`AirwayParams`.

    Returns
    -------
    AirwaySegmentation
        Lumen, wall, tree (None for gapped scans) and findings.

    Raises
    ------
    ParameterError
        If ``params`` has an unknown key or a bad value, or the lung labels do
        not match the scan's shape.
    """
    params = AirwayParams.from_mapping(params)
    hounsfield = scan.hounsfield
    spacing = tuple(float(s) for s in scan.spacing_mm)
    if lungs.labels.shape != hounsfield.shape:
        raise ParameterError(
            f"lung labels {lungs.labels.shape} do not match the scan's shape "
            f"{hounsfield.shape}"
        )

    findings: list[QualityFinding] = []
    lumen = np.zeros(hounsfield.shape, bool)
    wall = np.zeros(hounsfield.shape, bool)
    box = _work_box(lungs.labels, spacing)
    if box is None:
        findings.append(
            QualityFinding(
                "airway_no_seed",
                ERROR,
                "the lung segmentation is empty: there is nowhere to look for airways",
                "airway measurements are left empty",
            )
        )
        return AirwaySegmentation(lumen, wall, spacing, None, findings)

    if not scan.metadata.contiguous:
        return _segment_gapped(scan, lungs, box, params, findings)

    image = hounsfield[box]
    lung_labels = lungs.labels[box]
    seed, seed_source = _find_seed(image, lung_labels, spacing, findings)
    if seed is None:
        return AirwaySegmentation(lumen, wall, spacing, None, findings)

    noise_hu = _air_noise_hu(image, seed)
    growth_image = image
    if noise_hu > params.smooth_noise_hu:
        sigma = [0.6 / s for s in spacing]
        growth_image = ndimage.gaussian_filter(image.astype(np.float32), sigma)
        logger.debug("air noise %.0f HU: smoothing before growing", noise_hu)

    lung_mask = (lung_labels > 0) & (lung_labels != TRACHEA)
    lung_volume_ml = float(np.count_nonzero(lung_mask)) * np.prod(spacing) / 1000.0
    grown, threshold = _grow_adaptive(
        growth_image, seed, spacing, params, lung_volume_ml, findings
    )
    if grown is None:
        return AirwaySegmentation(
            lumen, wall, spacing, None, findings, seed_source=seed_source
        )

    levels: list = []
    grown = _refine_boundary(image, grown, spacing, params.boundary_band_mm, levels)
    offset = tuple(s.start for s in box)
    edges = _edge_fractions(image, grown, levels)
    tree = analyse_tree(grown, spacing, seed, offset=offset, edge_fractions=edges)
    for _ in range(params.refine_rounds if tree is not None else 0):
        added = _refine_periphery(
            image, growth_image, grown, tree, offset, spacing, threshold, params
        )
        if added == 0:
            break
        logger.debug("peripheral refinement added %d voxels", added)
        edges = _edge_fractions(image, grown, levels)
        tree = analyse_tree(grown, spacing, seed, offset=offset, edge_fractions=edges)
        if tree is None:
            break

    lumen[box] = grown
    lung_hu = float(np.median(image[lung_mask & ~grown])) if lung_mask.any() else -850.0
    wall[box] = _airway_wall(image, grown, spacing, lung_hu)
    logger.info(
        "airways: %.1f ml lumen, threshold %.0f HU, %s",
        float(np.count_nonzero(grown)) * np.prod(spacing) / 1000.0,
        threshold,
        f"{tree.branch_count} branches to generation {tree.max_generation}"
        if tree is not None
        else "no tree",
    )
    return AirwaySegmentation(
        lumen, wall, spacing, tree, findings, threshold, seed_source
    )


# --------------------------------------------------------------------------
# Working box and seed

#: How far above the lung apices the trachea is followed, so that the airway
#: volume does not depend on how far into the neck a scan reaches.
TRACHEA_ABOVE_APEX_MM = 30.0
#: Margin of the working box around the lungs.
BOX_MARGIN_MM = 5.0
#: Length of trachea, from its top, used as the seed.
SEED_LENGTH_MM = 20.0
#: Least difference between the darkest and brightest values near a lumen
#: voxel for its edge to be moved: below it, there is no wall to find.
MIN_EDGE_CONTRAST_HU = 150.0
#: The wall level of a lumen edge voxel is the brightest value within this
#: distance: the wall lies just outside the lumen, while a vessel further away
#: must not raise the level (which would pull the wall ring into the lumen).
WALL_SEARCH_MM = 1.0
#: Least wall level: airway wall is soft tissue, and a wall ring darker than
#: this is a thin wall diluted by blur and partial volume.
WALL_FLOOR_HU = -400.0


def _work_box(labels: np.ndarray, spacing: tuple[float, float, float]):
    """Bounding box of the lungs and trachea, reaching up to above the apices."""
    lung_box = _bounding_box((labels > 0) & (labels != TRACHEA))
    if lung_box is None:
        return None
    anything = _bounding_box(labels > 0)

    margin = [int(math.ceil(BOX_MARGIN_MM / s)) for s in spacing]
    above = int(math.ceil(TRACHEA_ABOVE_APEX_MM / spacing[0]))
    z = slice(
        max(lung_box[0].start - margin[0], 0),
        min(lung_box[0].stop + above, labels.shape[0]),
    )
    y = slice(
        max(anything[1].start - margin[1], 0),
        min(anything[1].stop + margin[1], labels.shape[1]),
    )
    x = slice(
        max(anything[2].start - margin[2], 0),
        min(anything[2].stop + margin[2], labels.shape[2]),
    )
    return (z, y, x)


def _bounding_box(mask: np.ndarray) -> tuple[slice, slice, slice] | None:
    """Index slices of the smallest box holding ``mask``, or None if it is empty."""
    box = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        occupied = np.flatnonzero(mask.any(axis=others))
        if occupied.size == 0:
            return None
        box.append(slice(int(occupied[0]), int(occupied[-1]) + 1))
    return tuple(box)


def _find_seed(
    image: np.ndarray,
    lung_labels: np.ndarray,
    spacing: tuple[float, float, float],
    findings: list[QualityFinding],
    whole: bool = False,
) -> tuple[np.ndarray | None, str]:
    """The air inside the trachea, and where it came from.

    Only the top :data:`SEED_LENGTH_MM` is kept unless ``whole`` is set.
    """
    trachea = lung_labels == TRACHEA
    length_mm = math.inf if whole else SEED_LENGTH_MM
    if trachea.any():
        seed = _top_of(trachea & (image <= -900), spacing, length_mm)
        if seed is not None:
            return seed, "lung segmentation"
        findings.append(
            QualityFinding(
                "airway_seed_search",
                WARNING,
                "the trachea of the lung segmentation holds no air below -900 HU",
                "the trachea was searched for in the image instead",
            )
        )

    lung_mask = (lung_labels > 0) & ~trachea
    seed = _search_trachea(image, lung_mask, spacing)
    if seed is None:
        findings.append(
            QualityFinding(
                "airway_no_seed",
                ERROR,
                "no trachea found: no round air-filled tube runs through the upper "
                "slices between the lungs",
                "airway measurements are left empty; check that the scan covers the "
                "upper chest and is in Hounsfield units",
            )
        )
        return None, "none"
    if not trachea.any():
        findings.append(
            QualityFinding(
                "airway_seed_search",
                INFO,
                "the lung segmentation has no trachea; the trachea was found by "
                "searching the image",
                "",
            )
        )
    return _top_of(seed, spacing, length_mm), "image search"


def _top_of(
    region: np.ndarray, spacing: tuple[float, float, float], length_mm: float
) -> np.ndarray | None:
    """The upper ``length_mm`` of the largest connected part of ``region``."""
    box = _bounding_box(region)
    if box is None:
        return None
    labelled, count = ndimage.label(region[box])
    sizes = np.bincount(labelled.ravel())[1:]
    largest = labelled == (int(np.argmax(sizes)) + 1)
    slices = np.flatnonzero(largest.any(axis=(1, 2)))
    length = max(int(round(min(length_mm, 1e6) / spacing[0])), 1)
    top = slices[-1] + 1
    largest[: max(top - length, 0)] = False
    seed = np.zeros(region.shape, bool)
    seed[box] = largest
    return seed


def _search_trachea(
    image: np.ndarray, lung_mask: np.ndarray, spacing: tuple[float, float, float]
) -> np.ndarray | None:
    """Find the trachea as a round air-filled tube in the upper slices.

    The search runs on a grid of about 2 mm, in the slices above the lowest
    third of the lungs. Every slice's air outside the lungs is split into
    two-dimensional pieces; the pieces of tracheal size (radius 3.5 to 16 mm)
    that are nearly round and do not touch the edge of the box (air outside
    the body does) are stacked, and the stack running through the most
    slices, at least 20 mm, is the trachea. Nothing assumes the trachea is
    central or reaches the top of the scan.
    """
    lung_slices = np.flatnonzero(lung_mask.any(axis=(1, 2)))
    if lung_slices.size == 0:
        return None
    lowest = int(lung_slices[0] + (lung_slices[-1] - lung_slices[0]) // 3)
    step = [max(1, int(round(SEARCH_GRID_MM / s))) for s in spacing]
    coarse_spacing = [s * k for s, k in zip(spacing, step, strict=True)]
    grid = (
        slice(lowest, None, step[0]),
        slice(None, None, step[1]),
        slice(None, None, step[2]),
    )
    coarse = ndimage.median_filter(image[grid], size=(1, 3, 3))
    air = (coarse <= -900) & ~lung_mask[grid]

    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    pieces, count = ndimage.label(air, structure=in_plane)
    if count == 0:
        return None
    index = np.arange(1, count + 1)
    area_mm2 = (
        ndimage.sum_labels(air, pieces, index) * coarse_spacing[1] * coarse_spacing[2]
    )
    yy, xx = np.indices(pieces.shape[1:], dtype=np.float32)
    yy = np.broadcast_to(yy * np.float32(coarse_spacing[1]), pieces.shape)
    xx = np.broadcast_to(xx * np.float32(coarse_spacing[2]), pieces.shape)
    # A pixel's own extent adds s^2 / 12 to the variance along each axis.
    var_y = ndimage.variance(yy, pieces, index) + coarse_spacing[1] ** 2 / 12.0
    var_x = ndimage.variance(xx, pieces, index) + coarse_spacing[2] ** 2 / 12.0
    cov = ndimage.mean(yy * xx, pieces, index) - ndimage.mean(
        yy, pieces, index
    ) * ndimage.mean(xx, pieces, index)
    # Principal second moments; a filled ellipse of area A has l1 * l2 = (A / 4 pi)^2.
    half_sum = 0.5 * (var_y + var_x)
    half_gap = np.sqrt(0.25 * (var_y - var_x) ** 2 + cov**2)
    major = half_sum + half_gap
    minor = np.maximum(half_sum - half_gap, 1e-6)
    roundness = area_mm2 / (4.0 * np.pi * np.sqrt(major * minor))
    elongation = np.sqrt(major / minor)
    edge = np.zeros(pieces.shape, bool)
    edge[:, 0, :] = edge[:, -1, :] = edge[:, :, 0] = edge[:, :, -1] = True
    touches_edge = ndimage.maximum(edge, pieces, index).astype(bool)
    tubular = (
        (area_mm2 >= 40.0)
        & (area_mm2 <= 800.0)
        & (roundness >= 0.75)
        & (elongation <= 2.2)
        & ~touches_edge
    )
    if not tubular.any():
        return None

    keep = np.zeros(count + 1, bool)
    keep[1:] = tubular
    stacks, _ = ndimage.label(keep[pieces])
    extents = [
        (found[0].stop - found[0].start if found is not None else 0)
        for found in ndimage.find_objects(stacks)
    ]
    best = int(np.argmax(extents)) + 1
    if extents[best - 1] * coarse_spacing[0] < 20.0:
        return None

    # Back on the full grid: the air of the chosen stack, a coarse voxel wide.
    chosen = ndimage.binary_dilation(stacks == best, iterations=1)
    for axis, k in enumerate(step):
        chosen = np.repeat(chosen, k, axis=axis)
    seed = np.zeros(image.shape, bool)
    upper = seed[lowest:]
    upper[...] = chosen[: upper.shape[0], : upper.shape[1], : upper.shape[2]]
    seed &= (image <= -900) & ~lung_mask
    labelled, count = ndimage.label(seed)
    if count == 0:
        return None
    sizes = np.bincount(labelled.ravel())[1:]
    return labelled == int(np.argmax(sizes)) + 1


#: Grid spacing of the trachea search.
SEARCH_GRID_MM = 2.0


def _air_noise_hu(image: np.ndarray, seed: np.ndarray) -> float:
    """Noise level in the tracheal air: robust standard deviation of its HU."""
    box = _bounding_box(seed)
    if box is None:
        return 0.0
    region = seed[box]
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    interior = ndimage.binary_erosion(region, in_plane, iterations=2)
    values = image[box][interior if np.count_nonzero(interior) >= 50 else region]
    deviation = np.abs(values - np.median(values))
    return float(1.4826 * np.median(deviation))


# --------------------------------------------------------------------------
# Region growing


class _Grower:
    """Connected-threshold growing from fixed seeds at any upper threshold."""

    def __init__(self, image: np.ndarray, seed: np.ndarray, voxel_ml: float) -> None:
        import SimpleITK as sitk

        self._sitk_image = sitk.GetImageFromArray(np.ascontiguousarray(image))
        points = np.argwhere(seed)
        self._points = points
        self._values = image[tuple(points.T)]
        self._voxel_ml = voxel_ml

    def __call__(self, threshold: float) -> tuple[np.ndarray | None, float]:
        """The grown region at ``threshold`` and its volume in ml."""
        import SimpleITK as sitk

        chosen = self._points[self._values <= threshold]
        if chosen.shape[0] == 0:
            return None, 0.0
        if chosen.shape[0] > 400:
            chosen = chosen[np.linspace(0, chosen.shape[0] - 1, 400).astype(int)]
        seeds = [(int(x), int(y), int(z)) for z, y, x in chosen]
        grown = sitk.ConnectedThreshold(
            self._sitk_image, seedList=seeds, lower=-32768.0, upper=float(threshold)
        )
        region = sitk.GetArrayFromImage(grown).view(bool)
        return region, float(np.count_nonzero(region)) * self._voxel_ml


def _grow_adaptive(
    image: np.ndarray,
    seed: np.ndarray,
    spacing: tuple[float, float, float],
    params: AirwayParams,
    lung_volume_ml: float,
    findings: list[QualityFinding],
) -> tuple[np.ndarray | None, float]:
    """Connected-threshold growing with a rising threshold until the volume jumps.

    The threshold rises in steps of four times :attr:`AirwayParams.threshold_step_hu`
    until a step leaks; the last safe threshold is then refined by halving the
    step down to :attr:`AirwayParams.threshold_step_hu`. A step leaks when it
    multiplies the volume by more than :attr:`AirwayParams.leak_growth_ratio`,
    adds more than :attr:`AirwayParams.leak_volume_ml`, or exceeds a ceiling
    no airway tree reaches (8 % of the lung volume, at least 400 ml).
    """
    voxel_ml = float(np.prod(spacing)) / 1000.0
    ceiling_ml = max(400.0, 0.08 * lung_volume_ml)
    grow = _Grower(image, seed, voxel_ml)

    threshold = params.start_threshold_hu
    grown, volume_ml = grow(threshold)
    while (grown is None or volume_ml > ceiling_ml) and threshold > -1024.0:
        threshold -= params.threshold_step_hu
        grown, volume_ml = grow(threshold)
    if threshold != params.start_threshold_hu and grown is not None:
        findings.append(
            QualityFinding(
                "airway_leak",
                WARNING,
                f"growing at {params.start_threshold_hu:.0f} HU filled more than "
                f"{ceiling_ml:.0f} ml (airways open onto low-density lung)",
                f"the threshold was lowered to {threshold:.0f} HU",
            )
        )
    if grown is None or volume_ml == 0 or volume_ml > ceiling_ml:
        findings.append(
            QualityFinding(
                "airway_no_seed",
                ERROR,
                "region growing from the trachea found no airway tree",
                "airway measurements are left empty",
            )
        )
        return None, math.nan

    def leaks(trial_ml: float, base_ml: float) -> bool:
        return (
            trial_ml > params.leak_growth_ratio * base_ml
            or trial_ml - base_ml > params.leak_volume_ml
            or trial_ml > ceiling_ml
        )

    step = 4.0 * params.threshold_step_hu
    leak: tuple[float, float] | None = None
    while step >= params.threshold_step_hu:
        trial = min(threshold + step, params.max_threshold_hu)
        if trial <= threshold:
            break
        if leak is not None and trial >= leak[0]:
            # Known to leak already: growing again would only repeat the flood.
            step /= 2.0
            continue
        candidate, trial_ml = grow(trial)
        if leaks(trial_ml, volume_ml):
            leak = (trial, trial_ml)
            step /= 2.0
            continue
        grown, volume_ml, threshold = candidate, trial_ml, trial
        if leak is not None:
            step /= 2.0

    if leak is not None:
        findings.append(
            QualityFinding(
                "airway_leak",
                INFO,
                f"growing at {leak[0]:.0f} HU leaked into the lung "
                f"({volume_ml:.0f} ml became {leak[1]:.0f} ml)",
                f"the airway lumen was grown at {threshold:.0f} HU",
            )
        )
    logger.debug("global growing stopped at %.0f HU with %.1f ml", threshold, volume_ml)
    return grown, threshold


def _refine_periphery(
    image: np.ndarray,
    growth_image: np.ndarray,
    lumen: np.ndarray,
    tree: AirwayTree,
    offset: tuple[int, ...],
    spacing: tuple[float, float, float],
    threshold: float,
    params: AirwayParams,
) -> int:
    """Extend the tree at its end points by local adaptive region growing.

    In a box around each terminal branch's end, the threshold is raised in
    steps of :attr:`AirwayParams.refine_step_hu` above the global one; the
    part connected to the end point is kept at the highest threshold whose
    extension is still airway-like: no larger than a tube a little wider
    than the branch running through the box, and elongated rather than a
    blob. The extension's edge is then moved out like the rest of the lumen
    (:func:`_refine_boundary`). ``lumen`` is updated in place; returns the
    number of voxels added.
    """
    terminal = tree.branches[
        tree.branches["terminal"] & (tree.branches["generation"] >= 1)
    ]
    if terminal.empty:
        return 0
    half = [int(math.ceil(REFINE_BOX_MM / s)) for s in spacing]
    voxel_mm3 = float(np.prod(spacing))
    added_total = 0

    for row in terminal.itertuples(index=False):
        tip = (
            row.distal_z - offset[0],
            row.distal_y - offset[1],
            row.distal_x - offset[2],
        )
        box = tuple(
            slice(max(c - h, 0), min(c + h + 1, n))
            for c, h, n in zip(tip, half, lumen.shape, strict=True)
        )
        local_tip = tuple(c - b.start for c, b in zip(tip, box, strict=True))
        local_image = growth_image[box]
        local_lumen = lumen[box]
        if not local_lumen[local_tip]:
            continue
        radius = 0.5 * float(row.lumen_diameter_mm)
        box_length = 2.0 * REFINE_BOX_MM
        largest_mm3 = math.pi * (1.5 * radius + 1.0) ** 2 * box_length

        accepted = None
        rise = params.refine_step_hu
        while rise <= params.refine_max_rise_hu + 1e-6:
            grown = _connected_local(
                local_image <= threshold + rise, local_lumen, local_tip
            )
            extension = grown & ~local_lumen
            count = int(np.count_nonzero(extension))
            if count and (
                count * voxel_mm3 > largest_mm3 or not _elongated(extension, spacing)
            ):
                break
            if count >= MIN_EXTENSION_VOXELS:
                accepted = extension
            rise += params.refine_step_hu
        if accepted is not None:
            widened = _refine_boundary(
                image[box], accepted, spacing, params.boundary_band_mm
            )
            widened &= ~local_lumen
            local_lumen |= widened
            added_total += int(np.count_nonzero(widened))
    return added_total


#: Half-size of the box searched around a tree end point.
REFINE_BOX_MM = 10.0
#: Smallest extension worth keeping: a few voxels are noise, not an airway.
MIN_EXTENSION_VOXELS = 10


def _connected_local(
    candidate: np.ndarray, lumen: np.ndarray, tip: tuple[int, ...]
) -> np.ndarray:
    """The face-connected part of ``candidate | lumen`` holding ``tip``."""
    labelled, _ = ndimage.label(candidate | lumen)
    return labelled == labelled[tip]


def _elongated(region: np.ndarray, spacing, min_ratio: float = 2.5) -> bool:
    """Whether a region is tube-like: its longest axis well beyond the others.

    Regions of a few voxels are too small to judge and pass.
    """
    points = np.argwhere(region) * np.asarray(spacing)
    if points.shape[0] < 10:
        return True
    eigenvalues = np.linalg.eigvalsh(np.cov(points.T))
    return bool(eigenvalues[-1] >= min_ratio**2 * max(eigenvalues[-2], 1e-6))


def _refine_boundary(
    image: np.ndarray,
    lumen: np.ndarray,
    spacing: tuple[float, float, float],
    band_mm: float,
    levels: list | None = None,
) -> np.ndarray:
    """Move the lumen edge out to half-way between the lumen and wall levels.

    Each pass adds the outer neighbours (six-connected) of the lumen that are
    darker than the local half-way level and not darker than the lumen voxel
    they are reached from: from lumen to wall the values rise, and a fall
    means the wall has been crossed into the lung behind it. Where the local
    contrast is under :data:`MIN_EDGE_CONTRAST_HU` there is no edge to find.
    The wall level is at least :data:`WALL_FLOOR_HU`. When ``levels`` is a
    list, the box and the darkest and brightest values are appended to it.
    """
    if not lumen.any():
        return lumen
    box = _grown_box(lumen, spacing, band_mm + 2.0)
    sub = image[box].astype(np.float32)
    inner = lumen[box]

    reach = [2 * int(math.ceil((band_mm + 1.0) / s)) + 1 for s in spacing]
    darkest = ndimage.minimum_filter(sub, size=reach)
    wall_reach = [2 * int(math.ceil(WALL_SEARCH_MM / s - 0.01)) + 1 for s in spacing]
    brightest = np.minimum(ndimage.maximum_filter(sub, size=wall_reach), 100.0)
    brightest = np.maximum(brightest, WALL_FLOOR_HU)
    level = 0.5 * (darkest + brightest)
    level[brightest - darkest < MIN_EDGE_CONTRAST_HU] = -np.inf
    if levels is not None:
        levels.extend([box, darkest, brightest])

    result = inner.copy()
    passes_in_plane = int(math.ceil(band_mm / min(spacing[1:])))
    passes_across = int(band_mm // spacing[0])
    for step in range(passes_in_plane):
        structure = ndimage.generate_binary_structure(3, 1)
        if step >= passes_across:
            structure[0] = structure[2] = False
        reached_from = ndimage.grey_erosion(
            np.where(result, sub, np.float32(np.inf)), footprint=structure
        )
        shell = ~result & np.isfinite(reached_from)
        added = shell & (sub <= level) & (sub >= reached_from)
        if not added.any():
            break
        result |= added
    lumen = lumen.copy()
    lumen[box] = result
    return lumen


def _edge_fractions(
    image: np.ndarray, lumen: np.ndarray, levels: list
) -> tuple[np.ndarray, np.ndarray]:
    """Lumen fraction of the voxels on either side of the lumen edge.

    A voxel between the lumen level (darkest nearby) and the wall level
    (brightest nearby) holds lumen in proportion to how close its value is to
    the lumen level. The voxels just inside the edge and just outside it
    carry these fractions; summed with the whole voxels inside, they give a
    lumen area finer than a voxel (used for calibre, not for volumes, which
    count the voxels of the label map).

    Returns
    -------
    tuple of numpy.ndarray
        ``(n, 3)`` voxel indices in ``lumen``'s frame and their fractions.
    """
    box, darkest, brightest = levels
    inner = lumen[box]
    outer_edge = ndimage.binary_dilation(inner) & ~inner
    inner_edge = inner & ~ndimage.binary_erosion(inner, border_value=1)
    points = np.argwhere(outer_edge | inner_edge)
    index = tuple(points.T)
    contrast = brightest[index] - darkest[index]
    fraction = (brightest[index] - image[box][index]) / np.maximum(contrast, 1.0)
    fraction = np.clip(fraction, 0.0, 1.0)
    flat = contrast < MIN_EDGE_CONTRAST_HU
    fraction[flat] = inner[index][flat]
    return points + np.array([b.start for b in box]), fraction.astype(np.float32)


def _grown_box(mask: np.ndarray, spacing, margin_mm: float):
    found = ndimage.find_objects(mask.astype(np.uint8))[0]
    margin = [int(math.ceil(margin_mm / s)) for s in spacing]
    return tuple(
        slice(max(f.start - m, 0), min(f.stop + m, n))
        for f, m, n in zip(found, margin, mask.shape, strict=True)
    )


def _airway_wall(
    image: np.ndarray,
    lumen: np.ndarray,
    spacing: tuple[float, float, float],
    lung_hu: float,
) -> np.ndarray:
    """A shell around the lumen where the image stays as bright as an airway wall.

    The shell grows outwards from the lumen, one voxel layer at a time up to
    :data:`WALL_MAX_MM`, through voxels brighter than half-way between the
    nearby wall peak (the brightest value within :data:`WALL_SEARCH_MM`) and
    the median lung; it stops where the image falls back to lung. The cap
    keeps it from running on into an abutting vessel or the mediastinum.
    """
    wall = np.zeros_like(lumen)
    if not lumen.any():
        return wall
    box = _grown_box(lumen, spacing, WALL_MAX_MM + 1.0)
    sub = image[box]
    inner = lumen[box]
    wall_reach = [2 * int(math.ceil(WALL_SEARCH_MM / s - 0.01)) + 1 for s in spacing]
    peak = np.minimum(ndimage.maximum_filter(sub, size=wall_reach), 100).astype(
        np.float32
    )
    level = 0.5 * (peak + np.float32(lung_hu))

    reached = inner.copy()
    passes_in_plane = int(math.ceil(WALL_MAX_MM / min(spacing[1:])))
    passes_across = int(WALL_MAX_MM // spacing[0])
    for step in range(passes_in_plane):
        structure = ndimage.generate_binary_structure(3, 1)
        if step >= passes_across:
            structure[0] = structure[2] = False
        shell = ndimage.binary_dilation(reached, structure) & ~reached
        added = shell & (sub >= level)
        if not added.any():
            break
        reached |= added
    wall[box] = reached & ~inner
    return wall


#: Thickest airway wall the shell may reach.
WALL_MAX_MM = 2.0


def _segment_gapped(
    scan,
    lungs: LungSegmentation,
    box: tuple[slice, slice, slice],
    params: AirwayParams,
    findings: list[QualityFinding],
) -> AirwaySegmentation:
    """Trachea and main bronchi of a gapped scan, slice by slice, and no tree.

    Slices 10 mm apart do not connect an airway from one slice to the next,
    so there is nothing to grow along: each slice keeps the air that overlaps
    the trachea (of the lung segmentation, or found by search), with its edge
    and wall found in-plane as on contiguous scans.
    """
    spacing = tuple(float(s) for s in scan.spacing_mm)
    lumen = np.zeros(scan.hounsfield.shape, bool)
    wall = np.zeros(scan.hounsfield.shape, bool)
    findings.append(
        QualityFinding(
            "airway_gapped",
            WARNING,
            f"gapped HRCT (slices every {spacing[0]:g} mm): the airway tree cannot be "
            "traced",
            "only the trachea and main bronchi are segmented, slice by slice; airway "
            "volumes and tree measurements are left empty",
        )
    )
    image = scan.hounsfield[box]
    lung_labels = lungs.labels[box]
    seed, seed_source = _find_seed(image, lung_labels, spacing, findings, whole=True)
    if seed is None:
        return AirwaySegmentation(lumen, wall, spacing, None, findings)

    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    pieces, _ = ndimage.label(image <= params.start_threshold_hu, structure=in_plane)
    touched = np.unique(pieces[seed & (pieces > 0)])
    grown = np.isin(pieces, touched[touched > 0])
    grown = _refine_boundary(image, grown, spacing, params.boundary_band_mm)
    lung_mask = (lung_labels > 0) & (lung_labels != TRACHEA)
    lung_hu = float(np.median(image[lung_mask & ~grown])) if lung_mask.any() else -850.0
    lumen[box] = grown
    wall[box] = _airway_wall(image, grown, spacing, lung_hu)
    return AirwaySegmentation(
        lumen, wall, spacing, None, findings, params.start_threshold_hu, seed_source
    )
