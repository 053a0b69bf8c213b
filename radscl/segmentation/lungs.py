"""Lung segmentation that keeps dense fibrosis: body, airway seed and two lungs.

:func:`segment_lungs` is classical image processing, no trained network. Its
steps, each on the scan's own grid:

1. **Body.** Voxels above ``body_threshold_hu`` (-500 HU) are filled slice by
   slice (air reaching the edge of a slice is outside air); the body is the
   largest 3D component once a few millimetres have been eroded in-plane, so
   the CT table, blankets and clothing that touch it only thinly fall away.
2. **Air threshold.** Unless fixed by ``air_threshold_hu``, the threshold is
   half way between the lung and soft-tissue peaks of the body's histogram
   (about -410 HU for normal lung), which puts the mask edge where a voxel is
   half lung, as a partial-volume boundary should be. It is kept within
   -600 to -300 HU.
3. **Trachea and main bronchi.** The highest round, central, air-filled
   cross-section near the top of the scan is the trachea; it is followed
   downwards slice by slice while each cross-section stays airway-sized and
   does not balloon into lung, through the carina and down the main bronchi
   for ``bronchus_depth_mm``. Whatever of this lies outside the final lungs is
   label 3, the seed of the airway tree. A scan that starts below the larynx
   or a deviated trachea is fine; a scan starting below the carina has no
   seed and says so.
4. **Lungs.** The air left inside the body forms 3D components; the largest
   is a lung, and so is any other holding at least ``second_lung_min_share``
   of it (bowel gas and an air-filled oesophagus are far smaller). A
   component lying on both sides of the midline (lungs meeting at the
   anterior or posterior junction) is cut where it is narrowest: it is eroded
   in-plane until its two halves separate and then flooded back from them by
   a watershed on the distance map, which draws the cut along the junction.
5. **Everything inside the pleura.** Each lung is closed with a ball of
   ``closing_radius_mm`` (not crossing into the other lung, the trachea, bone
   or outside the body) and its holes are filled slice by slice. This brings
   back vessels, bronchial walls, reticulation, the walls of honeycomb cysts
   and dense subpleural or juxtapleural disease that a threshold drops.
6. **Full resolution.** Steps 1-5 run on blocks of about
   ``working_voxel_mm`` (so a 512 x 512 scan is handled as 256 x 256); the
   lung edge is then redrawn on the original voxels by the air threshold
   within one block of the block-level edge, and holes are filled again at
   full resolution.

Gapped HRCT and scans of one or two slices are handled slice by slice:
closing, splitting and distances stay within each slice, and volumes come
from the slice positions, never from the slice thickness.

Known limitations
-----------------
Dense consolidation forming a continuous band along the chest wall, thicker
than the closing radius, is only recovered where it is patchy: the outer edge
of a uniformly dense lung cannot be told from the chest wall by density alone.
Collapsed or entirely consolidated lobes are lost in the same way. A tumour or
mass that reaches the mediastinum or the hilum (a central or paramediastinal
mass several centimetres wide) is left out where it meets them, for the same
reason; masses surrounded by lung are kept. Main bronchi are followed only
while they stay separate from lung air at the working resolution, so in thick
or noisy slices label 3 may stop at the carina. The split between the lungs
assumes the trachea (or else the body centre) marks the midline.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
from scipy import ndimage

from radscl.errors import ParameterError
from radscl.errors import SegmentationError
from radscl.io import ERROR
from radscl.io import INFO
from radscl.io import WARNING
from radscl.io import QualityFinding
from radscl.io import Scan
from radscl.segmentation import LEFT_LUNG
from radscl.segmentation import RIGHT_LUNG
from radscl.segmentation import TRACHEA
from radscl.segmentation._morphology import BlockGrid
from radscl.segmentation._morphology import border_connected_2d
from radscl.segmentation._morphology import bounding_box
from radscl.segmentation._morphology import close_mm
from radscl.segmentation._morphology import depth_mm
from radscl.segmentation._morphology import distance_outside_mm
from radscl.segmentation._morphology import label_components
from radscl.segmentation._morphology import largest_component
from radscl.segmentation._morphology import watershed_from_markers

logger = logging.getLogger(__name__)

#: Plausible adult lung volume on a chest CT, in ml. Small lungs of advanced
#: fibrosis reach the lower end; hyperinflated emphysema the upper.
PLAUSIBLE_LUNG_VOLUME_ML = (1500.0, 9000.0)

#: Plausible right/left lung volume ratio; it is about 1.1 to 1.2 in health.
PLAUSIBLE_RIGHT_LEFT_RATIO = (0.6, 1.8)

_IN_PLANE = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE[1] = ndimage.generate_binary_structure(2, 1)
_FACES = ndimage.generate_binary_structure(3, 1)

# Thickness eroded to detach the table, blankets and clothing from the body.
_BODY_NECK_MM = 4.0
# Voxels of the closing brighter than this are bone and never lung.
_BONE_HU = 300.0
# How far below the top of the scan the trachea is looked for.
_TRACHEA_SEARCH_MM = 80.0
# Lung is where the air fraction smoothed over this many mm reaches this share.
_AIR_NEARBY_SIGMA_MM = 2.0
_AIR_NEARBY_SHARE = 0.25
# Airway with lung filling half of a Gaussian of this size around it is
# intrapulmonary.
_HILUM_SIGMA_MM = 6.0
# Holes of a lung slice this wide that join extrapulmonary tissue stay open.
_BIG_HOLE_MM = 6.0
# Lung whose interior is less aerated than this nearby is dense lung.
_DENSE_SHARE = 0.75
_DENSE_SIGMA_MM = 3.0
# The local edge threshold never exceeds this: fat is -100 HU.
_MAX_EDGE_HU = -200.0
# Depth inside the block-level lung edge redrawn by the air threshold.
_REDRAW_MM = 2.0
# Main bronchi are followed through air at least this far from any wall.
_BRONCHUS_CORE_MM = 2.0
_BRONCHUS_PATH_MM = 45.0
# More central airway than this (trachea below the search start, main and
# lobar bronchi) means the bronchial growth leaked into lung.
_MAX_CENTRAL_AIRWAY_ML = 60.0
# Half-width of the in-plane window the next airway cross-section is sought in.
_AIRWAY_WINDOW_MM = 60.0
# A cross-section may grow this much from one slice to the next and still be
# airway; more means the airway has opened into lung.
_AIRWAY_GROWTH = 2.5


@dataclasses.dataclass(frozen=True)
class LungParams:
    """Settings of :func:`segment_lungs`.

    Attributes
    ----------
    air_threshold_hu : float, optional
        Lung/tissue threshold; chosen from the histogram when omitted.
    body_threshold_hu : float
        Voxels above this are body (or table).
    closing_radius_mm : float
        Radius of the ball closing each lung: dense regions at the lung edge
        narrower than about twice this are brought into the lung.
    working_voxel_mm : float
        Target voxel size of the block grid most steps run on.
    second_lung_min_share : float
        An air component is a lung when it holds at least this share of the
        largest one.
    trachea_area_mm2 : tuple of float
        Smallest and largest cross-section of the trachea and main bronchi.
    bronchus_depth_mm : float
        How far below the carina the main bronchi are followed.
    """

    air_threshold_hu: float | None = None
    body_threshold_hu: float = -500.0
    closing_radius_mm: float = 4.0
    working_voxel_mm: float = 1.6
    second_lung_min_share: float = 0.1
    trachea_area_mm2: tuple[float, float] = (30.0, 900.0)
    bronchus_depth_mm: float = 50.0

    def validate(self) -> None:
        """Raise :class:`ParameterError` naming the first out-of-range field."""
        if self.air_threshold_hu is not None and not (
            -1000.0 < self.air_threshold_hu < 0.0
        ):
            raise ParameterError(
                "air_threshold_hu must lie between -1000 and 0 HU, but found "
                f"{self.air_threshold_hu}"
            )
        if not -1000.0 < self.body_threshold_hu < 0.0:
            raise ParameterError(
                "body_threshold_hu must lie between -1000 and 0 HU, but found "
                f"{self.body_threshold_hu}"
            )
        if not 0.0 <= self.closing_radius_mm <= 30.0:
            raise ParameterError(
                "closing_radius_mm must be in [0, 30], but found "
                f"{self.closing_radius_mm}"
            )
        if not 0.3 <= self.working_voxel_mm <= 5.0:
            raise ParameterError(
                "working_voxel_mm must be in [0.3, 5], but found "
                f"{self.working_voxel_mm}"
            )
        if not 0.0 < self.second_lung_min_share < 1.0:
            raise ParameterError(
                "second_lung_min_share must be in (0, 1), but found "
                f"{self.second_lung_min_share}"
            )
        low, high = self.trachea_area_mm2
        if not 0.0 < low < high:
            raise ParameterError(
                "trachea_area_mm2 must be two increasing positive areas, but found "
                f"{self.trachea_area_mm2}"
            )
        if self.bronchus_depth_mm < 0.0:
            raise ParameterError(
                f"bronchus_depth_mm must be >= 0, but found {self.bronchus_depth_mm}"
            )


@dataclasses.dataclass
class LungSegmentation:
    """The lungs of one scan.

    Attributes
    ----------
    labels : numpy.ndarray
        ``uint8 [z, y, x]``: 1 right lung, 2 left lung, 3 trachea and main
        bronchi (outside the pleural boundary); 0 elsewhere. The lungs include
        everything inside the pleural boundary: intrapulmonary airways and
        vessels, dense fibrosis and honeycombing.
    spacing_mm : tuple of float
        ``(z, y, x)``; ``z`` is the slice interval.
    findings : list of QualityFinding
        Doubts about the result (lungs touching the field of view, implausible
        volumes or left/right ratio), reported with the features.
    body_mask : numpy.ndarray, optional
        ``bool [z, y, x]`` body, without table and outside air.
    air_threshold_hu : float, optional
        The lung/tissue threshold that was used.
    slice_positions_mm : numpy.ndarray, optional
        Position of every slice; when given, volumes weight each slice by the
        distance half way to its neighbours (gapped or uneven series).
    """

    labels: np.ndarray
    spacing_mm: tuple[float, float, float]
    findings: list[QualityFinding] = dataclasses.field(default_factory=list)
    body_mask: np.ndarray | None = None
    air_threshold_hu: float | None = None
    slice_positions_mm: np.ndarray | None = None

    @property
    def lung_mask(self) -> np.ndarray:
        """Both lungs, ``bool [z, y, x]``."""
        return (self.labels == RIGHT_LUNG) | (self.labels == LEFT_LUNG)

    @property
    def trachea_mask(self) -> np.ndarray:
        """Trachea and main bronchi lumen outside the lungs, the airway seed."""
        return self.labels == TRACHEA

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel, from the slice interval."""
        return float(np.prod(self.spacing_mm)) / 1000.0

    def slice_weights_mm(self) -> np.ndarray:
        """Thickness each slice stands for, in mm.

        Half the distance to each neighbouring slice position (the full
        distance to the only neighbour at either end); the slice interval
        when positions are unknown.
        """
        n = self.labels.shape[0]
        positions = self.slice_positions_mm
        if positions is None or len(positions) != n or n < 2:
            return np.full(n, float(self.spacing_mm[0]))
        positions = np.asarray(positions, dtype=float)
        gaps = np.abs(np.diff(positions))
        weights = np.empty(n)
        weights[0] = gaps[0]
        weights[-1] = gaps[-1]
        weights[1:-1] = 0.5 * (gaps[:-1] + gaps[1:])
        return weights

    def volume_ml(self, mask: np.ndarray) -> float:
        """Volume of a ``[z, y, x]`` mask on this grid, from slice positions."""
        per_slice = mask.reshape(mask.shape[0], -1).sum(axis=1)
        area_ml = self.spacing_mm[1] * self.spacing_mm[2] / 1000.0
        return float(np.dot(per_slice, self.slice_weights_mm()) * area_ml)

    def volumes_ml(self) -> dict[str, float]:
        """``lung_volume_ml``, ``lung_left_volume_ml`` and ``lung_right_volume_ml``."""
        right = self.volume_ml(self.labels == RIGHT_LUNG)
        left = self.volume_ml(self.labels == LEFT_LUNG)
        return {
            "lung_volume_ml": right + left,
            "lung_left_volume_ml": left,
            "lung_right_volume_ml": right,
        }


