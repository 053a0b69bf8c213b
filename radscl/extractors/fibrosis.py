"""Fibrosis extent: pattern classification of the lung parenchyma.

Every parenchymal voxel (lung minus airway lumen, airway wall and vessels) is
classified into one of five patterns from the intensity and texture of its
neighbourhood, and the extent of each pattern is reported as a percentage of
the whole lung volume (airways and vessels included in the denominator, as in
``lung_volume_ml``):

=========================  =================================================
``fibrosis_extent_pct``    (ground glass + reticulation + honeycombing) /
                           lung volume x 100
``ggo_pct``                ground glass / lung volume x 100
``reticulation_pct``       reticulation / lung volume x 100
``honeycombing_pct``       honeycombing / lung volume x 100
``emphysema_pct``          emphysema / lung volume x 100
``fibrosis_volume_ml``     fibrotic volume (from slice positions)
=========================  =================================================

Zone variants put the zone before the unit (``fibrosis_extent_lower_pct``,
``ggo_rind_pct``); each is a percentage of the lung inside that zone. The
density features of :mod:`radscl.extractors.density` (``haa_pct``,
``laa950_pct``, ``mld_hu``, histogram percentiles, skewness and excess
kurtosis, whole lung) come with them from :func:`fibrosis_features`.

Neighbourhood features
----------------------
For each parenchymal voxel, six numbers describe it and its surroundings
(:data:`FEATURE_NAMES`): its own HU; the mean and standard deviation of the
parenchyma in a Gaussian neighbourhood of 2 mm sigma; the *background*
attenuation (the neighbourhood mean of voxels below -600 HU, so that bright
lines, vessels and walls do not raise it); the fraction of the neighbourhood
above -500 HU (lines, walls); and the fraction below -800 HU (air spaces).
Voxels on the border of the parenchyma (next to vessels, airway walls and the
pleura) carry partial volume of those structures: they are classified like
the others but count one tenth in everyone's neighbourhood statistics. The
statistics are gathered on blocks of about 1.4 mm and filtered with separable
Gaussians on the lung's bounding box, which keeps a 512 x 512 x 300 scan to a
few seconds. On gapped HRCT (``scan.metadata.contiguous`` false) the
neighbourhoods are two-dimensional and never reach across the gap; slices are
classified one by one and percentages stay valid.

Default rules
-------------
Without a trained model the patterns come from :class:`PatternRules`:

* emphysema: neighbourhood mean below -910 HU with almost no bright
  structure (< 5 % above -500 HU); the -950 HU emphysema threshold of
  Gevenois et al. (1996) applies to single voxels, and a neighbourhood mean
  of emphysematous lung sits above it because of noise and partial volume;
* honeycombing: clustered air spaces with thick bright walls: more than 45 %
  of the neighbourhood above -500 HU and a standard deviation above 170 HU;
* fibrotic lung, any of: background attenuation above -755 HU (normal
  inspiratory lung lies near -850 HU, ground glass at -700 HU and above; the
  high-attenuation band of Podolanczuk et al. begins at -600 HU); more than
  30 % of the neighbourhood above -500 HU; a textured neighbourhood
  (standard deviation above 200 HU with more than 15 % above -500 HU:
  honeycomb walls and coarse reticulation whose lines the vessel
  segmentation took); a voxel above -720 HU whose background is above
  -780 HU (the edges of ground-glass patches);
* within fibrotic lung, reticulation where more than 5 % of the
  neighbourhood is above -500 HU (a net of lines), ground glass elsewhere;
* normal lung otherwise.

How they were obtained: the HU bands are the published ones cited above; the
cut-offs between them were set by looking at the class-wise feature
distributions of synthetic phantoms (:mod:`radscl.phantom`, soft kernel,
seed 0, 0 to 40 % fibrosis, with the truth masks and with radscl's own lung,
airway and vessel segmentation) and checked on other seeds, a vessel-rich
phantom and the sharp kernel. They were not fitted
to any real annotated scan. What they are known to get wrong:

* dependent (posterior) lung on a poorly inspired scan, atelectasis and
  expiratory air trapping's surroundings reach -750 HU and are called ground
  glass, as any density rule would;
* a large vessel or airway the segmentation missed, and any consolidation,
  is called reticulation or honeycombing; a missed bronchus with its wall can
  pass for a honeycomb cyst; traction bronchiectasis is not separated from
  honeycombing;
* the split of fibrotic lung into its three patterns is much less reliable
  than the extent: the boundary between ground glass and reticulation is
  gradual, and honeycombing is mostly called ground glass or reticulation
  (small phantom at 40 % fibrosis with radscl's segmentation: ground glass
  18 % against 10 % true, reticulation 15 % against 18 %, honeycombing 4 %
  against 12 %, while the extent is within 1.3 points); a trained model does
  much better on the patterns it was trained on;
* true vessels running through fibrotic lung count as fibrosis
  (:func:`reclaim_vessels_in_fibrosis`);
* emphysema next to fibrosis (combined pulmonary fibrosis and emphysema) with
  bright walls is called honeycombing;
* the emphysema rule needs air at -950 HU or below; mild emphysema and the
  synthetic phantom's (-965 HU) sit close to it, so a +15 HU calibration
  offset halves it.

A scikit-learn classifier trained on annotated scans replaces the rules
(:func:`train_pattern_model`, ``radscl fibrosis train``, and the
``fibrosis: {model: PATH}`` entry of ``radscl extract --params``).

Kernels
-------
Sharp (lung) kernels add fine-grained noise and edge overshoot, which
inflates local standard deviation and the bright and dark fractions. Scans
whose kernel classifies as sharp (:func:`radscl.io.classify_kernel`) are
smoothed with a 0.7 mm Gaussian before the features are computed, which
brings the neighbourhood statistics of a sharp reconstruction close to those
of a soft one; the kernel, its class and the smoothing are recorded in the
result's provenance. See ``docs/fibrosis.md`` for the differences measured on
the same acquisition reconstructed with both kernels.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections.abc import Iterable
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from radscl.errors import ParameterError
from radscl.errors import SegmentationError
from radscl.extractors.density import check_zones
from radscl.extractors.density import density_features
from radscl.extractors.density import slice_weights
from radscl.extractors.density import zone_feature_name

logger = logging.getLogger(__name__)

#: Values of the pattern map.
OUTSIDE = 0
NORMAL = 1
GROUND_GLASS = 2
RETICULATION = 3
HONEYCOMBING = 4
EMPHYSEMA = 5

#: Pattern map values and their names.
PATTERN_LABELS: dict[int, str] = {
    OUTSIDE: "outside parenchyma",
    NORMAL: "normal",
    GROUND_GLASS: "ground glass",
    RETICULATION: "reticulation",
    HONEYCOMBING: "honeycombing",
    EMPHYSEMA: "emphysema",
}

#: Patterns that count towards ``fibrosis_extent_pct``.
FIBROTIC_PATTERNS = (GROUND_GLASS, RETICULATION, HONEYCOMBING)

#: Colour of each pattern in QC pictures (RGB, 0-1); normal lung is not drawn.
PATTERN_COLOURS: dict[int, tuple[float, float, float]] = {
    NORMAL: (0.55, 0.75, 0.55),
    GROUND_GLASS: (1.00, 0.85, 0.10),
    RETICULATION: (1.00, 0.45, 0.05),
    HONEYCOMBING: (0.85, 0.05, 0.25),
    EMPHYSEMA: (0.15, 0.55, 1.00),
}

#: Feature-name stem of each pattern.
PATTERN_FEATURES: dict[int, str] = {
    GROUND_GLASS: "ggo",
    RETICULATION: "reticulation",
    HONEYCOMBING: "honeycombing",
    EMPHYSEMA: "emphysema",
}

#: Names accepted for each pattern in label mappings.
PATTERN_NAMES: dict[str, int] = {
    "normal": NORMAL,
    "ground_glass": GROUND_GLASS,
    "ground glass": GROUND_GLASS,
    "ggo": GROUND_GLASS,
    "reticulation": RETICULATION,
    "honeycombing": HONEYCOMBING,
    "emphysema": EMPHYSEMA,
}

#: Mapping of the synthetic phantom's tissue labels to patterns; airway lumen,
#: airway wall and vessel (2, 3, 4) are not parenchyma and are left out.
PHANTOM_LABEL_MAPPING: dict[int, int] = {
    1: NORMAL,
    5: GROUND_GLASS,
    6: RETICULATION,
    7: HONEYCOMBING,
    8: EMPHYSEMA,
}

#: Columns of the neighbourhood feature matrix.
FEATURE_NAMES = (
    "hu",
    "local_mean_hu",
    "local_sd_hu",
    "background_hu",
    "bright_fraction",
    "dark_fraction",
)

_MODEL_FORMAT = "radscl-fibrosis-pattern-model"
_MODEL_VERSION = 1
# Weight of parenchymal border voxels in the neighbourhood statistics.
_BORDER_WEIGHT = 0.1


@dataclasses.dataclass(frozen=True)
class FeatureSettings:
    """How the neighbourhood features are computed.

    Attributes
    ----------
    scale_mm : float
        Gaussian sigma of the neighbourhood.
    block_mm : float
        Statistics are summed over blocks of about this size before filtering.
    background_below_hu : float
        Voxels below this value make up the background attenuation.
    bright_above_hu : float
        Voxels above this value count as bright (lines, walls).
    dark_below_hu : float
        Voxels below this value count as dark (air spaces).
    sharp_presmooth_mm : float
        Gaussian sigma applied to sharp-kernel scans first.
    """

    scale_mm: float = 2.0
    block_mm: float = 1.4
    background_below_hu: float = -600.0
    bright_above_hu: float = -500.0
    dark_below_hu: float = -800.0
    sharp_presmooth_mm: float = 0.7

    def presmooth_mm(self, kernel_class: str, pixel_mm: float = 0.0) -> float:
        """Pre-smoothing sigma for a kernel class (``sharp``/``soft``/``unknown``).

        Sharp scans get :attr:`sharp_presmooth_mm`, but at least half a pixel:
        on coarse pixels the kernel's noise and overshoot sit at the pixel
        scale, which a sub-pixel Gaussian would not touch.
        """
        if kernel_class != "sharp" or self.sharp_presmooth_mm <= 0:
            return 0.0
        return max(self.sharp_presmooth_mm, 0.5 * pixel_mm)


@dataclasses.dataclass(frozen=True)
class PatternRules:
    """The default pattern classifier: thresholds on the neighbourhood features.

    See the module notes for where each threshold comes from.
    """

    fibrotic_background_hu: float = -755.0
    fibrotic_bright_fraction: float = 0.30
    reticulation_bright_fraction: float = 0.05
    honeycomb_bright_fraction: float = 0.45
    honeycomb_sd_hu: float = 170.0
    textured_sd_hu: float = 200.0
    textured_bright_fraction: float = 0.15
    dense_voxel_hu: float = -720.0
    dense_voxel_background_hu: float = -780.0
    emphysema_mean_hu: float = -910.0
    emphysema_bright_fraction: float = 0.05
    settings: FeatureSettings = FeatureSettings()

    @property
    def description(self) -> str:
        """A short description recorded in the provenance."""
        return (
            "radscl default rules v2 (published HU bands, thresholds set on phantoms)"
        )

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Pattern of each row of a feature matrix (columns :data:`FEATURE_NAMES`)."""
        mean = features[:, 1]
        sd = features[:, 2]
        background = features[:, 3]
        bright = features[:, 4]

        patterns = np.full(features.shape[0], NORMAL, np.uint8)
        fibrotic = (
            (background > self.fibrotic_background_hu)
            | (bright > self.fibrotic_bright_fraction)
            | ((sd > self.textured_sd_hu) & (bright > self.textured_bright_fraction))
            | (
                (features[:, 0] > self.dense_voxel_hu)
                & (background > self.dense_voxel_background_hu)
            )
        )
        patterns[fibrotic] = GROUND_GLASS
        patterns[fibrotic & (bright > self.reticulation_bright_fraction)] = RETICULATION
        honeycomb = (bright > self.honeycomb_bright_fraction) & (
            sd > self.honeycomb_sd_hu
        )
        patterns[honeycomb] = HONEYCOMBING
        emphysema = (mean < self.emphysema_mean_hu) & (
            bright < self.emphysema_bright_fraction
        )
        patterns[emphysema] = EMPHYSEMA
        return patterns


