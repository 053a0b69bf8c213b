"""Pulmonary vessel segmentation on non-contrast chest CT, with calibre.

Method (:data:`VESSEL_METHOD`)
------------------------------
Everything happens on the bounding box of the lungs, in float32. Outside the
lungs (shrunk by one voxel to drop the partial-volume rim at the pleura) and
inside the airway lumen and walls, the image is replaced by the lungs' median
density, so that the chest wall, the mediastinum and the airway walls give no
Hessian response of their own.

1. *Background.* The local lung density is the 30th percentile of the lung
   voxels in blocks of about 3 mm, taken as a median over neighbouring blocks
   and smoothed; it follows gravity gradients, ground glass and reticulation,
   so contrasts below are relative to the lung around each voxel.
2. *Tubularity.* At each scale ``sigma`` of :attr:`VesselParams.scales_mm`
   (0.5 to 4 mm, which puts the best response of a tube of radius
   ``sqrt(2) * sigma`` between about 0.7 and 5.7 mm and still covers 0.4 to
   9 mm) the Hessian of the Gaussian-smoothed image is normalised by
   ``sigma ** 2``, so that its eigenvalues are in HU. With
   ``|l1| <= |l2| <= |l3|``, a bright tube has ``l2, l3 < 0`` and ``l1 ~ 0``;
   the tubularity is ``-l2`` (the contrast across the tube's weaker
   direction, Sato's measure) damped by Frangi's plate term
   ``1 - exp(-Ra^2 / 2 alpha^2)``, ``Ra = |l2| / |l3|``, and blob term
   ``exp(-Rb^2 / 2 beta^2)``, ``Rb = |l1| / sqrt(|l2 l3|)``. A plate
   (reticular sheet, honeycomb wall, pleural rim) has ``l2 ~ 0`` and scores
   near zero. Scales from 2 mm up are computed on a grid coarsened two-fold.
   At those scales the smoothed density itself must also reach 35 % of the
   way from the lung to blood: a wide tube is filled with blood, while a
   patch of fibrosis seen at a large scale is not.
   Tubes best seen at the middle scales (0.85 and 1.4 mm) must reach
   ``middle_scale_fill`` of the lung-to-blood contrast within
   ``fill_window_mm``: a vessel that wide is filled with blood, whereas the
   blurred wall ring of a small airway the airway mask missed (a bright
   tube with an air core) peaks at about a third of it.
3. *Mesh density.* Reticulation and honeycombing do contain tube-like lines
   (where sheets and cyst walls meet), but packed closely, whereas small
   vessels are sparse branches. The share of lung voxels within about 5 mm
   that are small-scale tubular is computed; small-scale tubular voxels where
   that share exceeds ``mesh_density_max`` are taken as part of a mesh, not a
   vessel.
4. *Hysteresis.* Seeds are connected groups of voxels of tubularity at least
   ``high_hu`` that extend over ``seed_length_mm`` or more; the vessel core
   is every connected voxel of tubularity at least ``low_hu`` reached from a
   seed, so small vessels join through the tree they belong to.
5. *Extent.* Around the core, a voxel is vessel when its density exceeds a
   local threshold between the lung background ``b`` and the peak density
   ``P`` of the nearby core: ``b + k (P - b)``. ``k`` keeps the area above
   the threshold equal to the true cross-section of a round vessel blurred
   by a Gaussian point-spread function of any width:
   ``k = exp(-p)`` with ``p = (P - b) / (blood - b)`` for vessels thinner
   than the blur (a Gaussian profile) and 0.45 for wide ones (a blurred
   disc), taking the larger. The half-way threshold usual for large vessels
   would lose every vessel thinner than about 1.5 times the blur. The
   extent grows from the core downhill only (a voxel joins from a
   neighbour at least as dense, within ``extent_rise_hu``), so it stops at
   the dip between a vessel and an airway wall or another vessel beside it.
6. *Calibre.* The mask is thinned to its centrelines (skimage
   ``skeletonize``) and every vessel voxel belongs to its nearest
   centreline point. The cross-sectional area at a point is the vessel
   volume belonging to it and its centreline neighbours (a few rings)
   divided by the centreline length they represent, and the radius is
   ``sqrt(area / pi)``; every vessel voxel takes the area of its point.
   Counting voxels is not biased low by the staircase of a digitised
   surface, as the distance to the nearest boundary is.

Known limits
------------
Thin-section CT is assumed (slice interval up to about 1.5 mm); on thicker
slices small vessels are missed, which a finding reports. Gapped HRCT is not
segmented at all (a vessel tree needs a contiguous volume): the result is an
empty mask and a finding, and the vessel features are left empty. Vessels
running through dense consolidation or a fibrotic mesh are partly lost with
the mesh; on the full-size phantom with 30 % fibrosis about a tenth of the
vessel mask is still reticulation or honeycombing, and the mesh threshold
sits close to where normal small vessels start to be lost. Small airways
the airway mask misses still add about a tenth of the vessel volume (their
walls next to an artery pass the fill test). Wide vessels' areas are about
a fifth low (the hilar trunks are cut by the lung mask, and the extent is
a little tight at their blurred edge). Arteries touching an airway wall lose the voxels the blur shares
with the wall. Where only the airway lumen is given, the wall is taken as a
fixed ``airway_wall_mm`` shell.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import ndimage
from scipy import sparse
from scipy.spatial import cKDTree

from radscl.errors import ParameterError
from radscl.io import QualityFinding
from radscl.segmentation import LEFT_LUNG
from radscl.segmentation import RIGHT_LUNG
from radscl.segmentation import VESSEL

logger = logging.getLogger(__name__)

#: Name and version of the vessel method; recorded with every vessel value.
VESSEL_METHOD = "radscl-hessian-tubularity-3"

#: Cross-sectional area bins of the vessel volume, mm^2 (lower edge inclusive).
CSA_BINS_MM2 = (5.0, 10.0)


@dataclasses.dataclass(frozen=True)
class VesselParams:
    """Parameters of :func:`segment_vessels` (see the module docstring).

    Attributes
    ----------
    scales_mm : tuple of float
        Gaussian scales of the Hessian, mm.
    coarse_from_mm : float
        Scales from this one up are computed on a two-fold coarser grid.
    presmooth_mm : float
        Gaussian smoothing of the image used for densities and the extent.
    plate_alpha, blob_beta : float
        Frangi's plate and blob sensitivities.
    min_contrast_hu : float
        Voxels less than this above the local lung are never vessel.
    low_hu, high_hu : float
        Hysteresis thresholds on the tubularity, HU.
    seed_length_mm : float
        Smallest extent of a connected group of seed voxels.
    large_scale_fill : float
        Share of the lung-to-blood contrast a tube seen at a coarse scale
        must reach in the image smoothed at that scale.
    mesh_density_max : float
        Largest share of nearby lung that may be small-scale tubular around a
        small vessel.
    mesh_radius_mm : float
        Gaussian scale of that neighbourhood, mm.
    fill_from_mm : float
        Scales from this one up to ``coarse_from_mm`` are the middle scales.
    middle_scale_fill : float
        Share of the lung-to-blood contrast a tube best seen at a middle
        scale must reach within ``fill_window_mm``.
    fill_window_mm : float
        Half-width of the neighbourhood searched for that peak, mm.
    extent_rise_hu : float
        How much denser than its neighbour a voxel may be and still join the
        extent grown from the core, HU.
    background_block_mm, background_quantile : float
        Block size and percentile (0 to 1) of the local lung background.
    blood_hu : float
        Density of blood on non-contrast CT.
    extent_min_k : float
        Threshold share ``k`` for wide vessels.
    extent_window_mm : float
        How far from the core the extent may reach, mm.
    radius_smoothing_steps : int
        Rings of centreline neighbours pooled into the cross-sectional area
        of a centreline point.
    airway_wall_mm : float
        Wall thickness assumed around an airway lumen given without wall.
    """

    scales_mm: tuple[float, ...] = (0.5, 0.85, 1.4, 2.4, 4.0)
    coarse_from_mm: float = 2.0
    presmooth_mm: float = 0.5
    plate_alpha: float = 0.5
    blob_beta: float = 0.5
    min_contrast_hu: float = 50.0
    low_hu: float = 20.0
    high_hu: float = 60.0
    seed_length_mm: float = 8.0
    bridge_gaps: bool = True
    large_scale_fill: float = 0.5
    mesh_density_max: float = 0.06
    mesh_radius_mm: float = 5.0
    background_block_mm: float = 3.0
    background_quantile: float = 0.3
    blood_hu: float = 40.0
    extent_min_k: float = 0.45
    extent_window_mm: float = 1.5
    radius_smoothing_steps: int = 3
    airway_wall_mm: float = 1.0
    fill_from_mm: float = 0.8
    middle_scale_fill: float = 0.4
    fill_window_mm: float = 0.7
    extent_rise_hu: float = 10.0

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> VesselParams:
        """Build parameters from a mapping, checking names and values.

        Raises
        ------
        ParameterError
            Naming the first unknown key or ill-typed or out-of-range value.
        """
        if values is None:
            return cls()
        if isinstance(values, VesselParams):
            return values
        fields = {field.name: field for field in dataclasses.fields(cls)}
        converted: dict[str, Any] = {}
        for key, value in values.items():
            if key not in fields:
                raise ParameterError(
                    f"vessel parameter {key!r} is unknown; known: {', '.join(sorted(fields))}"
                )
            converted[key] = _convert(key, value, getattr(cls(), key))
        params = cls(**converted)
        params.validate()
        return params

    def validate(self) -> None:
        """Raise :class:`ParameterError` naming the first bad value."""
        if not self.scales_mm or any(s <= 0 for s in self.scales_mm):
            raise ParameterError(
                f"scales_mm must be positive numbers, but found {self.scales_mm}"
            )
        if list(self.scales_mm) != sorted(self.scales_mm):
            raise ParameterError(
                f"scales_mm must be increasing, but found {self.scales_mm}"
            )
        if not 0 <= self.low_hu <= self.high_hu:
            raise ParameterError(
                f"low_hu and high_hu must satisfy 0 <= low_hu <= high_hu, but found "
                f"{self.low_hu} and {self.high_hu}"
            )
        for name in (
            "plate_alpha",
            "blob_beta",
            "presmooth_mm",
            "background_block_mm",
            "mesh_radius_mm",
            "extent_window_mm",
            "coarse_from_mm",
        ):
            if getattr(self, name) <= 0:
                raise ParameterError(
                    f"{name} must be positive, but found {getattr(self, name)}"
                )
        for name in (
            "background_quantile",
            "large_scale_fill",
            "mesh_density_max",
            "extent_min_k",
            "middle_scale_fill",
        ):
            if not 0 <= getattr(self, name) <= 1:
                raise ParameterError(
                    f"{name} must be in [0, 1], but found {getattr(self, name)}"
                )
        if self.radius_smoothing_steps < 0:
            raise ParameterError(
                f"radius_smoothing_steps must be >= 0, but found {self.radius_smoothing_steps}"
            )


def _convert(key: str, value: Any, default: Any) -> Any:
    if isinstance(default, tuple):
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise ParameterError(
                f"vessel parameter {key} must be a list of numbers, but found {value!r}"
            )
        try:
            return tuple(float(v) for v in value)
        except (TypeError, ValueError):
            raise ParameterError(
                f"vessel parameter {key} must be a list of numbers, but found {value!r}"
            ) from None
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ParameterError(
                f"vessel parameter {key} must be true or false, but found {value!r}"
            )
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not float(value).is_integer():
            raise ParameterError(
                f"vessel parameter {key} must be an integer, but found {value!r}"
            )
        return int(value)
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
    ):
        raise ParameterError(
            f"vessel parameter {key} must be a number, but found {value!r}"
        )
    return float(value)


def vessel_method(
    params: VesselParams | Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The method name and every parameter value, for provenance.

    Published small-vessel fractions range from under 20 % to over 80 %
    depending on the method, so a vessel value is only meaningful together
    with this record.

    Parameters
    ----------
    params : VesselParams or mapping, optional
        The parameters used; the defaults when omitted.

    Returns
    -------
    dict
        ``{"method": VESSEL_METHOD, "csa_bins_mm2": [...], "parameters": {...}}``.
    """
    params = VesselParams.from_mapping(params)
    values = dataclasses.asdict(params)
    values["scales_mm"] = list(params.scales_mm)
    return {
        "method": VESSEL_METHOD,
        "csa_bins_mm2": list(CSA_BINS_MM2),
        "parameters": values,
    }