def segment_lungs(scan: Scan, params: LungParams | None = None) -> LungSegmentation:
    """Segment the body, the trachea and main bronchi, and the two lungs.

    Parameters
    ----------
    scan : Scan
        A chest CT in Hounsfield units (see :mod:`radscl.io`).
    params : LungParams, optional
        Settings; the defaults suit thin, thick and gapped adult chest CT.

    Returns
    -------
    LungSegmentation
        Label map (1 right lung, 2 left lung, 3 trachea and main bronchi),
        the body mask, the threshold used and quality findings.

    Raises
    ------
    SegmentationError
        When the scan holds no body or no air-filled lung.
    ParameterError
        When a setting is out of range.
    """
    params = LungParams() if params is None else params
    params.validate()
    hounsfield = _checked_hounsfield(scan)
    spacing = tuple(float(s) for s in scan.spacing_mm)
    positions = _slice_positions(scan)
    planar = (not scan.metadata.contiguous) or hounsfield.shape[0] < 3

    factors = _block_factors(spacing, params.working_voxel_mm, planar)
    grid = BlockGrid(hounsfield.shape, factors)
    coarse_spacing = grid.coarse_spacing(spacing)
    coarse_hu = grid.mean(hounsfield)
    body = _body_mask(coarse_hu, params.body_threshold_hu, coarse_spacing)
    if not body.any():
        raise SegmentationError(
            f"{scan.source}: no body found (nothing above "
            f"{params.body_threshold_hu:g} HU); is this a CT in Hounsfield units?"
        )
    lung_peak_hu, tissue_hu = _histogram_peaks(coarse_hu, body)
    threshold = params.air_threshold_hu
    if threshold is None:
        threshold = float(np.clip(0.5 * (lung_peak_hu + tissue_hu), -600.0, -300.0))
    logger.debug("air threshold %.0f HU, block factors %s", threshold, factors)

    # Everything from here on works inside the body's bounding box.
    box = bounding_box(body, 1)
    fine_box = tuple(
        slice(b.start * f, min(b.stop * f, n))
        for b, f, n in zip(box, factors, hounsfield.shape, strict=True)
    )
    sub_grid = BlockGrid(tuple(s.stop - s.start for s in fine_box), factors)
    fine_air = hounsfield[fine_box] < threshold
    body = body[box]
    coarse_hu = coarse_hu[box]
    fine_air &= sub_grid.upsample(body)

    # Bronchial walls are resolved only on the original grid: track there.
    trachea_fine, trachea_x = _track_trachea(
        fine_air, spacing, positions[fine_box[0]], params
    )
    if not planar:
        trachea_fine = _grow_main_bronchi(fine_air, trachea_fine, spacing, params)
    trachea = sub_grid.mean(trachea_fine) > 0
    if trachea_x is None:
        midline_x = _body_centre_x(body)
    else:
        midline_x = trachea_x / factors[2]
    air_fraction = sub_grid.mean(fine_air & ~trachea_fine)
    air_nearby = _air_nearby(air_fraction, coarse_spacing)
    lungs, split_findings = _identify_lungs(
        (air_nearby >= _AIR_NEARBY_SHARE) & body & ~trachea,
        coarse_spacing,
        midline_x,
        params,
        scan.source,
    )
    trachea = _hand_intrapulmonary_airway(lungs, trachea, coarse_spacing, midline_x)
    trachea_fine &= sub_grid.upsample(trachea)
    allowed = body & ~trachea & (coarse_hu < _BONE_HU)
    lungs = _close_lungs(
        lungs, allowed, coarse_spacing, planar, params.closing_radius_mm
    )
    dense, edge_hu = _local_density(
        air_fraction, coarse_hu, lungs, coarse_spacing, threshold, tissue_hu
    )
    keep_open = _extrapulmonary_holes(lungs, coarse_spacing)
    fine_labels = _full_resolution(
        hounsfield[fine_box],
        fine_air,
        lungs,
        dense,
        edge_hu,
        keep_open,
        trachea_fine,
        sub_grid,
        spacing,
        planar,
    )

    labels = np.zeros(hounsfield.shape, dtype=np.uint8)
    labels[fine_box] = fine_labels
    body_mask = np.zeros(hounsfield.shape, dtype=bool)
    body_mask[fine_box] = sub_grid.upsample(body)
    result = LungSegmentation(
        labels=labels,
        spacing_mm=spacing,
        body_mask=body_mask,
        air_threshold_hu=float(threshold),
        slice_positions_mm=positions,
    )
    result.findings = split_findings + _quality_findings(
        result, trachea_found=trachea_x is not None
    )
    for finding in result.findings:
        logger.log(finding.severity, "%s: %s", finding.code, finding.message)
    return result