@dataclasses.dataclass
class PatternModel:
    """A trained pattern classifier and how its features were computed.

    Attributes
    ----------
    classifier : object
        A fitted scikit-learn classifier whose classes are pattern values.
    settings : FeatureSettings
        Feature settings used in training; used again for prediction.
    feature_names : tuple of str
        Columns the classifier was trained on.
    description : str
        What it was trained on (recorded in the provenance).
    training : dict
        Number of scans and voxels per pattern, label mapping, versions.
    """

    classifier: Any
    settings: FeatureSettings
    feature_names: tuple[str, ...]
    description: str
    training: dict[str, Any] = dataclasses.field(default_factory=dict)
    source: str = ""

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Pattern of each row of a feature matrix."""
        patterns = np.empty(features.shape[0], np.uint8)
        # Predicting in chunks keeps the classifier's temporary arrays small.
        chunk = 2_000_000
        for start in range(0, features.shape[0], chunk):
            part = features[start : start + chunk]
            patterns[start : start + chunk] = self.classifier.predict(part)
        return patterns


@dataclasses.dataclass
class FibrosisResult:
    """Fibrosis and density features of one scan.

    Attributes
    ----------
    features : dict
        Feature name to value (see the module notes).
    patterns : numpy.ndarray
        ``uint8 [z, y, x]`` pattern map (:data:`PATTERN_LABELS`).
    provenance : dict
        Kernel, kernel class, pre-smoothing, neighbourhood, classifier and
        density mask: what the numbers depend on.
    """

    features: dict[str, float]
    patterns: np.ndarray
    provenance: dict[str, Any]


def kernel_class_of(scan) -> str:
    """``"sharp"``, ``"soft"`` or ``"unknown"`` for a scan's reconstruction kernel."""
    from radscl.io import classify_kernel

    known = getattr(scan.metadata, "kernel_class", "unknown")
    if known in ("sharp", "soft"):
        return known
    return classify_kernel(scan.metadata.kernel)