@dataclasses.dataclass
class VesselSegmentation:
    """Intrapulmonary vessels of one scan and their calibre.

    Attributes
    ----------
    mask : numpy.ndarray
        ``bool [z, y, x]`` vessel voxels on the scan's grid.
    radius_mm : numpy.ndarray
        ``float32``, one radius per vessel voxel, in the order of
        ``numpy.flatnonzero(mask)``.
    spacing_mm : tuple of float
        ``(z, y, x)``.
    findings : list of QualityFinding
        Doubts about the result; a gapped scan is reported here.
    method : dict
        :func:`vessel_method` of the parameters used.
    measured : bool
        False when the scan could not be segmented (gapped HRCT); the vessel
        features are then empty.
    """

    mask: np.ndarray
    radius_mm: np.ndarray
    spacing_mm: tuple[float, float, float]
    findings: list[QualityFinding] = dataclasses.field(default_factory=list)
    method: dict[str, Any] = dataclasses.field(default_factory=vessel_method)
    measured: bool = True

    @property
    def csa_mm2(self) -> np.ndarray:
        """Cross-sectional area ``pi r^2`` of every vessel voxel."""
        return (np.pi * self.radius_mm.astype(np.float64) ** 2).astype(np.float32)

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel."""
        return float(np.prod(self.spacing_mm)) / 1000.0

    def radius_map(self) -> np.ndarray:
        """Radius on the scan's grid, ``float32``, 0 outside the vessels."""
        out = np.zeros(self.mask.shape, np.float32)
        out.ravel()[np.flatnonzero(self.mask)] = self.radius_mm
        return out