def _checked_hounsfield(scan: Scan) -> np.ndarray:
    hounsfield = np.asarray(scan.hounsfield)
    if hounsfield.ndim != 3 or min(hounsfield.shape) < 1:
        raise SegmentationError(
            f"{scan.source}: expected a [z, y, x] volume, but found shape "
            f"{hounsfield.shape}"
        )
    if min(hounsfield.shape[1:]) < 16:
        raise SegmentationError(
            f"{scan.source}: slices of {hounsfield.shape[1]} x {hounsfield.shape[2]} "
            "pixels are too small for a chest CT"
        )
    if len(scan.spacing_mm) != 3 or min(scan.spacing_mm) <= 0:
        raise SegmentationError(
            f"{scan.source}: spacing must be three positive values, but found "
            f"{scan.spacing_mm}"
        )
    return hounsfield


def _slice_positions(scan: Scan) -> np.ndarray:
    n = scan.hounsfield.shape[0]
    positions = scan.slice_positions_mm
    if positions is not None and len(positions) == n:
        return np.asarray(positions, dtype=float)
    return np.arange(n, dtype=float) * float(scan.spacing_mm[0])


def _block_factors(
    spacing: tuple[float, float, float], working_mm: float, planar: bool
) -> tuple[int, int, int]:
    factors = [max(1, int(round(working_mm / s))) for s in spacing]
    if planar:
        factors[0] = 1
    return tuple(factors)