def pattern_features(
    hounsfield: np.ndarray,
    parenchyma_mask: np.ndarray,
    spacing_mm: tuple[float, float, float],
    *,
    contiguous: bool = True,
    kernel_class: str = "unknown",
    settings: FeatureSettings | None = None,
) -> tuple[np.ndarray, tuple[slice, slice, slice]]:
    """Neighbourhood features of every parenchymal voxel.

    Parameters
    ----------
    hounsfield : numpy.ndarray
        HU ``[z, y, x]``.
    parenchyma_mask : numpy.ndarray
        ``bool`` lung minus airways and vessels.
    spacing_mm : tuple of float
        ``(z, y, x)`` voxel spacing.
    contiguous : bool
        False for gapped HRCT: neighbourhoods stay within each slice.
    kernel_class : str
        ``"sharp"`` scans are pre-smoothed (:attr:`FeatureSettings.sharp_presmooth_mm`).
    settings : FeatureSettings, optional
        Defaults when omitted.

    Returns
    -------
    features : numpy.ndarray
        ``float32 [n, 6]``, one row per parenchymal voxel in C order (the order
        of ``hounsfield[parenchyma_mask]``), columns :data:`FEATURE_NAMES`.
    box : tuple of slice
        The bounding box of the parenchyma the features were computed on.
    """
    settings = settings or FeatureSettings()
    box = _bounding_box(parenchyma_mask)
    if box is None:
        return np.zeros((0, len(FEATURE_NAMES)), np.float32), (slice(0, 0),) * 3
    parenchyma = parenchyma_mask[box]
    image = hounsfield[box].astype(np.float32)
    in_slice = 0.0 if not contiguous else 1.0

    presmooth = settings.presmooth_mm(kernel_class, min(spacing_mm[1:]))
    if presmooth > 0:
        sigma = tuple(presmooth / s for s in spacing_mm)
        ndimage.gaussian_filter(
            image, (in_slice * sigma[0], sigma[1], sigma[2]), output=image, truncate=3.0
        )

    weight = parenchyma.astype(np.float32)
    border = parenchyma & ~_erode_in_plane_or_3d(parenchyma, contiguous)
    weight[border] = _BORDER_WEIGHT

    factors = _block_factors(spacing_mm, contiguous, settings.block_mm)
    coarse_spacing = [s * f for s, f in zip(spacing_mm, factors, strict=True)]
    sigma = [settings.scale_mm / s for s in coarse_spacing]
    sigma[0] *= in_slice

    def neighbourhood(values: np.ndarray) -> np.ndarray:
        summed = _block_sum(values, factors)
        return ndimage.gaussian_filter(summed, sigma, truncate=2.5, mode="constant")

    total = neighbourhood(weight)
    np.maximum(total, 1e-6, out=total)
    weighted = weight * image
    mean = neighbourhood(weighted) / total
    weighted *= image
    second = neighbourhood(weighted) / total
    del weighted
    sd = np.sqrt(np.maximum(second - mean * mean, 0.0))
    del second

    background_weight = weight * (image < settings.background_below_hu)
    background_total = neighbourhood(background_weight)
    background = neighbourhood(background_weight * image)
    del background_weight
    # With no background voxel in reach (solid tissue), the neighbourhood is
    # as dense as the background cut itself.
    empty = background_total < 1e-4
    background /= np.maximum(background_total, 1e-4)
    background[empty] = settings.background_below_hu
    del background_total

    bright = neighbourhood(weight * (image > settings.bright_above_hu)) / total
    dark = neighbourhood(weight * (image < settings.dark_below_hu)) / total

    index = _coarse_index(parenchyma.shape, factors, mean.shape)[parenchyma]
    features = np.empty((index.size, len(FEATURE_NAMES)), np.float32)
    features[:, 0] = image[parenchyma]
    for column, coarse in enumerate((mean, sd, background, bright, dark), start=1):
        features[:, column] = coarse.ravel()[index]
    return features, box


