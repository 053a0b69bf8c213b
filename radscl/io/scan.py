"""The scan object: Hounsfield volume, geometry, metadata and quality findings."""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import Any

import numpy as np

#: Severity of quality findings, on the logging scale.
INFO = logging.INFO
WARNING = logging.WARNING
ERROR = logging.ERROR


#: Hounsfield value given to padding outside the field of view.
AIR_HU = -1000


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
        ``"dicom"``, ``"nifti"``, ``"nrrd"``, ``"mha"`` or ``"array"``.
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
    kernel_class : str
        ``"sharp"``, ``"soft"`` or ``"unknown"``, from :func:`classify_kernel`.
    gantry_tilt_deg : float
        Tilt between the slice normal and the direction the slices are stacked
        in, measured from the slice positions (0 for an orthogonal stack).
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
    kernel_class: str = "unknown"
    gantry_tilt_deg: float = 0.0

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
        Position of every slice along the slice normal (``z`` for an axial
        scan), ascending. For gapped HRCT these are the recorded positions,
        which need not be evenly spaced.
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

    @property
    def worst_severity(self) -> int:
        """Highest severity among the quality findings (0 when there are none)."""
        return max((finding.severity for finding in self.quality), default=0)

    def findings(self, min_severity: int = INFO) -> list[QualityFinding]:
        """Return the quality findings at or above a severity.

        Parameters
        ----------
        min_severity : int
            Logging level, e.g. :data:`WARNING`.

        Returns
        -------
        list of QualityFinding
        """
        return [f for f in self.quality if f.severity >= min_severity]


def classify_kernel(kernel: str | None) -> str:
    """Classify a reconstruction kernel as sharp (lung) or soft.

    The rule, by vendor naming:

    * Siemens ``B``/``I``/``Br``/``Bl``/``Hr``/``Qr`` followed by a number
      (``B70f``, ``I70f``, ``Br64``): sharp from 50 up, soft below (``B30f``,
      ``B40f``, ``B45f``).
    * Toshiba/Canon ``FCnn``: sharp from 30 up (``FC51``, ``FC52``, ``FC86``,
      bone ``FC30``), soft below (``FC10``, ``FC13``, ``FC17``).
    * Philips letters: ``L``, ``D``, ``E``, ``YC``, ``YD`` (and ``LA``...)
      sharp; ``A``, ``B``, ``C``, ``CB``, ``UB``, ``YA``, ``YB`` soft.
    * Words (GE and others): ``LUNG``, ``BONE``, ``BONEPLUS``, ``EDGE``,
      ``DETAIL``, ``SHARP``, ``HIGH`` are sharp; ``STANDARD``, ``STND``,
      ``SOFT``, ``SMOOTH``, ``BODY``, ``MEDIASTINUM`` soft.

    Parameters
    ----------
    kernel : str or None
        ConvolutionKernel; multi-valued kernels (``I70f\\3``) use the first value.

    Returns
    -------
    str
        ``"sharp"``, ``"soft"`` or ``"unknown"``.
    """
    if not kernel:
        return "unknown"
    name = str(kernel).split("\\")[0].strip()
    upper = name.upper()

    numbered = re.match(r"^(B|I|BR|BL|BV|HR|QR|BF|HF)(\d{2})", upper)
    if numbered:
        return "sharp" if int(numbered.group(2)) >= 50 else "soft"
    toshiba = re.match(r"^FC(\d{2})", upper)
    if toshiba:
        return "sharp" if int(toshiba.group(1)) >= 30 else "soft"
    if upper in {"L", "LA", "LB", "LC", "D", "E", "EA", "EB", "YC", "YD", "YE"}:
        return "sharp"
    if upper in {"A", "B", "C", "CB", "UA", "UB", "UC", "YA", "YB"}:
        return "soft"
    if re.search(r"LUNG|BONE|EDGE|DETAIL|SHARP|HIGH|HRCT", upper):
        return "sharp"
    if re.search(r"STANDARD|STND|SOFT|SMOOTH|BODY|MEDIASTIN|BRAIN", upper):
        return "soft"
    return "unknown"