def _block_positions(positions: np.ndarray, factor: int) -> np.ndarray:
    starts = np.arange(0, len(positions), factor)
    return np.add.reduceat(positions, starts) / np.diff(
        np.append(starts, len(positions))
    )


def _body_mask(
    coarse_hu: np.ndarray, threshold_hu: float, spacing: tuple[float, float, float]
) -> np.ndarray:
    """Body without outside air, table and clothing, on the block grid."""
    tissue = coarse_hu > threshold_hu
    filled = ~border_connected_2d(~tissue)
    steps = max(1, int(round(_BODY_NECK_MM / min(spacing[1:]))))
    core = ndimage.binary_erosion(filled, structure=_IN_PLANE, iterations=steps)
    core = largest_component(core)
    if not core.any():
        return largest_component(filled)
    grown = ndimage.binary_dilation(core, structure=_IN_PLANE, iterations=steps)
    return grown & filled


def _histogram_peaks(coarse_hu: np.ndarray, body: np.ndarray) -> tuple[float, float]:
    """Lung and soft-tissue peaks of the body's histogram, in HU.

    The lung peak is sought between -1000 and -600 HU and the soft-tissue
    peak between -200 and 200 HU; -860 and 40 HU stand in for a missing one.
    """
    values = coarse_hu[body]
    counts, edges = np.histogram(values, bins=140, range=(-1100.0, 300.0))
    counts = ndimage.uniform_filter1d(counts.astype(float), 5)
    centres = 0.5 * (edges[:-1] + edges[1:])
    peaks = []
    for (low, high), default in (((-1000.0, -600.0), -860.0), ((-200.0, 200.0), 40.0)):
        inside = (centres >= low) & (centres <= high)
        if counts[inside].sum() == 0:
            peaks.append(default)
        else:
            peaks.append(float(centres[inside][np.argmax(counts[inside])]))
    return peaks[0], peaks[1]


def _body_centre_x(body: np.ndarray) -> float:
    profile = body.sum(axis=(0, 1)).astype(float)
    if profile.sum() == 0:
        return 0.5 * (body.shape[2] - 1)
    return float(np.dot(profile, np.arange(body.shape[2])) / profile.sum())


# --------------------------------------------------------------------------
# Trachea and main bronchi


@dataclasses.dataclass
class _Section:
    """One slice's 2D components, their areas and whether they reach the border."""

    labels: np.ndarray
    areas: np.ndarray
    cut: np.ndarray

    @classmethod
    def of(cls, plane: np.ndarray, cut_at_border: bool = False) -> _Section:
        labels, count = ndimage.label(plane)
        areas = np.bincount(labels.ravel(), minlength=count + 1)
        cut = np.zeros(count + 1, dtype=bool)
        if cut_at_border:
            edges = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
            cut[edges] = True
            cut[0] = False
        return cls(labels, areas, cut)


def _track_trachea(
    air: np.ndarray,
    spacing: tuple[float, float, float],
    positions: np.ndarray,
    params: LungParams,
) -> tuple[np.ndarray, float | None]:
    """Trachea and main bronchi lumen on the original grid, and the midline ``x``.

    ``air`` is the air inside the body at full resolution, where bronchial
    walls still separate the lumen from lung air. Returns an empty mask and
    ``None`` when no trachea is found.
    """
    found = np.zeros(air.shape, dtype=bool)
    pixel_mm2 = spacing[1] * spacing[2]
    smallest = params.trachea_area_mm2[0] / pixel_mm2
    largest = params.trachea_area_mm2[1] / pixel_mm2
    seed_slice, seed = _trachea_seed(air, spacing, positions, smallest, largest)
    if seed is None:
        return found, None

    found[seed_slice] = seed
    midline_x = float(np.nonzero(seed)[1].mean())
    # Oblique bronchi move between slices; thick slices let them move more.
    reach_px = max(1, int(math.ceil(max(2.0, 0.5 * spacing[0]) / min(spacing[1:]))))
    margin = [int(math.ceil(_AIRWAY_WINDOW_MM / s)) for s in spacing[1:]]
    carina_mm = None
    for k in range(seed_slice - 1, -1, -1):
        if (
            carina_mm is not None
            and carina_mm - positions[k] > params.bronchus_depth_mm
        ):
            break
        window = bounding_box(found[k + 1], margin)
        previous = _Section.of(found[k + 1][window])
        section = _Section.of(air[k][window], cut_at_border=True)
        near = ndimage.binary_dilation(previous.labels > 0, iterations=reach_px)
        accepted = np.zeros(previous.labels.shape, dtype=bool)
        branches = 0
        for label in np.unique(section.labels[near]):
            if label == 0 or section.cut[label]:
                continue
            component = section.labels == label
            area = section.areas[label]
            touching = ndimage.binary_dilation(component, iterations=reach_px)
            parents = np.unique(previous.labels[touching])
            parent_area = previous.areas[parents[parents > 0]].sum()
            if area > largest or area > _AIRWAY_GROWTH * parent_area + 4:
                continue
            accepted |= component
            if area >= smallest:
                branches += 1
        if not accepted.any():
            break
        if carina_mm is None and branches >= 2:
            carina_mm = positions[k]
        elif carina_mm is None:
            midline_x = float(np.nonzero(accepted)[1].mean() + window[1].start)
        found[k][window] = accepted
    logger.debug(
        "trachea: %d voxels from slice %d, carina %s",
        int(found.sum()),
        seed_slice,
        "not reached" if carina_mm is None else f"at {carina_mm:.0f} mm",
    )
    return found, midline_x