def classify_patterns(
    scan,
    parenchyma_mask: np.ndarray,
    model: PatternRules | PatternModel | None = None,
) -> np.ndarray:
    """Pattern map of a scan's parenchyma.

    Parameters
    ----------
    scan : radscl.io.Scan
        The scan; its kernel decides pre-smoothing and ``metadata.contiguous``
        whether neighbourhoods are 3D or per slice.
    parenchyma_mask : numpy.ndarray
        ``bool [z, y, x]`` lung minus airway lumen, airway wall and vessels.
    model : PatternRules or PatternModel, optional
        The default :class:`PatternRules` when omitted; a trained model from
        :func:`load_pattern_model` otherwise.

    Returns
    -------
    numpy.ndarray
        ``uint8 [z, y, x]``: 0 outside the parenchyma, then :data:`NORMAL`,
        :data:`GROUND_GLASS`, :data:`RETICULATION`, :data:`HONEYCOMBING`,
        :data:`EMPHYSEMA`.
    """
    model = model or PatternRules()
    parenchyma = _check_mask(parenchyma_mask, scan.hounsfield.shape, "parenchyma_mask")

    features, box = pattern_features(
        scan.hounsfield,
        parenchyma,
        scan.spacing_mm,
        contiguous=scan.metadata.contiguous,
        kernel_class=kernel_class_of(scan),
        settings=model.settings,
    )
    patterns = np.zeros(scan.hounsfield.shape, np.uint8)
    if features.shape[0]:
        region = np.zeros(parenchyma[box].shape, np.uint8)
        region[parenchyma[box]] = model.predict(features)
        patterns[box] = region
    logger.debug(
        "classified %d parenchymal voxels with %s", features.shape[0], _describe(model)
    )
    return patterns


def reclaim_vessels_in_fibrosis(
    patterns: np.ndarray,
    vessel_mask: np.ndarray,
    spacing_mm: tuple[float, float, float],
    *,
    contiguous: bool = True,
    scale_mm: float = 3.0,
    min_fibrotic_share: float = 0.5,
    block_mm: float = 1.4,
) -> np.ndarray:
    """Give vessel-mask voxels in fibrotic lung the pattern of their surroundings.

    Vessel enhancement filters respond to reticular lines and honeycomb walls
    as they do to vessels, so inside fibrotic lung a vessel mask takes part of
    the fibrosis away from the parenchyma. A vessel-mask voxel whose
    neighbourhood (Gaussian, ``scale_mm`` sigma) is mostly fibrotic parenchyma
    gets the fibrotic pattern most common around it; elsewhere it stays
    outside the pattern map. The price is that true vessels running through
    fibrotic lung count as fibrosis: about the vessel share of the lung times
    the fibrotic share (0.5 percentage points on phantoms at 40 % fibrosis).

    Parameters
    ----------
    patterns : numpy.ndarray
        ``uint8 [z, y, x]`` pattern map of the parenchyma.
    vessel_mask : numpy.ndarray
        ``bool`` vessel voxels (outside the parenchyma).
    spacing_mm : tuple of float
        ``(z, y, x)`` voxel spacing.
    contiguous : bool
        False for gapped HRCT: neighbourhoods stay within each slice.
    scale_mm : float
        Gaussian sigma of the neighbourhood.
    min_fibrotic_share : float
        Share of fibrotic parenchyma in the neighbourhood above which a vessel
        voxel is reclaimed.
    block_mm : float
        Block size of the neighbourhood sums (see :class:`FeatureSettings`).

    Returns
    -------
    numpy.ndarray
        A new pattern map with the reclaimed voxels filled in.
    """
    vessel_mask = _check_mask(vessel_mask, patterns.shape, "vessel_mask")
    result = patterns.copy()
    box = _bounding_box(vessel_mask & ~(patterns > 0))
    if box is None:
        return result
    margin = [int(np.ceil(2.5 * scale_mm / s)) for s in spacing_mm]
    if not contiguous:
        margin[0] = 0
    box = tuple(
        slice(max(0, b.start - m), min(n, b.stop + m))
        for b, m, n in zip(box, margin, patterns.shape, strict=True)
    )
    region = patterns[box]
    vessels = vessel_mask[box] & (region == OUTSIDE)

    factors = _block_factors(spacing_mm, contiguous, block_mm)
    coarse_spacing = [s * f for s, f in zip(spacing_mm, factors, strict=True)]
    sigma = [scale_mm / s for s in coarse_spacing]
    if not contiguous:
        sigma[0] = 0.0

    def neighbourhood(values: np.ndarray) -> np.ndarray:
        summed = _block_sum(values, factors)
        return ndimage.gaussian_filter(summed, sigma, truncate=2.5, mode="constant")

    parenchyma = neighbourhood(region > OUTSIDE)
    np.maximum(parenchyma, 1e-6, out=parenchyma)
    shares = np.stack(
        [neighbourhood(region == pattern) / parenchyma for pattern in FIBROTIC_PATTERNS]
    )
    index = _coarse_index(region.shape, factors, parenchyma.shape)[vessels]
    at_vessels = shares.reshape(len(FIBROTIC_PATTERNS), -1)[:, index]
    reclaimed = at_vessels.sum(axis=0) > min_fibrotic_share
    choice = np.asarray(FIBROTIC_PATTERNS, np.uint8)[at_vessels.argmax(axis=0)]
    values = region[vessels]
    values[reclaimed] = choice[reclaimed]
    region = region.copy()
    region[vessels] = values
    result[box] = region
    logger.debug("reclaimed %d vessel voxels in fibrotic lung", int(reclaimed.sum()))
    return result