def label_vessels(label_map: np.ndarray, vessels: VesselSegmentation) -> np.ndarray:
    """Paint :data:`~radscl.segmentation.VESSEL` into a combined label map.

    Vessels replace lung labels only; airway labels and the background are
    kept, so the label map stays consistent with the airway stage.

    Parameters
    ----------
    label_map : numpy.ndarray
        ``uint8 [z, y, x]`` with :data:`~radscl.segmentation.LABELS` values;
        changed in place.
    vessels : VesselSegmentation

    Returns
    -------
    numpy.ndarray
        The same array.
    """
    if label_map.shape != vessels.mask.shape:
        raise ParameterError(
            f"label map shape {label_map.shape} does not match the vessel mask {vessels.mask.shape}"
        )
    lung = (label_map == RIGHT_LUNG) | (label_map == LEFT_LUNG)
    label_map[vessels.mask & lung] = VESSEL
    return label_map


# --------------------------------------------------------------------------
# Segmentation


def segment_vessels(
    scan,
    lungs,
    airway_lumen: np.ndarray | None = None,
    airway_wall: np.ndarray | None = None,
    params: VesselParams | Mapping[str, Any] | None = None,
) -> VesselSegmentation:
    """Segment the intrapulmonary vessels and measure their calibre.

    Parameters
    ----------
    scan : radscl.io.Scan
        The CT scan.
    lungs : radscl.segmentation.lungs.LungSegmentation
        Its lungs; vessels are looked for inside ``lungs.lung_mask`` only.
    airway_lumen, airway_wall : numpy.ndarray, optional
        ``bool [z, y, x]`` airway lumen and wall, excluded from the vessels.
        When only the lumen is given, a shell of ``airway_wall_mm`` around it
        is excluded as wall.
    params : VesselParams or mapping, optional
        Parameters; the defaults of :class:`VesselParams` when omitted.

    Returns
    -------
    VesselSegmentation
        Mask, radius per vessel voxel, findings and the method record.

    Raises
    ------
    ParameterError
        If a mask does not match the scan or a parameter is invalid.
    """
    params = VesselParams.from_mapping(params)
    hounsfield = scan.hounsfield
    spacing = tuple(float(s) for s in scan.spacing_mm)
    lung_mask = lungs.lung_mask
    _check_mask("lung mask", lung_mask, hounsfield.shape)
    _check_mask("airway_lumen", airway_lumen, hounsfield.shape)
    _check_mask("airway_wall", airway_wall, hounsfield.shape)
    method = vessel_method(params)
    findings: list[QualityFinding] = []

    empty = VesselSegmentation(
        np.zeros(hounsfield.shape, bool),
        np.zeros(0, np.float32),
        spacing,
        findings,
        method,
    )
    if not scan.metadata.contiguous:
        findings.append(
            QualityFinding(
                "vessels_not_measured",
                logging.WARNING,
                "gapped HRCT: a vessel tree needs a contiguous volume",
                "vessel features are left empty",
            )
        )
        empty.measured = False
        return empty
    if not lung_mask.any():
        findings.append(
            QualityFinding(
                "vessels_not_measured",
                logging.ERROR,
                "the lung mask is empty",
                "vessel features are left empty",
            )
        )
        empty.measured = False
        return empty
    if spacing[0] > 1.5 or max(spacing[1:]) > 1.0:
        findings.append(
            QualityFinding(
                "vessels_thick_slices",
                logging.WARNING,
                f"voxels of {spacing[0]:g} x {spacing[1]:g} x {spacing[2]:g} mm: vessels "
                "thinner than about a voxel are missed",
                "compare vessel volumes only between scans of similar resolution",
            )
        )

    box = _bounding_box(lung_mask, margin=3)
    crop_shape = tuple(s.stop - s.start for s in box)
    region = lung_mask[box].copy()
    excluded = _airway_exclusion(airway_lumen, airway_wall, box, spacing, params)
    if excluded is not None:
        region &= ~excluded
    logger.debug("vessel crop %s of %s", crop_shape, hounsfield.shape)

    image = hounsfield[box].astype(np.float32)
    # The pleural rim is dropped (its voxels share the chest wall's density);
    # voxels next to an airway wall are kept, since arteries run there.
    inner = ndimage.binary_erosion(lung_mask[box], iterations=1, border_value=0)
    if excluded is not None:
        inner &= ~excluded
    fill_hu = float(np.median(image[inner])) if inner.any() else -850.0
    image[~inner] = fill_hu
    smooth = ndimage.gaussian_filter(
        image, [params.presmooth_mm / s for s in spacing], truncate=3.0
    )
    background = _LocalBackground(smooth, inner, spacing, params)

    candidates = _candidates(smooth, inner, background, fill_hu, params)
    if candidates.size == 0:
        findings.append(
            QualityFinding(
                "vessels_none", logging.WARNING, "no vessel candidates in the lungs", ""
            )
        )
        return empty
    candidate_bg = background.at(candidates)
    size = [2 * int(round(params.fill_window_mm / h)) + 1 for h in spacing]
    peak_hu = ndimage.maximum_filter(smooth, size=size).ravel()[candidates]
    peak_fill = (peak_hu - candidate_bg) / np.maximum(
        params.blood_hu - candidate_bg, 1.0
    )
    del peak_hu
    response = _multiscale_tubularity(
        image,
        candidates,
        smooth.ravel()[candidates],
        candidate_bg,
        spacing,
        params,
        peak_fill=peak_fill,
    )
    del image

    mesh = _mesh_voxels(candidates, response, inner, background, spacing, params)
    core = _hysteresis(candidates, response, mesh, crop_shape, spacing, params)
    logger.debug(
        "vessel candidates %d, mesh voxels %d, core voxels %d",
        candidates.size,
        int(mesh.sum()),
        int(core.sum()),
    )

    crop_mask = _extent(smooth, core, inner, background, spacing, params)
    del core, smooth
    radius = _centreline_radius(crop_mask, spacing, params)

    mask = np.zeros(hounsfield.shape, bool)
    mask[box] = crop_mask
    # flatnonzero of the crop and of the full grid list voxels in the same
    # (C) order, so the radii carry over unchanged.
    return VesselSegmentation(mask, radius, spacing, findings, method)