def _trachea_seed(
    air: np.ndarray,
    spacing: tuple[float, float, float],
    positions: np.ndarray,
    smallest: float,
    largest: float,
) -> tuple[int, np.ndarray | None]:
    """The topmost round, central, airway-sized air cross-section.

    ``air`` covers the body's bounding box. Central means within 12 % of the
    body width (at least 20 mm) of the middle of the box, and in its front
    four fifths; a trachea pushed further aside (a large goitre) is not found.
    """
    top = positions[-1]
    for k in range(air.shape[0] - 1, -1, -1):
        if top - positions[k] > _TRACHEA_SEARCH_MM:
            break
        if not air[k].any():
            continue
        section = _Section.of(air[k], cut_at_border=True)
        centre_x = 0.5 * (air.shape[2] - 1)
        width_mm = air.shape[2] * spacing[2]
        tolerance_mm = max(20.0, 0.12 * width_mm)
        candidates = []
        for index, window in enumerate(ndimage.find_objects(section.labels), start=1):
            area = section.areas[index]
            if window is None or section.cut[index] or not smallest <= area <= largest:
                continue
            height_mm = (window[0].stop - window[0].start) * spacing[1]
            breadth_mm = (window[1].stop - window[1].start) * spacing[2]
            if max(height_mm, breadth_mm) > 2.5 * min(height_mm, breadth_mm):
                continue
            if area * spacing[1] * spacing[2] < 0.4 * height_mm * breadth_mm:
                continue
            cy = 0.5 * (window[0].start + window[0].stop - 1)
            cx = 0.5 * (window[1].start + window[1].stop - 1)
            if abs(cx - centre_x) * spacing[2] > tolerance_mm:
                continue
            if not 0.05 * air.shape[1] <= cy <= 0.8 * air.shape[1]:
                continue
            candidates.append((area, index))
        if candidates:
            biggest = max(area for area, _ in candidates)
            seed = np.isin(
                section.labels,
                [index for area, index in candidates if area >= 0.5 * biggest],
            )
            return k, seed
    return -1, None


# --------------------------------------------------------------------------
# Lungs


def _identify_lungs(
    parenchyma: np.ndarray,
    spacing: tuple[float, float, float],
    midline_x: float,
    params: LungParams,
    source: str,
) -> tuple[np.ndarray, list[QualityFinding]]:
    """Right (1) and left (2) lung on the block grid."""
    labels, sizes = label_components(parenchyma)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    if len(sizes) < 2 or sizes[1] * voxel_ml < 1.0:
        raise SegmentationError(f"{source}: no air-filled lung found inside the body")
    kept = [
        index
        for index in range(1, min(len(sizes), 4))
        if sizes[index] >= params.second_lung_min_share * sizes[1]
    ]

    lungs = np.zeros(parenchyma.shape, dtype=np.uint8)
    findings: list[QualityFinding] = []
    for index in kept:
        component = labels == index
        right_share = _right_share(component, midline_x)
        if min(right_share, 1.0 - right_share) >= 0.15:
            sides, finding = _split_left_right(component, spacing, midline_x)
            lungs[sides > 0] = sides[sides > 0]
            if finding is not None:
                findings.append(finding)
        else:
            lungs[component] = RIGHT_LUNG if right_share > 0.5 else LEFT_LUNG
    return lungs, findings


def _air_nearby(
    fraction: np.ndarray, spacing: tuple[float, float, float]
) -> np.ndarray:
    """Lung air fraction smoothed over a few millimetres, on the block grid.

    Honeycombing, reticulation and dense ground glass keep air within a few
    millimetres (cysts, lumens, the spaces between reticular lines); chest
    wall, diaphragm and mediastinum have none. Smoothing the air fraction
    over :data:`_AIR_NEARBY_SIGMA_MM` and keeping what reaches
    :data:`_AIR_NEARBY_SHARE` brings dense lung in with its air while a
    normal lung edge moves out by under 1.5 mm, which the full-resolution
    step takes back.
    """
    # In-plane only: across slices a blur would spread lung air over the
    # flat top of the diaphragm dome and into the liver.
    sigma = [0.0, _AIR_NEARBY_SIGMA_MM / spacing[1], _AIR_NEARBY_SIGMA_MM / spacing[2]]
    smoothed = ndimage.gaussian_filter(fraction, sigma, mode="nearest", truncate=3.0)
    return smoothed