def pattern_percentages(
    patterns: np.ndarray,
    lung_mask: np.ndarray,
    *,
    zones: Mapping[str, np.ndarray] | None = None,
    spacing_mm: tuple[float, float, float] | None = None,
    slice_positions_mm: np.ndarray | None = None,
) -> dict[str, float]:
    """Extent of each pattern as a percentage of the lung, whole and by zone.

    Parameters
    ----------
    patterns : numpy.ndarray
        Pattern map from :func:`classify_patterns`.
    lung_mask : numpy.ndarray
        ``bool`` whole lung, the denominator.
    zones : mapping, optional
        Boolean zone masks.
    spacing_mm : tuple of float, optional
        Needed for ``fibrosis_volume_ml``.
    slice_positions_mm : numpy.ndarray, optional
        Slices weigh by the lung they stand for (gapped HRCT).

    Returns
    -------
    dict
        ``fibrosis_extent_pct``, ``ggo_pct``, ``reticulation_pct``,
        ``honeycombing_pct``, ``emphysema_pct``, ``fibrosis_volume_ml`` (when
        ``spacing_mm`` is given) and their zone variants.
    """
    lung_mask = _check_mask(lung_mask, patterns.shape, "lung_mask")
    zones = check_zones(zones, patterns.shape)
    weights = slice_weights(slice_positions_mm, patterns.shape[0])

    features = _percentages(patterns, lung_mask, weights)
    if spacing_mm is not None:
        # Each slice stands for its weight in mm when positions are known.
        thickness = (
            weights
            if slice_positions_mm is not None
            else np.full_like(weights, spacing_mm[0])
        )
        fibrotic = np.isin(patterns, FIBROTIC_PATTERNS) & lung_mask
        area_ml = spacing_mm[1] * spacing_mm[2] / 1000.0
        per_slice = fibrotic.sum(axis=(1, 2))
        features["fibrosis_volume_ml"] = float((per_slice * thickness).sum() * area_ml)
    for zone, zone_mask in zones.items():
        zone_values = _percentages(patterns, lung_mask & zone_mask, weights)
        for name, value in zone_values.items():
            features[zone_feature_name(name, zone)] = value
    return features


def fibrosis_features(
    scan,
    lung_mask: np.ndarray,
    parenchyma_mask: np.ndarray,
    *,
    zones: Mapping[str, np.ndarray] | None = None,
    model: PatternRules | PatternModel | None = None,
    vessel_mask: np.ndarray | None = None,
) -> FibrosisResult:
    """Pattern extents and density features of one scan.

    Parameters
    ----------
    scan : radscl.io.Scan
        The scan.
    lung_mask : numpy.ndarray
        ``bool`` both lungs, everything inside the pleura (the denominator of
        every percentage and the mask of the density features).
    parenchyma_mask : numpy.ndarray
        ``bool`` lung minus airway lumen, airway wall and vessels; see
        :func:`parenchyma_from_labels`. On gapped HRCT, where no airway or
        vessel tree is extracted, the lung mask itself may be passed.
    zones : mapping of str to numpy.ndarray, optional
        Boolean zone masks (``upper``, ``middle``, ``lower``, ``rind``,
        ``core`` ...) from :mod:`radscl.segmentation`.
    model : PatternRules or PatternModel, optional
        Pattern classifier; the default rules when omitted.
    vessel_mask : numpy.ndarray, optional
        ``bool`` vessels removed from the parenchyma. When given, vessel voxels
        in mostly fibrotic lung take their surroundings' pattern
        (:func:`reclaim_vessels_in_fibrosis`), so that reticulation the vessel
        segmentation took is still counted.

    Returns
    -------
    FibrosisResult
        Features, the pattern map and the provenance.

    Raises
    ------
    SegmentationError
        When the lung mask is empty.
    ParameterError
        When a mask or zone does not match the scan's shape.
    """
    shape = scan.hounsfield.shape
    lung_mask = _check_mask(lung_mask, shape, "lung_mask")
    parenchyma = _check_mask(parenchyma_mask, shape, "parenchyma_mask") & lung_mask
    zones = check_zones(zones, shape)
    if not lung_mask.any():
        raise SegmentationError(f"{scan.source}: the lung mask is empty")
    model = model or PatternRules()

    patterns = classify_patterns(scan, parenchyma, model)
    if vessel_mask is not None:
        vessels = (
            _check_mask(vessel_mask, shape, "vessel_mask") & lung_mask & ~parenchyma
        )
        patterns = reclaim_vessels_in_fibrosis(
            patterns,
            vessels,
            scan.spacing_mm,
            contiguous=scan.metadata.contiguous,
            block_mm=model.settings.block_mm,
        )
    positions = None if scan.metadata.contiguous else scan.slice_positions_mm
    features = pattern_percentages(
        patterns,
        lung_mask,
        zones=zones,
        spacing_mm=scan.spacing_mm,
        slice_positions_mm=positions,
    )
    features.update(
        density_features(
            scan.hounsfield, lung_mask, zones=zones, slice_positions_mm=positions
        )
    )

    kernel_class = kernel_class_of(scan)
    provenance = {
        "kernel": scan.metadata.kernel,
        "kernel_class": kernel_class,
        "presmooth_mm": model.settings.presmooth_mm(
            kernel_class, min(scan.spacing_mm[1:])
        ),
        "neighbourhood": "3d" if scan.metadata.contiguous else "2d per slice",
        "pattern_classifier": _describe(model),
        "density_mask": "lung",
        "vessels_in_fibrosis": (
            "take the surrounding pattern" if vessel_mask is not None else "not given"
        ),
        "zones": sorted(zones),
    }
    return FibrosisResult(features=features, patterns=patterns, provenance=provenance)


