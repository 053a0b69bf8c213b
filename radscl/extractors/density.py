"""Lung density: high- and low-attenuation areas and the attenuation histogram.

These measures need no pattern classifier and work on any chest CT, including
gapped HRCT and thick slices. All of them are computed on the **whole lung**:
every voxel inside the pleural boundary, intrapulmonary airways and vessels
included (``lung_volume_ml``'s mask), not on the parenchyma left after removing
airways and vessels. That is how the literature they come from defines them:

* ``haa_pct``: high-attenuation area, the percentage of lung voxels between
  -600 and -250 HU inclusive (Podolanczuk et al., Eur Respir J 2016;
  Easthausen et al., Respirology 2020, whose reference values, median 4.3 % in
  healthy never-smokers, include vessel partial volume);
* ``laa950_pct``: low-attenuation area, the percentage of lung voxels below
  -950 HU (Gevenois et al., AJRCCM 1996);
* ``mld_hu``, ``hist_skewness``, ``hist_kurtosis``: mean, skewness and kurtosis
  of the whole-lung attenuation histogram (Best et al., Radiology 2003 and
  2008; Ash et al., Respir Res 2017).

Keeping the whole lung also keeps the numbers independent of how well airways
and vessels were segmented, and available where they are not (gapped HRCT).
The price is that a large pulmonary vessel volume raises ``haa_pct`` and the
right tail of the histogram a little; call :func:`density_features` with the
parenchyma mask when that matters.

Column names (zone variants put the zone before the unit, ``haa_lower_pct``,
``mld_rind_hu``, ``hist_p25_core_hu``; unit-less names end with the zone,
``hist_kurtosis_lower``):

========================  ===================================================
``haa_pct``               % of voxels in [-600, -250] HU
``laa950_pct``            % of voxels below -950 HU
``mld_hu``                mean attenuation
``hist_p10_hu`` ...       10th, 25th, 40th, 50th, 75th and 90th percentiles of
``hist_p90_hu``           attenuation (numpy's default linear interpolation)
``hist_skewness``         skewness, population moments (``scipy.stats.skew``)
``hist_kurtosis``         **excess** (Fisher) kurtosis, population moments: 0 for
                          a normal distribution (``scipy.stats.kurtosis``)
========================  ===================================================

Sharp (lung) kernels add high-frequency noise and edge overshoot: the
histogram widens and ``laa950_pct`` rises sharply compared with a soft
reconstruction of the same acquisition (13 % against 0.1 % on one TCIA scan),
and mean density and kurtosis shift in a direction that depends on the scanner
and on the lung mask. No correction is applied here; see ``docs/fibrosis.md``
for measured differences and harmonise across kernels (:mod:`radscl.harmonize`).

Gapped HRCT: each slice stands for the distance to its neighbours (from the
slice positions), so percentages and histograms weigh slices by that distance;
for a regular stack every slice weighs the same and the numbers are plain
voxel counts.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from collections.abc import Sequence

import numpy as np

from radscl.errors import ParameterError

logger = logging.getLogger(__name__)

#: High-attenuation band, inclusive, in HU (Podolanczuk et al. 2016).
HAA_RANGE_HU = (-600, -250)
#: Low-attenuation threshold: voxels strictly below it count (Gevenois et al. 1996).
LAA_BELOW_HU = -950
#: Percentiles of the attenuation histogram reported as ``hist_p<q>_hu``.
PERCENTILES = (10, 25, 40, 50, 75, 90)

_UNITS = ("_pct", "_hu", "_ml", "_mm")
_ZONE_NAME = re.compile(r"^[a-z][a-z0-9]*$")


def zone_feature_name(name: str, zone: str) -> str:
    """Name of the zone variant of a feature: the zone goes before the unit.

    Parameters
    ----------
    name : str
        Whole-lung feature name, e.g. ``"haa_pct"``.
    zone : str
        Zone name, e.g. ``"lower"``.

    Returns
    -------
    str
        ``"haa_lower_pct"``; unit-less names get the zone appended
        (``"hist_kurtosis_lower"``).
    """
    for unit in _UNITS:
        if name.endswith(unit):
            return f"{name[: -len(unit)]}_{zone}{unit}"
    return f"{name}_{zone}"


def slice_weights(slice_positions_mm: np.ndarray | None, n_slices: int) -> np.ndarray:
    """Thickness of lung each slice stands for, from the slice positions.

    A slice stands for half the distance to each neighbour; an end slice for
    the distance to its one neighbour. A regular stack gets its interval for
    every slice; gapped HRCT (1 mm every 10 mm) gets 10 mm per slice.

    Parameters
    ----------
    slice_positions_mm : numpy.ndarray or None
        Ascending positions along the slice normal; equal weights when None.
    n_slices : int
        Number of slices in the volume.

    Returns
    -------
    numpy.ndarray
        ``float64 [n_slices]`` in mm (ones when positions are unknown).
    """
    if slice_positions_mm is None or n_slices < 2:
        return np.ones(n_slices)
    positions = np.asarray(slice_positions_mm, dtype=np.float64)
    if positions.shape != (n_slices,):
        raise ParameterError(
            f"slice_positions_mm must have one position per slice ({n_slices}), "
            f"but found {positions.shape}"
        )
    gaps = np.abs(np.diff(positions))
    weights = np.empty(n_slices)
    weights[1:-1] = 0.5 * (gaps[:-1] + gaps[1:])
    weights[0] = gaps[0]
    weights[-1] = gaps[-1]
    return weights


def check_zones(
    zones: Mapping[str, np.ndarray] | None,
    shape: tuple[int, ...],
    known: Sequence[str] | None = None,
) -> dict:
    """Validate a mapping of zone names to boolean masks on the scan's grid.

    Parameters
    ----------
    zones : mapping of str to numpy.ndarray, optional
    shape : tuple of int
        The scan's shape.
    known : sequence of str, optional
        The zone names the caller reports; any other name is an error.

    Raises
    ------
    ParameterError
        When a name is not lower-case letters and digits or not among
        ``known``, or a mask has the wrong shape.
    """
    if zones is None:
        return {}
    checked = {}
    for name, mask in zones.items():
        if not isinstance(name, str) or not _ZONE_NAME.match(name):
            raise ParameterError(
                f"zone names must be lower-case letters and digits, but found {name!r}"
            )
        if known is not None and name not in known:
            raise ParameterError(
                f"unknown lung zone {name!r}; expected one of {list(known)}"
            )
        mask = np.asarray(mask)
        if mask.shape != tuple(shape):
            raise ParameterError(
                f"zone {name!r} has shape {mask.shape}, but the scan has {tuple(shape)}"
            )
        checked[name] = mask.astype(bool, copy=False)
    return checked


def histogram_statistics(
    hounsfield: np.ndarray,
    mask: np.ndarray,
    weights: np.ndarray | None = None,
) -> dict[str, float]:
    """Density statistics of the voxels in ``mask``.

    Parameters
    ----------
    hounsfield : numpy.ndarray
        Integer HU ``[z, y, x]`` (floats are rounded to the nearest HU).
    mask : numpy.ndarray
        ``bool`` voxels to measure, same shape.
    weights : numpy.ndarray, optional
        One weight per slice (:func:`slice_weights`); equal when omitted.

    Returns
    -------
    dict
        Whole-lung names (``haa_pct``, ``laa950_pct``, ``mld_hu``,
        ``hist_p10_hu`` ... ``hist_p90_hu``, ``hist_skewness``,
        ``hist_kurtosis``); NaN for every value when the mask is empty.
    """
    names = _statistic_names()
    if not mask.any():
        return dict.fromkeys(names, float("nan"))

    counts, low = _weighted_histogram(hounsfield, mask, weights)
    values = np.arange(low, low + counts.size, dtype=np.float64)
    total = counts.sum()

    mean = float((counts * values).sum() / total)
    centred = values - mean
    m2 = float((counts * centred**2).sum() / total)
    m3 = float((counts * centred**3).sum() / total)
    m4 = float((counts * centred**4).sum() / total)
    in_haa = (values >= HAA_RANGE_HU[0]) & (values <= HAA_RANGE_HU[1])
    result = {
        "haa_pct": float(100.0 * counts[in_haa].sum() / total),
        "laa950_pct": float(100.0 * counts[values < LAA_BELOW_HU].sum() / total),
        "mld_hu": mean,
    }
    equal = weights is None or np.allclose(weights, weights[0])
    percentiles = _percentiles(counts, values, PERCENTILES, equal)
    for q, value in zip(PERCENTILES, percentiles, strict=True):
        result[f"hist_p{q}_hu"] = value
    result["hist_skewness"] = m3 / m2**1.5 if m2 > 0 else float("nan")
    result["hist_kurtosis"] = m4 / m2**2 - 3.0 if m2 > 0 else float("nan")
    return result


def density_features(
    hounsfield: np.ndarray,
    lung_mask: np.ndarray,
    *,
    zones: Mapping[str, np.ndarray] | None = None,
    slice_positions_mm: np.ndarray | None = None,
) -> dict[str, float]:
    """Whole-lung and zone-wise density features.

    Parameters
    ----------
    hounsfield : numpy.ndarray
        Integer HU ``[z, y, x]``.
    lung_mask : numpy.ndarray
        ``bool`` whole lung (airways and vessels inside the pleura included).
        Pass the parenchyma mask instead to get parenchymal values under the
        same names.
    zones : mapping of str to numpy.ndarray, optional
        Boolean zone masks (``upper``, ``middle``, ``lower``, ``rind``,
        ``core`` ...); each zone is measured on ``lung_mask & zone``.
    slice_positions_mm : numpy.ndarray, optional
        Slice positions, so that unevenly spaced slices weigh by the lung they
        stand for (:func:`slice_weights`).

    Returns
    -------
    dict
        Feature name to value; see the module notes for the names.
    """
    lung_mask = _check_mask(lung_mask, hounsfield.shape, "lung_mask")
    zones = check_zones(zones, hounsfield.shape)
    weights = slice_weights(slice_positions_mm, hounsfield.shape[0])

    features = histogram_statistics(hounsfield, lung_mask, weights)
    for zone, zone_mask in zones.items():
        zone_values = histogram_statistics(hounsfield, lung_mask & zone_mask, weights)
        for name, value in zone_values.items():
            features[zone_feature_name(name, zone)] = value
    return features


def _statistic_names() -> list[str]:
    return [
        "haa_pct",
        "laa950_pct",
        "mld_hu",
        *(f"hist_p{q}_hu" for q in PERCENTILES),
        "hist_skewness",
        "hist_kurtosis",
    ]


def _check_mask(mask: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.shape != tuple(shape):
        raise ParameterError(
            f"{name} has shape {mask.shape}, but the scan has {tuple(shape)}"
        )
    return mask.astype(bool, copy=False)


def _weighted_histogram(
    hounsfield: np.ndarray, mask: np.ndarray, weights: np.ndarray | None
) -> tuple[np.ndarray, int]:
    """Counts per integer HU from the lowest value in the mask up."""
    hu = hounsfield[mask]
    if not np.issubdtype(hu.dtype, np.integer):
        hu = np.rint(hu)
    low = int(hu.min())
    bins = hu.astype(np.int64) - low
    if weights is None or np.allclose(weights, weights[0]):
        return np.bincount(bins).astype(np.float64), low

    # Boolean indexing returns voxels slice by slice, so repeating each slice's
    # weight by its voxel count lines the weights up with the values.
    per_slice = mask.sum(axis=(1, 2))
    return np.bincount(bins, weights=np.repeat(weights, per_slice)), low


def _percentiles(
    counts: np.ndarray, values: np.ndarray, qs: tuple[int, ...], equal: bool
) -> list[float]:
    """Percentiles of a histogram.

    With equal weights this is numpy's default (linear interpolation between
    the order statistics); with slice weights it is the weighted inverted
    distribution function, which differs from it by under one HU.
    """
    cumulative = np.cumsum(counts)
    total = cumulative[-1]
    result = []
    for q in qs:
        if equal:
            n = int(round(total))
            position = q / 100.0 * (n - 1)
            below = int(np.floor(position))
            fraction = position - below
            lower = values[np.searchsorted(cumulative, below + 1 - 0.5)]
            upper = values[np.searchsorted(cumulative, min(below + 1, n - 1) + 1 - 0.5)]
            result.append(float(lower + fraction * (upper - lower)))
        else:
            index = np.searchsorted(cumulative, q / 100.0 * total * (1 - 1e-12))
            result.append(float(values[min(index, values.size - 1)]))
    return result