def _grow_main_bronchi(
    air: np.ndarray,
    trachea: np.ndarray,
    spacing: tuple[float, float, float],
    params: LungParams,
) -> np.ndarray:
    """Extend the tracked trachea through the carina into the main bronchi.

    Airway lumen is followed in 3D from the lowest tracked cross-section,
    only through air at least :data:`_BRONCHUS_CORE_MM` from any wall (main
    and lobar bronchi pass, the partial-volume leaks of small airways into
    lung air are too thin to) and for at most :data:`_BRONCHUS_PATH_MM`
    along the airway (where bronchi are wide and their walls resolved).
    Gives up, keeping the trachea alone, when the result is larger than the
    central airways can be.
    """
    slices = np.flatnonzero(trachea.any(axis=(1, 2)))
    if slices.size == 0:
        return trachea
    bottom = int(slices[0])
    dz = spacing[0]
    below = int(math.ceil(params.bronchus_depth_mm / dz))
    above = int(math.ceil(20.0 / dz))
    z0, z1 = max(bottom - below, 0), min(bottom + above + 1, air.shape[0])
    rows, cols = np.nonzero(trachea[bottom])
    cy, cx = int(rows.mean()), int(cols.mean())
    ry = int(math.ceil(_AIRWAY_WINDOW_MM / spacing[1]))
    rx = int(math.ceil(_AIRWAY_WINDOW_MM / spacing[2]))
    box = (
        slice(z0, z1),
        slice(max(cy - ry, 0), min(cy + ry + 1, air.shape[1])),
        slice(max(cx - rx, 0), min(cx + rx + 1, air.shape[2])),
    )
    lumen = np.pad(air[box], 1)
    core = depth_mm(lumen, spacing) > _BRONCHUS_CORE_MM
    seeds = np.pad(trachea[box], 1) & core
    if not seeds.any():
        return trachea
    steps = int(math.ceil(_BRONCHUS_PATH_MM / min(spacing)))
    grown = ndimage.binary_dilation(
        seeds, structure=_FACES, iterations=steps, mask=core
    )
    grown = (distance_outside_mm(grown, spacing) <= _BRONCHUS_CORE_MM + 0.5) & lumen
    grown_ml = grown.sum() * float(np.prod(spacing)) / 1000.0
    if grown_ml > _MAX_CENTRAL_AIRWAY_ML:
        logger.debug("main bronchi not grown: %.0f ml looks like a leak", grown_ml)
        return trachea
    result = trachea.copy()
    result[box] |= grown[1:-1, 1:-1, 1:-1]
    return result


def _right_share(mask: np.ndarray, midline_x: float) -> float:
    """Share of the mask on the patient's right (smaller ``x``) of the midline."""
    profile = mask.sum(axis=(0, 1))
    total = profile.sum()
    if total == 0:
        return 0.0
    right = profile[: int(math.floor(midline_x)) + 1].sum()
    return float(right / total)


def _split_left_right(
    component: np.ndarray, spacing: tuple[float, float, float], midline_x: float
) -> tuple[np.ndarray, QualityFinding | None]:
    """Cut one air component holding both lungs where it is narrowest."""
    box = bounding_box(component, (0, 2, 2))
    mask = np.pad(component[box], ((0, 0), (1, 1), (1, 1)))
    local_midline = midline_x - box[2].start + 1
    depth = depth_mm(mask, spacing, planar=True)
    total = mask.sum()
    step = 0.75 * min(spacing[1:])

    markers = None
    for radius in step * np.arange(1, 40):
        if radius > 30.0:
            break
        cores, sizes = label_components(depth > radius)
        if len(sizes) < 2:
            break
        candidate = np.zeros(mask.shape, dtype=np.uint8)
        straddling = False
        for index in range(1, len(sizes)):
            if sizes[index] < 0.002 * total:
                break
            core = cores == index
            share = _right_share(core, local_midline)
            if min(share, 1.0 - share) >= 0.1:
                straddling = True
                break
            candidate[core] = RIGHT_LUNG if share > 0.5 else LEFT_LUNG
        if straddling:
            continue
        if (candidate == RIGHT_LUNG).any() and (candidate == LEFT_LUNG).any():
            markers = candidate
        break

    sides = np.zeros(component.shape, dtype=np.uint8)
    finding = None
    if markers is not None:
        split = watershed_from_markers(depth, markers, mask)
    else:
        split = np.zeros(mask.shape, dtype=np.uint8)
        columns = np.arange(mask.shape[2])[None, None, :]
        split[mask & (columns <= local_midline)] = RIGHT_LUNG
        split[mask & (columns > local_midline)] = LEFT_LUNG
        finding = QualityFinding(
            "lungs_split_at_midline",
            WARNING,
            "the lungs could not be separated where they touch; they were cut "
            "at the midline",
            "check the left/right volumes in the QC picture",
        )
    sides[box] = split[:, 1:-1, 1:-1]
    return sides, finding


def _close_lungs(
    lungs: np.ndarray,
    allowed: np.ndarray,
    spacing: tuple[float, float, float],
    planar: bool,
    radius_mm: float,
) -> np.ndarray:
    """Close each lung on its own, never into the other lung or forbidden tissue."""
    closed = lungs.copy()
    for label in (RIGHT_LUNG, LEFT_LUNG):
        mask = lungs == label
        if not mask.any():
            continue
        grown = close_mm(mask, radius_mm, spacing, planar)
        added = grown & ~mask & allowed & (closed == 0)
        closed[added] = label
    return closed