def parenchyma_from_labels(label_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lung and parenchyma masks from radscl's combined label map.

    Parameters
    ----------
    label_map : numpy.ndarray
        Values of :data:`radscl.segmentation.LABELS`.

    Returns
    -------
    lung_mask, parenchyma_mask : numpy.ndarray
        The lung is right and left lung plus intrapulmonary airway lumen,
        airway wall and vessels; the parenchyma is right and left lung only.
    """
    from radscl.segmentation import AIRWAY_LUMEN
    from radscl.segmentation import AIRWAY_WALL
    from radscl.segmentation import LEFT_LUNG
    from radscl.segmentation import RIGHT_LUNG
    from radscl.segmentation import VESSEL

    parenchyma = np.isin(label_map, (RIGHT_LUNG, LEFT_LUNG))
    lung = parenchyma | np.isin(label_map, (AIRWAY_LUMEN, AIRWAY_WALL, VESSEL))
    return lung, parenchyma


# --------------------------------------------------------------------------
# Trained models


def parse_label_mapping(
    mapping: Mapping[Any, Any], source: str = "mapping"
) -> dict[int, int]:
    """Turn ``{annotation label: pattern}`` into ``{int label: pattern value}``.

    Parameters
    ----------
    mapping : mapping
        Keys are label values of an annotation map (int or digit strings);
        values are pattern names (``normal``, ``ground_glass``/``ggo``,
        ``reticulation``, ``honeycombing``, ``emphysema``), pattern values
        1-5, or ``ignore``/``None``/0 for labels to leave out.
    source : str
        Named in error messages (the file or option it came from).

    Returns
    -------
    dict
        Only the labels mapped to a pattern.

    Raises
    ------
    ParameterError
        When a key is not an integer or a value is not a pattern.
    """
    parsed: dict[int, int] = {}
    for key, value in mapping.items():
        try:
            label = int(key)
        except (TypeError, ValueError):
            raise ParameterError(
                f"{source}: label {key!r} is not an integer label value"
            ) from None
        if value is None or (
            isinstance(value, str) and value.strip().lower() == "ignore"
        ):
            continue
        if isinstance(value, str) and not value.strip().isdigit():
            name = value.strip().lower().replace("-", "_")
            if name not in PATTERN_NAMES:
                raise ParameterError(
                    f"{source}: label {label} maps to {value!r}; expected one of "
                    "normal, ground_glass, reticulation, honeycombing, emphysema, "
                    "ignore"
                )
            parsed[label] = PATTERN_NAMES[name]
            continue
        pattern = int(value)
        if pattern == OUTSIDE:
            continue
        if pattern not in PATTERN_LABELS:
            raise ParameterError(
                f"{source}: label {label} maps to {value!r}; pattern values are 1-5"
            )
        parsed[label] = pattern
    if not parsed:
        raise ParameterError(f"{source}: no label is mapped to a pattern")
    return parsed


def training_samples(
    scan,
    annotation: np.ndarray,
    mapping: Mapping[int, int],
    *,
    parenchyma_mask: np.ndarray | None = None,
    max_voxels_per_pattern: int = 20000,
    settings: FeatureSettings | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Feature rows and pattern labels drawn from one annotated scan.

    Parameters
    ----------
    scan : radscl.io.Scan
        The scan.
    annotation : numpy.ndarray
        Integer label map on the scan's grid.
    mapping : mapping of int to int
        Annotation label to pattern value (:func:`parse_label_mapping`).
    parenchyma_mask : numpy.ndarray, optional
        Parenchyma the neighbourhoods are computed on. When omitted, the
        voxels whose annotation maps to a pattern; pass a mask when the
        annotation covers only parts of the lung.
    max_voxels_per_pattern : int
        At most this many voxels of each pattern are drawn, at random.
    settings : FeatureSettings, optional
        Feature settings.
    seed : int
        Random seed of the draw.

    Returns
    -------
    features : numpy.ndarray
        ``float32 [n, 6]``.
    patterns : numpy.ndarray
        ``uint8 [n]``.
    """
    settings = settings or FeatureSettings()
    shape = scan.hounsfield.shape
    annotation = np.asarray(annotation)
    if annotation.shape != shape:
        raise ParameterError(
            f"annotation has shape {annotation.shape}, but the scan has {shape}"
        )
    lookup = np.zeros(int(max(annotation.max(), max(mapping))) + 1, np.uint8)
    for label, pattern in mapping.items():
        if label >= 0:
            lookup[label] = pattern
    target = lookup[np.clip(annotation, 0, lookup.size - 1).astype(np.intp)]
    if parenchyma_mask is None:
        parenchyma = target > 0
    else:
        parenchyma = _check_mask(parenchyma_mask, shape, "parenchyma_mask")

    features, box = pattern_features(
        scan.hounsfield,
        parenchyma,
        scan.spacing_mm,
        contiguous=scan.metadata.contiguous,
        kernel_class=kernel_class_of(scan),
        settings=settings,
    )
    labels = target[box][parenchyma[box]]
    rng = np.random.default_rng(seed)
    chosen = []
    for pattern in np.unique(labels[labels > 0]):
        rows = np.flatnonzero(labels == pattern)
        if rows.size > max_voxels_per_pattern:
            rows = rng.choice(rows, max_voxels_per_pattern, replace=False)
        chosen.append(rows)
    if not chosen:
        return np.zeros((0, features.shape[1]), np.float32), np.zeros(0, np.uint8)
    rows = np.sort(np.concatenate(chosen))
    return features[rows], labels[rows]


def train_pattern_model(
    samples: Iterable[tuple[np.ndarray, np.ndarray]],
    *,
    settings: FeatureSettings | None = None,
    classifier: str = "gradient_boosting",
    description: str = "",
    training: Mapping[str, Any] | None = None,
    iterations: int = 150,
    seed: int = 0,
) -> PatternModel:
    """Fit a scikit-learn pattern classifier on feature rows.

    Parameters
    ----------
    samples : iterable of (features, patterns)
        One pair per scan, from :func:`training_samples`.
    settings : FeatureSettings, optional
        The settings the features were computed with.
    classifier : str
        ``"gradient_boosting"`` (``HistGradientBoostingClassifier``, the
        default) or ``"random_forest"``.
    description : str
        Recorded with the model; say what it was trained on.
    training : mapping, optional
        Extra facts to record (label mapping, scan list).
    iterations : int
        Boosting iterations, or trees of the random forest.
    seed : int
        Random seed of the classifier.

    Returns
    -------
    PatternModel

    Raises
    ------
    ParameterError
        When fewer than two patterns are present or the classifier is unknown.
    """
    import sklearn
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.ensemble import RandomForestClassifier

    features = []
    patterns = []
    n_scans = 0
    for scan_features, scan_patterns in samples:
        features.append(scan_features)
        patterns.append(scan_patterns)
        n_scans += 1
    if not features:
        raise ParameterError("no training scans were given")
    X = np.concatenate(features)
    y = np.concatenate(patterns)
    present = np.unique(y)
    if iterations < 1:
        raise ParameterError(f"iterations must be at least 1, but found {iterations}")
    if present.size < 2:
        raise ParameterError(
            f"training needs at least two patterns, but found {present.tolist()}"
        )

    if classifier == "gradient_boosting":
        estimator = HistGradientBoostingClassifier(
            max_iter=iterations, learning_rate=0.1, max_leaf_nodes=31, random_state=seed
        )
    elif classifier == "random_forest":
        estimator = RandomForestClassifier(
            n_estimators=iterations,
            max_depth=14,
            min_samples_leaf=5,
            n_jobs=1,
            random_state=seed,
        )
    else:
        raise ParameterError(
            "classifier must be gradient_boosting or random_forest, "
            f"but found {classifier!r}"
        )
    estimator.fit(X, y)

    counts = {PATTERN_LABELS[int(p)]: int((y == p).sum()) for p in present}
    record = {
        "scans": n_scans,
        "voxels_per_pattern": counts,
        "classifier": classifier,
        "sklearn": sklearn.__version__,
        **dict(training or {}),
    }
    logger.info("trained %s on %d scans: %s", classifier, n_scans, counts)
    return PatternModel(
        classifier=estimator,
        settings=settings or FeatureSettings(),
        feature_names=FEATURE_NAMES,
        description=description or f"{classifier} trained on {n_scans} scans",
        training=record,
    )


def save_pattern_model(model: PatternModel, path: str | os.PathLike[str]) -> Path:
    """Write a trained model with joblib (compressed).

    Returns
    -------
    pathlib.Path
        The file written.
    """
    import joblib

    path = Path(path)
    bundle = {
        "format": _MODEL_FORMAT,
        "version": _MODEL_VERSION,
        "classifier": model.classifier,
        "settings": dataclasses.asdict(model.settings),
        "feature_names": list(model.feature_names),
        "description": model.description,
        "training": model.training,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(bundle, path, compress=3)
    return path


def load_pattern_model(path: str | os.PathLike[str]) -> PatternModel:
    """Read a model written by :func:`save_pattern_model` or ``radscl fibrosis train``.

    A joblib file can run code when loaded: load only models you trust.

    Parameters
    ----------
    path : str or path-like
        The ``.joblib`` file.

    Returns
    -------
    PatternModel

    Raises
    ------
    ParameterError
        When the file is missing, unreadable or not a radscl pattern model.
    """
    import joblib

    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"{path}: pattern model file not found")
    try:
        bundle = joblib.load(path)
    except Exception as error:  # joblib raises many kinds on a bad file
        raise ParameterError(f"{path}: cannot read pattern model ({error})") from None
    if not isinstance(bundle, dict) or bundle.get("format") != _MODEL_FORMAT:
        raise ParameterError(f"{path}: not a radscl fibrosis pattern model")
    if bundle.get("version") != _MODEL_VERSION:
        raise ParameterError(
            f"{path}: pattern model version {bundle.get('version')} is not supported "
            f"(expected {_MODEL_VERSION})"
        )
    if tuple(bundle["feature_names"]) != FEATURE_NAMES:
        raise ParameterError(
            f"{path}: the model was trained on features {bundle['feature_names']}, "
            f"but this radscl computes {list(FEATURE_NAMES)}"
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return PatternModel(
        classifier=bundle["classifier"],
        settings=FeatureSettings(**bundle["settings"]),
        feature_names=FEATURE_NAMES,
        description=bundle["description"],
        training=bundle["training"],
        source=f"{path.name} (sha256 {digest})",
    )


def pattern_model_from_params(
    params: Mapping[str, Any] | None, source: str = "params"
) -> PatternRules | PatternModel:
    """The pattern classifier named by the ``fibrosis`` section of a params file.

    Parameters
    ----------
    params : mapping or None
        The ``fibrosis`` section, e.g. ``{"model": "models/patterns.joblib"}``;
        the default rules when None or without ``model``.
    source : str
        The params file, named in error messages.

    Returns
    -------
    PatternRules or PatternModel

    Raises
    ------
    ParameterError
        On an unknown key or a model that cannot be loaded.
    """
    if not params:
        return PatternRules()
    if not isinstance(params, Mapping):
        raise ParameterError(
            f"{source}: fibrosis must be a mapping, but found {params!r}"
        )
    unknown = sorted(set(params) - {"model"})
    if unknown:
        raise ParameterError(
            f"{source}: unknown key fibrosis.{unknown[0]} (known: model)"
        )
    if params.get("model") in (None, "", "rules", "default"):
        return PatternRules()
    return load_pattern_model(params["model"])


# --------------------------------------------------------------------------
# Helpers


def _describe(model: PatternRules | PatternModel) -> str:
    if isinstance(model, PatternModel):
        source = f" from {model.source}" if model.source else ""
        return f"{model.description}{source}"
    return model.description


def _percentages(
    patterns: np.ndarray, lung_mask: np.ndarray, weights: np.ndarray
) -> dict[str, float]:
    names = [
        "fibrosis_extent_pct",
        *(f"{stem}_pct" for stem in PATTERN_FEATURES.values()),
    ]
    box = _bounding_box(lung_mask)
    if box is None:
        return dict.fromkeys(names, float("nan"))

    # Count every pattern on every slice in one pass: boolean indexing returns
    # voxels slice by slice, so slice numbers repeat by each slice's count.
    lung = lung_mask[box]
    per_slice_lung = lung.sum(axis=(1, 2))
    n_patterns = len(PATTERN_LABELS)
    slice_of_voxel = np.repeat(np.arange(per_slice_lung.size), per_slice_lung)
    codes = slice_of_voxel * n_patterns + patterns[box][lung]
    counts = np.bincount(codes, minlength=per_slice_lung.size * n_patterns)
    counts = counts.reshape(per_slice_lung.size, n_patterns).astype(np.float64)
    volume = (counts * weights[box[0], None]).sum(axis=0)
    lung_volume = float((per_slice_lung * weights[box[0]]).sum())

    features = {
        "fibrosis_extent_pct": float(
            100.0 * volume[list(FIBROTIC_PATTERNS)].sum() / lung_volume
        )
    }
    for pattern, stem in PATTERN_FEATURES.items():
        features[f"{stem}_pct"] = float(100.0 * volume[pattern] / lung_volume)
    return features


def _check_mask(mask: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.shape != tuple(shape):
        raise ParameterError(
            f"{name} has shape {mask.shape}, but the scan has {tuple(shape)}"
        )
    return mask.astype(bool, copy=False)


def _bounding_box(mask: np.ndarray) -> tuple[slice, slice, slice] | None:
    # Projections are several times faster than ndimage.find_objects, which
    # needs an integer copy of the whole volume.
    slices = np.flatnonzero(mask.any(axis=(1, 2)))
    if slices.size == 0:
        return None
    part = mask[slices[0] : slices[-1] + 1]
    rows = np.flatnonzero(part.any(axis=(0, 2)))
    columns = np.flatnonzero(part.any(axis=(0, 1)))
    return (
        slice(int(slices[0]), int(slices[-1]) + 1),
        slice(int(rows[0]), int(rows[-1]) + 1),
        slice(int(columns[0]), int(columns[-1]) + 1),
    )


def _erode_in_plane_or_3d(mask: np.ndarray, contiguous: bool) -> np.ndarray:
    structure = ndimage.generate_binary_structure(3, 1)
    if not contiguous:
        structure[0] = False
        structure[2] = False
    return ndimage.binary_erosion(mask, structure, border_value=0)


def _block_factors(
    spacing_mm: tuple[float, float, float], contiguous: bool, block_mm: float
) -> tuple[int, int, int]:
    factors = [max(1, int(block_mm / s + 0.5)) for s in spacing_mm]
    if not contiguous:
        factors[0] = 1
    return tuple(factors)


def _block_sum(values: np.ndarray, factors: tuple[int, int, int]) -> np.ndarray:
    """Sum over blocks of ``factors`` voxels; the far edges are padded with zeros."""
    summed = values.astype(np.float32, copy=False)
    for axis, factor in enumerate(factors):
        if factor == 1:
            continue
        n = summed.shape[axis]
        blocks = -(-n // factor)
        shape = list(summed.shape)
        shape[axis] = blocks
        out = np.zeros(shape, np.float32)
        # Strided adds are much faster than a reshaped reduction over
        # interleaved axes.
        for offset in range(factor):
            index = [slice(None)] * 3
            index[axis] = slice(offset, n, factor)
            part = summed[tuple(index)]
            target = [slice(None)] * 3
            target[axis] = slice(0, part.shape[axis])
            out[tuple(target)] += part
        summed = out
    return summed


def _coarse_index(
    shape: tuple[int, int, int],
    factors: tuple[int, int, int],
    coarse_shape: tuple[int, ...],
) -> np.ndarray:
    """Flat index into the coarse grid of every voxel of the fine grid."""
    dtype = np.int32 if np.prod(coarse_shape) < 2**31 else np.int64
    _, cy, cx = coarse_shape
    z = (np.arange(shape[0], dtype=dtype) // factors[0]) * dtype(cy * cx)
    y = (np.arange(shape[1], dtype=dtype) // factors[1]) * dtype(cx)
    x = np.arange(shape[2], dtype=dtype) // factors[2]
    flat = np.empty(shape, dtype)
    np.add(z[:, None, None], y[None, :, None], out=flat)
    flat += x[None, None, :]
    return flat
