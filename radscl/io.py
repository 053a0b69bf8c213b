"""Loading chest CT scans, choosing a series, scan metadata and quality checks.

Every scan, whatever its format, is returned as a :class:`Scan`: a Hounsfield
array in one canonical orientation with its geometry, identifier-free metadata
and a quality report.

Canonical orientation
---------------------
Arrays are indexed ``[z, y, x]`` in the DICOM patient frame (LPS): ``x`` grows
towards the patient's left, ``y`` towards the posterior and ``z`` towards the
head. Index ``[0, 0, 0]`` is therefore the inferior, anterior, right-most voxel,
and an axial slice ``hounsfield[k]`` displays in the radiological convention
(patient's right on the viewer's left, anterior at the top). Spacings are given
in array order, ``(z, y, x)``; the ``z`` spacing is the slice *interval* taken
from slice positions, never the slice thickness.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: Severity of quality findings, on the logging scale.
INFO = logging.INFO
WARNING = logging.WARNING
ERROR = logging.ERROR


@dataclasses.dataclass(frozen=True)
class QualityFinding:
    """One result of a scan quality check.

    Attributes
    ----------
    code : str
        A short stable identifier, e.g. ``"gapped"`` or ``"missing_slices"``.
    severity : int
        Logging level: :data:`INFO`, :data:`WARNING` or :data:`ERROR`.
    message : str
        What is wrong, with the numbers.
    fix : str
        What radscl did about it, or what the user can do.
    """

    code: str
    severity: int
    message: str
    fix: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dictionary with the severity as a name."""
        return {
            "code": self.code,
            "severity": logging.getLevelName(self.severity).lower(),
            "message": self.message,
            "fix": self.fix,
        }


@dataclasses.dataclass
class ScanMetadata:
    """Acquisition metadata of a scan, free of patient identifiers.

    Attributes
    ----------
    source_format : str
        ``"dicom"``, ``"nifti"``, ``"nrrd"`` or ``"mha"``.
    shape : tuple of int
        Array shape ``(slices, rows, columns)``.
    spacing_mm : tuple of float
        Voxel spacing in array order ``(z, y, x)``; ``z`` is the slice interval.
    slice_thickness_mm : float or None
        Reconstructed slice thickness, when known.
    slice_interval_mm : float
        Distance between consecutive slice positions.
    contiguous : bool
        False for gapped (incremental) HRCT, whose interval is much larger than
        its thickness.
    modality, kernel, manufacturer, model : str or None
        DICOM ``Modality``, ``ConvolutionKernel``, ``Manufacturer`` and
        ``ManufacturerModelName``.
    kvp : float or None
        Tube voltage.
    contrast : bool or None
        Whether a contrast agent was recorded.
    acquisition_year : int or None
        Year of the study or acquisition date (the date itself is not kept).
    series_number : int or None
        DICOM ``SeriesNumber`` of the chosen series.
    series_key : str or None
        A short one-way hash of the series instance UID, to name a series
        without revealing the UID.
    series_choice : str
        Why this series was chosen, when the input held several.
    """

    source_format: str
    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    slice_thickness_mm: float | None
    slice_interval_mm: float
    contiguous: bool
    modality: str | None = None
    kernel: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    kvp: float | None = None
    contrast: bool | None = None
    acquisition_year: int | None = None
    series_number: int | None = None
    series_key: str | None = None
    series_choice: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dictionary."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Scan:
    """A loaded CT scan in canonical orientation.

    Attributes
    ----------
    hounsfield : numpy.ndarray
        ``int16`` array ``[z, y, x]`` of Hounsfield units; padding outside the
        field of view is set to air (-1000).
    spacing_mm : tuple of float
        Voxel spacing ``(z, y, x)`` in mm; ``z`` is the slice interval.
    origin_mm : tuple of float
        Patient-frame position ``(x, y, z)`` in mm of the centre of voxel
        ``[0, 0, 0]`` (the ITK convention).
    direction : tuple of float
        The 3x3 direction cosine matrix, row-major, ITK convention; identity
        unless the acquisition was oblique or tilted.
    slice_positions_mm : numpy.ndarray
        ``z`` position of every slice, ascending.
    metadata : ScanMetadata
        Acquisition metadata.
    quality : list of QualityFinding
        Results of the quality checks.
    source : str
        The path the scan was loaded from.
    """

    hounsfield: np.ndarray
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    direction: tuple[float, ...]
    slice_positions_mm: np.ndarray
    metadata: ScanMetadata
    quality: list[QualityFinding]
    source: str

    @property
    def voxel_volume_ml(self) -> float:
        """Volume represented by one voxel, using the slice interval."""
        dz, dy, dx = self.spacing_mm
        return dz * dy * dx / 1000.0

    @property
    def contiguous(self) -> bool:
        """False for gapped (incremental) HRCT."""
        return self.metadata.contiguous
