"""Quality checks common to every format, and the final wrapping into a Scan."""

from __future__ import annotations

import logging
import math

import numpy as np

from radscl.io.scan import AIR_HU
from radscl.io.scan import ERROR
from radscl.io.scan import INFO
from radscl.io.scan import WARNING
from radscl.io.scan import QualityFinding
from radscl.io.scan import Scan
from radscl.io.scan import ScanMetadata

logger = logging.getLogger(__name__)

#: Values below this many HU cannot be tissue or air (the scale starts near
#: -1024); they are padding outside the reconstruction circle (-2000, -2048,
#: -3024 are common) and are set to air.
PADDING_BELOW_HU = -1500

#: Slice interval / thickness above which a scan counts as gapped HRCT.
GAPPED_RATIO = 2.0

#: Fewer slices than this cannot support volumetric chest measurements.
MIN_SLICES = 10


def finish_scan(
    volume: np.ndarray,
    spacing: tuple[float, float, float],
    origin: tuple[float, float, float],
    direction: tuple[float, ...],
    along: np.ndarray,
    metadata: ScanMetadata,
    findings: list[QualityFinding],
    source: str,
    *,
    padding_count: int = 0,
    contiguity_known: bool = True,
) -> Scan:
    """Map padding to air, run the checks common to all formats, log, wrap."""
    below_count = 0
    if volume.size and volume.min() < PADDING_BELOW_HU:  # a cheap test first
        below = volume < PADDING_BELOW_HU
        below_count = int(np.count_nonzero(below))
        np.putmask(volume, below, AIR_HU)
    padded = padding_count + below_count
    if padded:
        findings.append(
            QualityFinding(
                "padding",
                INFO,
                f"{100.0 * padded / volume.size:.1f}% of voxels are padding outside "
                f"the field of view (PixelPaddingValue or below {PADDING_BELOW_HU} HU)",
                f"set to air ({AIR_HU} HU)",
            )
        )

    findings.extend(_check_hounsfield(volume))
    metadata.shape = tuple(int(v) for v in volume.shape)
    metadata.spacing_mm = tuple(float(v) for v in spacing)
    metadata.slice_interval_mm = float(spacing[0])
    findings.extend(_check_contiguity(metadata, contiguity_known))
    if volume.shape[0] < MIN_SLICES:
        findings.append(
            QualityFinding(
                "too_few_slices",
                WARNING,
                f"only {volume.shape[0]} slice{'s' if volume.shape[0] != 1 else ''}; "
                "volumetric chest measurements "
                f"need at least {MIN_SLICES}",
                "loaded; whole-lung measures will be unreliable",
            )
        )

    for finding in findings:
        logger.log(
            finding.severity, "%s: %s: %s", source, finding.code, finding.message
        )
    return Scan(
        hounsfield=volume,
        spacing_mm=metadata.spacing_mm,
        origin_mm=tuple(float(v) for v in origin),
        direction=tuple(float(v) for v in direction),
        slice_positions_mm=np.asarray(along, dtype=float),
        metadata=metadata,
        quality=findings,
        source=source,
    )


def _check_hounsfield(volume: np.ndarray) -> list[QualityFinding]:
    """Is air where it should be? Catches unrescaled data and wrong scaling.

    The 0.1th percentile of a subsample stands for air: low enough that the
    trachea alone qualifies when a tight field of view leaves out the air
    around the body and the lungs are dense, wide enough (-1250 to -850 HU)
    for the noise of sharp kernels on scanners that do not clip at -1024.
    """
    step_z = max(1, volume.shape[0] // 24)
    sample = volume[::step_z, ::4, ::4]
    low, high = np.percentile(sample, [0.1, 99.9])
    if -1250 <= low <= -850:
        return []
    if -150 <= low <= 150 and high > 900:
        return [
            QualityFinding(
                "unrescaled_hu",
                ERROR,
                f"air lies near {low:.0f} instead of -1000 HU and values reach "
                f"{high:.0f}: the data look like unrescaled stored values",
                "values left as they are; check RescaleSlope/RescaleIntercept "
                "(usually -1024) or the converter that wrote the file",
            )
        ]
    return [
        QualityFinding(
            "implausible_hu",
            ERROR,
            f"lowest values lie near {low:.0f} HU (0.1th percentile), not near air "
            "at -1000 HU",
            "values left as they are; check that this is a CT in Hounsfield "
            "units that includes air",
        )
    ]


def _check_contiguity(metadata: ScanMetadata, known: bool) -> list[QualityFinding]:
    thickness = metadata.slice_thickness_mm
    interval = metadata.slice_interval_mm
    if thickness is None or not known:
        metadata.contiguous = True
        where = {
            "dicom": "the DICOM headers hold no SliceThickness",
            "array": "pass slice_thickness_mm to check",
        }.get(
            metadata.source_format,
            "add SliceThickness to a JSON sidecar next to the image to check",
        )
        return [
            QualityFinding(
                "thickness_unknown",
                INFO,
                "slice thickness is not recorded, so gapped HRCT cannot be told "
                "from a contiguous scan",
                f"assumed contiguous; {where}",
            )
        ]
    ratio = interval / thickness if thickness > 0 else math.inf
    metadata.contiguous = ratio <= GAPPED_RATIO
    if not metadata.contiguous:
        return [
            QualityFinding(
                "gapped",
                INFO,
                f"gapped (incremental) HRCT: {thickness:g} mm slices every "
                f"{interval:.2f} mm",
                "supported; measurements that need a contiguous volume (airway "
                "and vessel trees) are left empty, densities use every slice",
            )
        ]
    if ratio > 1.25:
        return [
            QualityFinding(
                "interval_exceeds_thickness",
                WARNING,
                f"slice interval {interval:.2f} mm exceeds thickness {thickness:g} mm",
                "treated as contiguous; thin structures between slices are missed",
            )
        ]
    return []