def _local_density(
    fraction: np.ndarray,
    coarse_hu: np.ndarray,
    lungs: np.ndarray,
    spacing: tuple[float, float, float],
    threshold_hu: float,
    tissue_hu: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Dense lung blocks and the local threshold of the lung edge.

    Air fraction and density are averaged over the lung's own interior
    blocks within a few millimetres (a normalised in-plane Gaussian of
    :data:`_DENSE_SIGMA_MM`), so the chest wall beside a thin sliver of
    normal lung does not count.

    Returns
    -------
    dense : numpy.ndarray
        Lung blocks whose surroundings are less than :data:`_DENSE_SHARE`
        air. Normal lung, vessels included, stays above it; honeycombing,
        reticulation and consolidation fall below. There the lung edge
        cannot be redrawn by density, since cyst walls and reticular lines at
        the pleura are as dense as the chest wall, and the block-level edge
        is kept.
    edge_hu : numpy.ndarray
        Half way between the local lung density and soft tissue, never below
        the global threshold nor above :data:`_MAX_EDGE_HU`: a voxel at the
        edge of ground glass or reticulation is half lung at a higher value
        than one at the edge of normal lung.
    """
    lung = lungs > 0
    interior = ndimage.binary_erosion(lung, structure=_IN_PLANE)
    sigma = [0.0, _DENSE_SIGMA_MM / spacing[1], _DENSE_SIGMA_MM / spacing[2]]
    weight = ndimage.gaussian_filter(interior.astype(np.float32), sigma, truncate=3.0)
    enough = weight > 0.05
    averages = []
    for values, default in ((fraction, 1.0), (coarse_hu, threshold_hu)):
        summed = ndimage.gaussian_filter(
            np.where(interior, values, 0.0).astype(np.float32), sigma, truncate=3.0
        )
        averages.append(
            np.divide(summed, weight, out=np.full_like(summed, default), where=enough)
        )
    share, lung_hu = averages
    dense = lung & enough & (share < _DENSE_SHARE)
    edge_hu = np.where(enough, 0.5 * (lung_hu + tissue_hu), threshold_hu)
    edge_hu = np.clip(edge_hu, threshold_hu, max(threshold_hu, _MAX_EDGE_HU))
    return dense, edge_hu.astype(np.float32)


def _full_resolution(
    hounsfield: np.ndarray,
    fine_air: np.ndarray,
    lungs: np.ndarray,
    dense: np.ndarray,
    edge_hu: np.ndarray,
    keep_open: np.ndarray,
    trachea_fine: np.ndarray,
    grid: BlockGrid,
    spacing: tuple[float, float, float],
    planar: bool,
) -> np.ndarray:
    """Redraw the lung edge on the original voxels and fill holes slice by slice.

    Within :data:`_REDRAW_MM` (at least one block) of the block-level edge a
    voxel is lung when it is below the local edge threshold, except beside
    dense lung, where the block-level edge stands (see
    :func:`_local_density`); deeper voxels are lung whatever their density.
    """
    structure = _IN_PLANE if planar else _FACES
    # The block-level edge lies up to 1.5 mm outside a normal lung edge
    # (:func:`_air_nearby`); the air threshold decides over 2 mm in-plane.
    block_mm = min(grid.factors[1] * spacing[1], grid.factors[2] * spacing[2])
    steps = max(1, int(math.ceil(_REDRAW_MM / block_mm)))
    labels = np.zeros(fine_air.shape, dtype=np.uint8)
    for label in (RIGHT_LUNG, LEFT_LUNG):
        mask = lungs == label
        if not mask.any():
            continue
        other = (lungs > 0) & ~mask
        coarse_box = bounding_box(mask, 2)
        fine_box = tuple(
            slice(b.start * f, min(b.stop * f, n))
            for b, f, n in zip(coarse_box, grid.factors, grid.shape, strict=True)
        )
        part = BlockGrid(tuple(s.stop - s.start for s in fine_box), grid.factors)
        local = mask[coarse_box]
        edge = ndimage.binary_dilation(local, structure=structure) & ~other[coarse_box]
        core = ndimage.binary_erosion(local, structure=structure, border_value=1)
        if steps > 1:
            core &= ndimage.binary_erosion(
                local, structure=_IN_PLANE, iterations=steps, border_value=1
            )
        core |= local & dense[coarse_box]
        below = hounsfield[fine_box] < part.upsample(edge_hu[coarse_box])
        lung = below & part.upsample(edge) & ~trachea_fine[fine_box]
        lung |= part.upsample(core)
        lung = _fill_holes_padded(lung, part.upsample(keep_open[coarse_box]))
        target = labels[fine_box]
        target[lung & (target == 0)] = label
    labels[trachea_fine & (labels == 0)] = TRACHEA
    return labels


def _fill_holes_padded(mask: np.ndarray, keep_open: np.ndarray) -> np.ndarray:
    """Fill holes slice by slice, except holes reaching into ``keep_open``."""
    padded = np.pad(mask, ((0, 0), (1, 1), (1, 1)))
    holes = ~border_connected_2d(~padded)[:, 1:-1, 1:-1] & ~mask
    if keep_open.any() and (holes & keep_open).any():
        labels, count = ndimage.label(holes, structure=_IN_PLANE)
        shut = np.ones(count + 1, dtype=bool)
        shut[np.unique(labels[keep_open & holes])] = False
        shut[0] = False
        holes = shut[labels]
    return mask | holes


def _hand_intrapulmonary_airway(
    lungs: np.ndarray,
    trachea: np.ndarray,
    spacing: tuple[float, float, float],
    midline_x: float,
) -> np.ndarray:
    """Give the lungs the airway they surround; return the rest (label 3).

    An airway voxel is intrapulmonary when lung fills at least half of its
    surroundings (a Gaussian of :data:`_HILUM_SIGMA_MM`): past the hilum the
    bronchi are wrapped in lung, while the trachea and main bronchi run
    through the mediastinum.
    """
    if not trachea.any() or not lungs.any():
        return trachea
    margin = [int(math.ceil(3.0 * _HILUM_SIGMA_MM / s)) for s in spacing]
    box = bounding_box(trachea, margin)
    sigma = [_HILUM_SIGMA_MM / s for s in spacing]
    around = ndimage.gaussian_filter(
        (lungs[box] > 0).astype(np.float32), sigma, mode="constant"
    )
    inside = trachea[box] & (around >= 0.5)
    columns = np.arange(box[2].start, box[2].stop)[None, None, :]
    local = lungs[box]
    local[inside & (columns <= midline_x)] = RIGHT_LUNG
    local[inside & (columns > midline_x)] = LEFT_LUNG
    remaining = trachea.copy()
    remaining[box] &= ~inside
    return remaining


def _extrapulmonary_holes(
    lungs: np.ndarray, spacing: tuple[float, float, float]
) -> np.ndarray:
    """Holes of a lung's slice that are the top of an organ below the lung.

    Near its top the diaphragm dome (liver or spleen) shows as an island
    inside the lung on axial slices. Such a hole sits, for at least half its
    area, on tissue outside the lung in the slice below (or on a hole that
    does), and it is wide (at least :data:`_BIG_HOLE_MM` radius) or stacked
    on one that is. A nodule or mass with lung beneath it is filled, even
    when it reaches the mediastinum in another slice; one resting on the
    diaphragm is not.
    """
    keep_open = np.zeros(lungs.shape, dtype=bool)
    steps = max(1, int(round(_BIG_HOLE_MM / min(spacing[1:]))))
    for label in (RIGHT_LUNG, LEFT_LUNG):
        mask = lungs == label
        if not mask.any():
            continue
        box = bounding_box(mask, (1, steps + 1, steps + 1))
        local = np.pad(mask[box], ((0, 0), (1, 1), (1, 1)))
        outside = border_connected_2d(~local)
        holes = ~local & ~outside
        if not holes.any():
            continue
        big = ndimage.binary_opening(holes, structure=_IN_PLANE, iterations=steps)
        flagged = np.zeros(local.shape, dtype=bool)
        for k in range(1, local.shape[0]):
            if not holes[k].any():
                continue
            beneath = outside[k - 1] | flagged[k - 1]
            components, count = ndimage.label(holes[k])
            area = np.bincount(components.ravel(), minlength=count + 1)
            resting = np.bincount(components[beneath].ravel(), minlength=count + 1)
            wide = np.bincount(components[big[k]].ravel(), minlength=count + 1)
            stacked = np.bincount(
                components[flagged[k - 1]].ravel(), minlength=count + 1
            )
            organ = (2 * resting >= area) & ((wide > 0) | (stacked > 0))
            organ[0] = False
            flagged[k] = organ[components]
        keep_open[box] |= flagged[:, 1:-1, 1:-1]
    return keep_open


# --------------------------------------------------------------------------
# Quality


def _quality_findings(
    result: LungSegmentation, trachea_found: bool
) -> list[QualityFinding]:
    findings = []
    labels = result.labels
    volumes = result.volumes_ml()
    right = volumes["lung_right_volume_ml"]
    left = volumes["lung_left_volume_ml"]
    total = volumes["lung_volume_ml"]

    if not trachea_found:
        findings.append(
            QualityFinding(
                "trachea_not_found",
                WARNING,
                f"no trachea found within {_TRACHEA_SEARCH_MM:g} mm of the top of "
                "the scan; the airway seed (label 3) is empty",
                "check that the scan covers the carina; airway measurements "
                "need the trachea",
            )
        )
    if right == 0 or left == 0:
        side = "left" if left == 0 else "right"
        findings.append(
            QualityFinding(
                "one_lung_only",
                ERROR,
                f"no {side} lung found",
                "check the QC picture; after pneumonectomy per-lung features "
                "are meaningless",
            )
        )
    elif (
        not PLAUSIBLE_RIGHT_LEFT_RATIO[0]
        <= right / left
        <= PLAUSIBLE_RIGHT_LEFT_RATIO[1]
    ):
        findings.append(
            QualityFinding(
                "lung_ratio_implausible",
                WARNING,
                f"right/left lung volume ratio {right / left:.2f} lies outside "
                f"{PLAUSIBLE_RIGHT_LEFT_RATIO[0]:g}-{PLAUSIBLE_RIGHT_LEFT_RATIO[1]:g}",
                "check the left/right split and missing lung in the QC picture",
            )
        )

    low_ml, high_ml = PLAUSIBLE_LUNG_VOLUME_ML
    lung = (labels == RIGHT_LUNG) | (labels == LEFT_LUNG)
    per_slice = lung.reshape(lung.shape[0], -1).sum(axis=1)
    covered = labels.shape[0] >= 3
    if covered and per_slice.max() > 0:
        cut = [
            name
            for name, k in (("first (lowest)", 0), ("last (highest)", -1))
            if per_slice[k] > 0.02 * per_slice.max()
        ]
        if cut:
            covered = False
            findings.append(
                QualityFinding(
                    "lung_cut_by_scan_range",
                    WARNING,
                    f"lung reaches the {' and '.join(cut)} slice; the scan does not "
                    "cover the whole lung",
                    "lung volumes and zone thirds describe the covered part only",
                )
            )
    if (
        covered
        and not PLAUSIBLE_LUNG_VOLUME_ML[0] <= total <= PLAUSIBLE_LUNG_VOLUME_ML[1]
    ):
        findings.append(
            QualityFinding(
                "lung_volume_implausible",
                WARNING,
                f"lung volume {total:.0f} ml lies outside the plausible adult range "
                f"{low_ml:.0f}-{high_ml:.0f} ml",
                "check the QC picture for missed or leaked lung",
            )
        )

    edge = np.zeros(lung.shape[1:], dtype=bool)
    edge[:2, :] = edge[-2:, :] = edge[:, :2] = edge[:, -2:] = True
    at_edge = lung[:, edge].any(axis=1)
    if at_edge.any():
        findings.append(
            QualityFinding(
                "lung_at_field_of_view_edge",
                WARNING,
                f"lung touches the edge of the field of view on {int(at_edge.sum())} "
                f"of {int((per_slice > 0).sum())} lung slices",
                "lung outside the reconstructed field of view is missing from "
                "every measurement",
            )
        )
    if not findings:
        findings.append(
            QualityFinding(
                "lungs_ok",
                INFO,
                f"two lungs, {total:.0f} ml (right {right:.0f}, left {left:.0f})",
            )
        )
    return findings