def _check_mask(name: str, mask: np.ndarray | None, shape: tuple[int, ...]) -> None:
    if mask is None:
        return
    if mask.shape != tuple(shape):
        raise ParameterError(
            f"{name} has shape {mask.shape}, but the scan has {tuple(shape)}"
        )


def _bounding_box(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        index = np.flatnonzero(mask.any(axis=other))
        box.append(
            slice(
                max(int(index[0]) - margin, 0),
                min(int(index[-1]) + 1 + margin, mask.shape[axis]),
            )
        )
    return tuple(box)


def _airway_exclusion(
    lumen: np.ndarray | None,
    wall: np.ndarray | None,
    box: tuple[slice, ...],
    spacing: tuple[float, float, float],
    params: VesselParams,
) -> np.ndarray | None:
    if lumen is None and wall is None:
        return None
    excluded = np.zeros(tuple(s.stop - s.start for s in box), bool)
    if lumen is not None:
        excluded |= lumen[box].astype(bool)
    if wall is not None:
        excluded |= wall[box].astype(bool)
    elif lumen is not None and excluded.any():
        distance = ndimage.distance_transform_edt(~excluded, sampling=spacing)
        excluded |= distance <= params.airway_wall_mm
    return excluded


class _LocalBackground:
    """Local lung density on a grid of blocks, sampled where it is needed."""

    def __init__(self, smooth, region, spacing, params: VesselParams) -> None:
        block = tuple(
            max(1, int(round(params.background_block_mm / s))) for s in spacing
        )
        shape = smooth.shape
        padded = tuple(int(math.ceil(n / b)) * b for n, b in zip(shape, block))
        coarse_shape = tuple(p // b for p, b in zip(padded, block))
        values = np.full(padded, np.inf, np.float32)
        values[: shape[0], : shape[1], : shape[2]] = np.where(region, smooth, np.inf)
        values = (
            values.reshape(
                coarse_shape[0],
                block[0],
                coarse_shape[1],
                block[1],
                coarse_shape[2],
                block[2],
            )
            .transpose(0, 2, 4, 1, 3, 5)
            .reshape(int(np.prod(coarse_shape)), -1)
        )
        values.sort(axis=1)
        count = np.isfinite(values).sum(axis=1)
        rank = np.maximum((params.background_quantile * (count - 1)).astype(np.intp), 0)
        level = values[np.arange(values.shape[0]), rank].reshape(coarse_shape)
        valid = (count >= 0.25 * values.shape[1]).reshape(coarse_shape)
        del values

        # A median over neighbouring blocks ignores blocks filled by a large
        # vessel; normalised smoothing then fills blocks without lung.
        level = np.where(valid, level, np.nan).astype(np.float32)
        median = _nan_median3(level)
        weight = np.isfinite(median).astype(np.float32)
        median = np.where(weight > 0, median, 0.0).astype(np.float32)
        numerator = ndimage.gaussian_filter(median * weight, 1.0)
        denominator = ndimage.gaussian_filter(weight, 1.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            smoothed = numerator / denominator
        fallback = float(np.nanmedian(level)) if np.isfinite(level).any() else -850.0
        self.coarse = np.where(denominator > 1e-3, smoothed, fallback).astype(
            np.float32
        )
        self.block = np.array(block)
        self.shape = shape

    def at(self, flat: np.ndarray) -> np.ndarray:
        """Background HU at flat voxel indices of the crop."""
        index = np.unravel_index(flat, self.shape)
        coords = [(i + 0.5) / b - 0.5 for i, b in zip(index, self.block)]
        return ndimage.map_coordinates(
            self.coarse, coords, order=1, mode="nearest"
        ).astype(np.float32)

    def full(self) -> np.ndarray:
        """Background on the whole crop, ``float32``."""
        coords = [
            (np.arange(n, dtype=np.float32) + 0.5) / b - 0.5
            for n, b in zip(self.shape, self.block)
        ]
        # Separable linear interpolation: one axis at a time.
        out = self.coarse
        for axis, c in enumerate(coords):
            out = _interp_axis(out, c, axis)
        return out.astype(np.float32)


def _interp_axis(array: np.ndarray, coords: np.ndarray, axis: int) -> np.ndarray:
    n = array.shape[axis]
    c = np.clip(coords, 0, n - 1)
    low = np.floor(c).astype(np.intp)
    high = np.minimum(low + 1, n - 1)
    w = (c - low).astype(np.float32)
    shape = [1] * array.ndim
    shape[axis] = -1
    w = w.reshape(shape)
    return (
        np.take(array, low, axis=axis) * (1 - w) + np.take(array, high, axis=axis) * w
    )


def _nan_median3(level: np.ndarray) -> np.ndarray:
    """Median over each 3x3x3 neighbourhood, ignoring NaN."""
    padded = np.pad(level, 1, mode="edge")
    stack = np.stack(
        [
            padded[
                dz : dz + level.shape[0],
                dy : dy + level.shape[1],
                dx : dx + level.shape[2],
            ]
            for dz in range(3)
            for dy in range(3)
            for dx in range(3)
        ]
    )
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            # all-NaN neighbourhoods (outside the lungs) give NaN on purpose
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmedian(stack, axis=0)


def _candidates(
    smooth, region, background, fill_hu, params: VesselParams
) -> np.ndarray:
    """Flat indices of lung voxels clearly brighter than the lung around them."""
    bright = region & (smooth > fill_hu + 0.5 * params.min_contrast_hu)
    for axis in range(3):
        index = [slice(None)] * 3
        index[axis] = [0, bright.shape[axis] - 1]
        bright[tuple(index)] = False
    flat = np.flatnonzero(bright)
    contrast = smooth.ravel()[flat] - background.at(flat)
    return flat[contrast >= params.min_contrast_hu]


@dataclasses.dataclass
class _Response:
    tubularity: np.ndarray
    scale_index: np.ndarray
    scales_mm: tuple[float, ...]


def _multiscale_tubularity(
    image,
    flat,
    candidate_hu,
    candidate_bg,
    spacing,
    params: VesselParams,
    peak_fill=None,
) -> _Response:
    """Best tubularity over the scales, and the scale that gave it.

    ``peak_fill`` is the share of the lung-to-blood contrast reached near
    each voxel; tubes best seen at the middle scales must reach
    ``middle_scale_fill`` of it.
    """
    dense = candidate_hu - candidate_bg >= params.large_scale_fill * np.maximum(
        params.blood_hu - candidate_bg, 1.0
    )
    spacing_arr = np.asarray(spacing, float)
    best = np.zeros(flat.size, np.float32)
    best_scale = np.zeros(flat.size, np.int8)
    index = np.unravel_index(flat, image.shape)
    coarse_scales = [s for s in params.scales_mm if s >= params.coarse_from_mm]
    coarse = None
    for i, sigma in enumerate(params.scales_mm):
        if sigma < params.coarse_from_mm:
            smoothed = ndimage.gaussian_filter(image, sigma / spacing_arr, truncate=3.0)
            tubularity = _tubularity_at(smoothed, flat, spacing_arr, sigma, params)
            del smoothed
        else:
            if coarse is None:
                coarse = _Coarse(image, index, spacing_arr, min(coarse_scales))
            smoothed = coarse.smoothed(sigma)
            tubularity_unique = _tubularity_at(
                smoothed, coarse.unique, coarse.spacing, sigma, params
            )
            # Only voxels inside a blood-filled lumen may be part of a wide tube.
            tubularity = np.where(dense, tubularity_unique[coarse.inverse], 0.0)
        better = tubularity > best
        best[better] = tubularity[better]
        best_scale[better] = i
        logger.debug("scale %.2f mm: %d voxels best", sigma, int(better.sum()))
    if peak_fill is not None:
        # A tube best seen at a middle scale is wide enough for its centre to
        # be filled with blood; an airway's blurred wall ring is not.
        middle = np.array(
            [params.fill_from_mm <= s < params.coarse_from_mm for s in params.scales_mm]
        )
        hollow = middle[best_scale] & (peak_fill < params.middle_scale_fill)
        best[hollow] = 0.0
    return _Response(best, best_scale, tuple(params.scales_mm))


class _Coarse:
    """A two-fold coarser copy of the crop for the large scales."""

    def __init__(self, image, index, spacing, smallest_scale) -> None:
        factor = np.where(2 * spacing <= smallest_scale, 2, 1)
        pre_sigma = 0.5 * factor * spacing  # anti-aliasing before decimation
        self.pre_sigma_mm = pre_sigma
        smoothed = ndimage.gaussian_filter(
            image, np.where(factor > 1, pre_sigma / spacing, 0.0), truncate=3.0
        )
        self.image = np.ascontiguousarray(
            smoothed[:: factor[0], :: factor[1], :: factor[2]]
        )
        del smoothed
        self.spacing = spacing * factor
        shape = self.image.shape
        coarse_index = [
            np.clip(np.rint(i / f).astype(np.intp), 1, n - 2)
            for i, f, n in zip(index, factor, shape)
        ]
        flat = np.ravel_multi_index(coarse_index, shape)
        self.unique, self.inverse = np.unique(flat, return_inverse=True)

    def smoothed(self, sigma: float) -> np.ndarray:
        extra = np.sqrt(np.maximum(sigma**2 - self.pre_sigma_mm**2, 0.0)) / self.spacing
        return ndimage.gaussian_filter(self.image, extra, truncate=3.0)


def _tubularity_at(smoothed, flat, spacing, sigma, params: VesselParams) -> np.ndarray:
    """Scale-normalised bright-tube measure at flat indices of ``smoothed``."""
    out = np.empty(flat.size, np.float32)
    chunk = 1 << 20
    for start in range(0, flat.size, chunk):
        part = flat[start : start + chunk]
        hessian = _hessian_at(smoothed, part, spacing)
        l1, l2, l3 = _eigenvalues_by_magnitude(*hessian)
        scale2 = sigma * sigma
        l1 *= scale2
        l2 *= scale2
        l3 *= scale2
        bright = (l2 < 0) & (l3 < 0)
        ra = np.abs(l2) / np.maximum(np.abs(l3), 1e-6)
        rb = np.abs(l1) / np.sqrt(np.maximum(l2 * l3, 1e-6))
        plate = 1.0 - np.exp(-(ra * ra) / (2.0 * params.plate_alpha**2))
        blob = np.exp(-(rb * rb) / (2.0 * params.blob_beta**2))
        out[start : start + chunk] = np.where(bright, -l2 * plate * blob, 0.0)
    return out


def _hessian_at(
    smoothed: np.ndarray, flat: np.ndarray, spacing
) -> tuple[np.ndarray, ...]:
    """Central-difference Hessian ``(xx, yy, zz, xy, xz, yz)`` at interior voxels."""
    values = smoothed.ravel()
    _, ny, nx = smoothed.shape
    step_z, step_y, step_x = ny * nx, nx, 1
    dz, dy, dx = (float(s) for s in spacing)
    centre = values[flat].astype(np.float64)

    def second(step, h):
        return (values[flat + step] + values[flat - step] - 2.0 * centre) / (h * h)

    def mixed(step_a, step_b, ha, hb):
        return (
            values[flat + step_a + step_b].astype(np.float64)
            - values[flat + step_a - step_b]
            - values[flat - step_a + step_b]
            + values[flat - step_a - step_b]
        ) / (4.0 * ha * hb)

    return (
        second(step_x, dx),
        second(step_y, dy),
        second(step_z, dz),
        mixed(step_y, step_x, dy, dx),
        mixed(step_z, step_x, dz, dx),
        mixed(step_z, step_y, dz, dy),
    )


def _eigenvalues_by_magnitude(
    xx, yy, zz, xy, xz, yz
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eigenvalues of symmetric 3x3 matrices, ordered by absolute value.

    Closed form (trigonometric solution of the characteristic cubic), which
    is far faster than a general solver for millions of small matrices.
    """
    mean = (xx + yy + zz) / 3.0
    a, b, c = xx - mean, yy - mean, zz - mean
    off = xy * xy + xz * xz + yz * yz
    p = np.sqrt((a * a + b * b + c * c + 2.0 * off) / 6.0)
    safe = np.where(p > 1e-12, p, 1.0)
    det = (
        a * (b * c - yz * yz) - xy * (xy * c - yz * xz) + xz * (xy * yz - b * xz)
    ) / safe**3
    phi = np.arccos(np.clip(0.5 * det, -1.0, 1.0)) / 3.0
    e1 = mean + 2.0 * p * np.cos(phi)
    e3 = mean + 2.0 * p * np.cos(phi + 2.0 * np.pi / 3.0)
    e2 = 3.0 * mean - e1 - e3
    values = np.stack([e1, e2, e3])
    order = np.argsort(np.abs(values), axis=0)
    values = np.take_along_axis(values, order, axis=0)
    return values[0], values[1], values[2]


def _mesh_voxels(
    flat, response: _Response, region, background, spacing, params
) -> np.ndarray:
    """Small-scale tubular candidates lying in a dense mesh of such voxels."""
    small_scale = np.array([s < params.coarse_from_mm for s in response.scales_mm])
    tubular_small = (response.tubularity >= params.low_hu) & small_scale[
        response.scale_index
    ]

    block = background.block
    shape = region.shape
    coarse_shape = tuple(int(math.ceil(n / b)) for n, b in zip(shape, block))
    index = np.unravel_index(flat[tubular_small], shape)
    coarse_flat = np.ravel_multi_index(
        [i // b for i, b in zip(index, block)], coarse_shape
    )
    counts = np.bincount(coarse_flat, minlength=int(np.prod(coarse_shape))).reshape(
        coarse_shape
    )
    lung_counts = _block_sum(region, block, coarse_shape)

    sigma = [params.mesh_radius_mm / (b * s) for b, s in zip(block, spacing)]
    numerator = ndimage.gaussian_filter(counts.astype(np.float32), sigma)
    denominator = ndimage.gaussian_filter(lung_counts.astype(np.float32), sigma)
    density = numerator / np.maximum(denominator, 1.0)
    index = np.unravel_index(flat, shape)
    coords = [(i + 0.5) / b - 0.5 for i, b in zip(index, block)]
    at = ndimage.map_coordinates(density, coords, order=1, mode="nearest")
    return (at > params.mesh_density_max) & small_scale[response.scale_index]


def _block_sum(mask: np.ndarray, block, coarse_shape) -> np.ndarray:
    padded = np.zeros(tuple(c * b for c, b in zip(coarse_shape, block)), np.uint16)
    padded[: mask.shape[0], : mask.shape[1], : mask.shape[2]] = mask
    return padded.reshape(
        coarse_shape[0], block[0], coarse_shape[1], block[1], coarse_shape[2], block[2]
    ).sum(axis=(1, 3, 5))


def _hysteresis(flat, response: _Response, mesh, shape, spacing, params) -> np.ndarray:
    """Tubular voxels connected to long runs of strongly tubular ones."""
    usable = ~mesh
    weak = np.zeros(shape, bool)
    weak.ravel()[flat[usable & (response.tubularity >= params.low_hu)]] = True
    strong = np.zeros(shape, bool)
    strong.ravel()[flat[usable & (response.tubularity >= params.high_hu)]] = True
    structure = np.ones((3, 3, 3), bool)

    seeds_labels, n_seeds = ndimage.label(strong, structure=structure)
    if n_seeds == 0:
        return np.zeros(shape, bool)
    extent = np.array(
        [
            math.sqrt(sum(((s.stop - s.start) * h) ** 2 for s, h in zip(obj, spacing)))
            for obj in ndimage.find_objects(seeds_labels)
        ]
    )
    long_seed = np.concatenate([[False], extent >= params.seed_length_mm])
    seeds = long_seed[seeds_labels]
    del seeds_labels, strong

    weak |= seeds
    # Groups are formed on the weak set grown by one voxel, so that a small
    # vessel interrupted for a voxel by noise still joins its tree.
    bridged = (
        ndimage.binary_dilation(weak, structure=structure)
        if params.bridge_gaps
        else weak
    )
    groups, _ = ndimage.label(bridged, structure=structure)
    keep = np.zeros(int(groups.max()) + 1, bool)
    keep[np.unique(groups[seeds])] = True
    keep[0] = False
    return keep[groups] & weak


def _extent(
    smooth, core, region, background, spacing, params: VesselParams
) -> np.ndarray:
    """Vessel voxels around the core, by an area-preserving local threshold."""
    if not core.any():
        return np.zeros(core.shape, bool)
    size = [2 * max(1, int(round(params.extent_window_mm / s))) + 1 for s in spacing]
    peak = ndimage.maximum_filter(
        np.where(core, smooth, -np.inf).astype(np.float32), size=size
    )
    near = np.flatnonzero(region & np.isfinite(peak))
    peak_near = peak.ravel()[near]
    del peak
    bg = background.at(near)
    contrast = np.maximum(peak_near - bg, 0.0)
    relative = np.clip(contrast / np.maximum(params.blood_hu - bg, 1.0), 0.0, 1.0)
    share = np.maximum(np.exp(-relative), params.extent_min_k)
    threshold = bg + np.maximum(share * contrast, params.min_contrast_hu * 0.5)
    inside = smooth.ravel()[near] >= threshold
    mask = np.zeros(core.shape, bool)
    mask.ravel()[near[inside]] = True

    # Grow from the core downhill only: a voxel joins from a neighbour at
    # least as dense (give or take the noise), so the extent stops at the
    # dip between a vessel and a neighbouring airway wall or vessel.
    grown = core.copy()
    structure = np.ones((3, 3, 3), bool)
    steps = int(math.ceil(params.extent_window_mm / min(spacing))) + 1
    for _ in range(steps):
        uphill = ndimage.maximum_filter(
            np.where(grown, smooth, -np.inf).astype(np.float32), footprint=structure
        )
        new = mask & ~grown & (uphill >= smooth - params.extent_rise_hu)
        if not new.any():
            break
        grown |= new
    return grown & mask


def _centreline_radius(mask: np.ndarray, spacing, params: VesselParams) -> np.ndarray:
    """Radius of every mask voxel from the cross-section around its centreline, mm.

    Every voxel belongs to its nearest centreline point. The cross-sectional
    area at a point is the volume of the voxels belonging to it and to its
    centreline neighbours (``radius_smoothing_steps`` rings) divided by the
    length of centreline they represent; the radius is ``sqrt(area / pi)``.
    Counting voxels, unlike the distance to the nearest boundary face, is not
    biased low by the staircase of a digitised surface.
    """
    from skimage.morphology import skeletonize

    voxels = np.flatnonzero(mask)
    if voxels.size == 0:
        return np.zeros(0, np.float32)
    box = _bounding_box(mask, margin=1)
    sub = mask[box]
    spacing_arr = np.asarray(spacing, float)

    centre = np.argwhere(skeletonize(sub))
    if centre.shape[0] == 0:
        centre = np.argwhere(sub)
    # argwhere of the sub-box lists voxels in the same order as flatnonzero
    # of the full mask, since the box keeps every voxel.
    points = np.argwhere(sub) * spacing_arr
    _, nearest = cKDTree(centre * spacing_arr).query(points, workers=-1)
    del points

    n = centre.shape[0]
    volume = np.bincount(nearest, minlength=n) * float(np.prod(spacing_arr))
    rows, cols, step_mm = _centreline_neighbours(centre, sub.shape, spacing_arr)
    length = 0.5 * np.bincount(rows, weights=step_mm, minlength=n)
    length = np.maximum(length, 0.5 * float(spacing_arr.min()))
    adjacency = sparse.csr_matrix(
        (
            np.ones(rows.size + n),
            (
                np.concatenate([rows, np.arange(n)]),
                np.concatenate([cols, np.arange(n)]),
            ),
        ),
        shape=(n, n),
    )
    volume_sum, length_sum = volume.astype(np.float64), length
    for _ in range(params.radius_smoothing_steps):
        volume_sum = adjacency @ volume_sum
        length_sum = adjacency @ length_sum
    radius = np.sqrt(volume_sum / length_sum / np.pi)
    return radius[nearest].astype(np.float32)


def _centreline_neighbours(points: np.ndarray, shape, spacing: np.ndarray):
    """26-connected pairs of centreline points and their distance in mm."""
    lookup = np.full(shape, -1, np.int64)
    lookup[tuple(points.T)] = np.arange(points.shape[0])
    rows, cols, steps = [], [], []
    for offset in np.ndindex(3, 3, 3):
        shift = np.array(offset) - 1
        if not shift.any():
            continue
        neighbour = points + shift
        inside = np.all((neighbour >= 0) & (neighbour < np.array(shape)), axis=1)
        found = np.full(points.shape[0], -1, np.int64)
        found[inside] = lookup[tuple(neighbour[inside].T)]
        ok = found >= 0
        rows.append(np.flatnonzero(ok))
        cols.append(found[ok])
        steps.append(np.full(int(ok.sum()), float(np.linalg.norm(shift * spacing))))
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(steps)
