"""Vessel features: intrapulmonary vessel volume, by calibre and by zone.

=============================================  ====================================
``vessel_volume_ml``                           intrapulmonary vessel volume
``vessel_volume_csa_lt5_ml``                   vessel volume of cross-sectional
                                               area below 5 mm^2
``vessel_volume_csa_5to10_ml``                 area from 5 to 10 mm^2
``vessel_volume_csa_gt10_ml``                  area above 10 mm^2
``vessel_lung_ratio_pct``                      vessel volume / lung volume x 100
``vessel_volume_<zone>_ml``                    vessel volume in each zone:
                                               ``upper``, ``middle``, ``lower``,
                                               ``rind``, ``core``
``vessel_small_share_pct``                     ``csa_lt5`` volume / vessel volume
                                               x 100
``vessel_reason``                              empty when measured, otherwise why
                                               the values above are empty
=============================================  ====================================

Every vessel voxel carries the cross-sectional area of the vessel it belongs
to (see :mod:`radscl.segmentation.vessels`), so the three bins add up to the
total. Volumes come from slice positions, never from the slice thickness.
Published small-vessel shares range from under 20 % to over 80 % with the
method, so the values are comparable only between scans measured with the
same :data:`~radscl.segmentation.vessels.VESSEL_METHOD` and parameters, which
the extraction records in its provenance.

Empty values
------------
Missing measurements are NaN, never zero, and ``vessel_reason`` says why:
``"gapped"`` for gapped (incremental) HRCT, where no vessel tree can be
followed; ``"no_lungs"`` when the lung mask is empty. Zone volumes are NaN
when no zones are given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from radscl.errors import ParameterError
from radscl.extractors.density import check_zones
from radscl.segmentation.lungs import LungSegmentation
from radscl.segmentation.vessels import CSA_BINS_MM2
from radscl.segmentation.vessels import VesselSegmentation

#: Lung zones reported separately, in this order.
ZONES = ("upper", "middle", "lower", "rind", "core")

_BIN_NAMES = (
    "vessel_volume_csa_lt5_ml",
    "vessel_volume_csa_5to10_ml",
    "vessel_volume_csa_gt10_ml",
)


def vessel_feature_names() -> list[str]:
    """Names of the features :func:`vessel_features` returns, in order."""
    names = ["vessel_volume_ml", *_BIN_NAMES, "vessel_lung_ratio_pct"]
    names += [f"vessel_volume_{zone}_ml" for zone in ZONES]
    names += ["vessel_small_share_pct", "vessel_reason"]
    return names


def vessel_features(
    scan,
    lungs: LungSegmentation,
    vessels: VesselSegmentation,
    zones: Mapping[str, np.ndarray] | None = None,
) -> dict[str, float | str]:
    """Measure the vessel features of one scan.

    Parameters
    ----------
    scan : radscl.io.Scan
        The scan (its ``metadata.contiguous`` decides whether vessels can be
        measured).
    lungs : LungSegmentation
        Its lungs: the lung volume of the ratio and the slice positions.
    vessels : VesselSegmentation
        From :func:`radscl.segmentation.vessels.segment_vessels`.
    zones : mapping of str to numpy.ndarray, optional
        Boolean lung zones on the scan grid, keyed by names in :data:`ZONES`;
        missing zones give NaN volumes.

    Returns
    -------
    dict
        Feature name to value, in the order of :func:`vessel_feature_names`.

    Raises
    ------
    ParameterError
        If a mask does not match the scan's shape or a zone name is unknown.
    """
    shape = tuple(scan.hounsfield.shape)
    for name, mask in (("lung labels", lungs.labels), ("vessel mask", vessels.mask)):
        if mask.shape != shape:
            raise ParameterError(
                f"{name} {mask.shape} do not match the scan's shape {shape}"
            )
    zones = check_zones(zones, shape, known=ZONES)

    features: dict[str, float | str] = dict.fromkeys(vessel_feature_names(), math.nan)
    reason = _reason(scan, lungs, vessels)
    features["vessel_reason"] = reason
    if reason:
        return features

    lung_mask = lungs.lung_mask
    vessel_mask = vessels.mask & lung_mask
    total_ml = lungs.volume_ml(vessel_mask)
    lung_ml = lungs.volume_ml(lung_mask)
    features["vessel_volume_ml"] = total_ml

    area = np.zeros(shape, np.float32)
    area.ravel()[np.flatnonzero(vessels.mask)] = vessels.csa_mm2
    low, high = CSA_BINS_MM2
    bins = (area < low, (area >= low) & (area <= high), area > high)
    for name, selected in zip(_BIN_NAMES, bins, strict=True):
        features[name] = lungs.volume_ml(vessel_mask & selected)

    features["vessel_lung_ratio_pct"] = 100.0 * total_ml / lung_ml
    for name, mask in zones.items():
        features[f"vessel_volume_{name}_ml"] = lungs.volume_ml(vessel_mask & mask)
    features["vessel_small_share_pct"] = (
        100.0 * features["vessel_volume_csa_lt5_ml"] / total_ml
        if total_ml
        else math.nan
    )
    return features


def _reason(scan, lungs: LungSegmentation, vessels: VesselSegmentation) -> str:
    """Why the vessel values are empty, or an empty string."""
    if not scan.metadata.contiguous:
        return "gapped"
    if not lungs.lung_mask.any() or not vessels.measured:
        return "no_lungs"
    return ""
