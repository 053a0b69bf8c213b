"""Airway features: lumen volumes, airway-to-lung ratio and tree measurements.

=============================================  ====================================
``airway_volume_ml``                           all segmented lumen, trachea and
                                               main bronchi included
``airway_intrapulmonary_volume_ml``            lumen inside the lung boundary
``airway_lung_ratio_pct``                      intrapulmonary lumen / lung volume
                                               x 100
``airway_branch_count``                        branches below the trachea
                                               (generation >= 1)
``airway_max_generation``                      deepest generation reached (trachea
                                               = 0)
``airway_intrapulmonary_volume_<zone>_ml``     intrapulmonary lumen in each zone:
                                               ``upper``, ``middle``, ``lower``,
                                               ``rind``, ``core``
``airway_lumen_diameter_gen<k>_mm``            mean lumen diameter of the branches
                                               of generation ``k``, for ``k`` in
                                               :data:`DIAMETER_GENERATIONS`
``airway_reason``                              empty when measured, otherwise why
                                               the values above are empty
=============================================  ====================================

Volumes count voxels with the slice interval, never the slice thickness. All
airway values describe the airways the scan resolves (see
:mod:`radscl.segmentation.airways`): they are comparable between scans of
similar resolution, not absolute anatomical volumes.

Empty values
------------
Measurements that are missing are NaN, never zero, and ``airway_reason`` says
why: ``"gapped"`` for gapped (incremental) HRCT, where no tree can be traced
and no airway volume measured; ``"no_seed"`` when no trachea was found;
``"no_tree"`` when a lumen was found but no centreline could be traced (the
volumes are then still given). A generation the tree did not reach has a NaN
diameter; zone volumes are NaN when no zones are given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from radscl.errors import ParameterError
from radscl.extractors.density import check_zones
from radscl.segmentation.airways import AirwaySegmentation
from radscl.segmentation.lungs import LungSegmentation

#: Lung zones reported separately, in this order.
ZONES = ("upper", "middle", "lower", "rind", "core")

#: Generations whose mean lumen diameter is reported. Thin-slice CT resolves
#: airways to about the eighth generation; deeper ones are rarely complete.
DIAMETER_GENERATIONS = tuple(range(9))


def airway_feature_names() -> list[str]:
    """Names of the features :func:`airway_features` returns, in order."""
    names = [
        "airway_volume_ml",
        "airway_intrapulmonary_volume_ml",
        "airway_lung_ratio_pct",
        "airway_branch_count",
        "airway_max_generation",
    ]
    names += [f"airway_intrapulmonary_volume_{zone}_ml" for zone in ZONES]
    names += [f"airway_lumen_diameter_gen{k}_mm" for k in DIAMETER_GENERATIONS]
    names.append("airway_reason")
    return names


def airway_features(
    scan,
    lungs: LungSegmentation,
    airways: AirwaySegmentation,
    zones: Mapping[str, np.ndarray] | None = None,
) -> dict[str, float | int | str]:
    """Measure the airway features of one scan.

    Parameters
    ----------
    scan : radscl.io.Scan
        The scan (its ``metadata.contiguous`` decides whether a tree can be
        measured).
    lungs : LungSegmentation
        Its lungs (the denominator of the ratio and the lung boundary).
    airways : AirwaySegmentation
        Its airways, from :func:`radscl.segmentation.airways.segment_airways`.
    zones : mapping of str to numpy.ndarray, optional
        Boolean lung zones on the scan grid, keyed by the names in
        :data:`ZONES`; missing zones give NaN volumes.

    Returns
    -------
    dict
        Feature name to value, in the order of :func:`airway_feature_names`.

    Raises
    ------
    ParameterError
        If a mask does not match the scan's shape or a zone name is unknown.
    """
    shape = scan.hounsfield.shape
    for name, mask in (("lung labels", lungs.labels), ("airway lumen", airways.lumen)):
        if mask.shape != shape:
            raise ParameterError(
                f"{name} {mask.shape} do not match the scan's shape {shape}"
            )
    zones = check_zones(zones, shape, known=ZONES)

    features: dict[str, float | int | str] = dict.fromkeys(
        airway_feature_names(), math.nan
    )
    reason = _reason(scan, airways)
    features["airway_reason"] = reason
    if reason in ("gapped", "no_seed"):
        return features

    voxel_ml = float(scan.voxel_volume_ml)
    lung_mask = lungs.lung_mask
    intrapulmonary = airways.lumen & lung_mask
    intrapulmonary_ml = float(np.count_nonzero(intrapulmonary)) * voxel_ml
    lung_ml = float(np.count_nonzero(lung_mask)) * voxel_ml
    features["airway_volume_ml"] = float(np.count_nonzero(airways.lumen)) * voxel_ml
    features["airway_intrapulmonary_volume_ml"] = intrapulmonary_ml
    features["airway_lung_ratio_pct"] = (
        100.0 * intrapulmonary_ml / lung_ml if lung_ml else math.nan
    )
    for name, mask in zones.items():
        count = np.count_nonzero(intrapulmonary & mask)
        features[f"airway_intrapulmonary_volume_{name}_ml"] = float(count) * voxel_ml

    tree = airways.tree
    if tree is None:
        return features
    features["airway_branch_count"] = tree.branch_count
    features["airway_max_generation"] = tree.max_generation
    diameters = tree.lumen_diameter_by_generation_mm()
    for k in DIAMETER_GENERATIONS:
        if k in diameters:
            features[f"airway_lumen_diameter_gen{k}_mm"] = diameters[k]
    return features


def _reason(scan, airways: AirwaySegmentation) -> str:
    """Why tree measurements are empty, or an empty string."""
    if not scan.metadata.contiguous:
        return "gapped"
    if not airways.lumen.any():
        return "no_seed"
    if airways.tree is None:
        return "no_tree"
    return ""
