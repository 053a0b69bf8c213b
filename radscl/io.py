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

Choosing a series
-----------------
A DICOM folder is searched recursively and its files are grouped into series
(by SeriesInstanceUID, split further when one UID mixes orientations or image
sizes). Localisers and scouts, non-image objects (structured reports,
presentation states, secondary captures), multi-frame objects, other
modalities and non-axial reformats are set aside. Among the remaining axial CT
series radscl keeps those covering at least half of the longest z-extent, then
the thinnest slice interval (intervals within 15 % count as equal), then a
sharp (lung) kernel over an unknown one over a soft one (see
:func:`classify_kernel`), then the most slices, then original over derived
images, then the lowest SeriesNumber. ``load_scan(path, series=...)`` picks a
series explicitly; the reason for the choice is kept in
``metadata.series_choice`` and logged at info level.

Quality checks
--------------
Each check yields a :class:`QualityFinding` with a severity on the logging
scale, a message with the numbers and what was done about it. Slices missing
from an otherwise regular contiguous series are filled by linear
interpolation when there are few of them (at most
:data:`MAX_FILLED_SLICES`, no hole wider than two slices) and flagged as an
error otherwise; unevenly spaced contiguous slices are resampled to a regular
grid; a gantry tilt (slice positions drifting in-plane) is undone by shifting
each slice in-plane, so the grid becomes orthogonal while every pixel keeps its
recorded position; gapped (incremental) HRCT is kept as it is, with
``contiguous = False``. Only input that cannot give a CT volume at all raises
:class:`~radscl.errors.ScanError`.

Privacy
-------
Patient identifiers are never kept: names, IDs, dates other than the year and
UIDs are read by pydicom but not copied into the metadata, the findings, the
logs or the error messages. A series is named by its SeriesNumber and a short
one-way hash of its SeriesInstanceUID (``series_key``). Series descriptions are
free text and are not reported either.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import math
import os
import re
import warnings
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

import numpy as np

from radscl.errors import ScanError

if TYPE_CHECKING:
    import SimpleITK

logger = logging.getLogger(__name__)

#: Severity of quality findings, on the logging scale.
INFO = logging.INFO
WARNING = logging.WARNING
ERROR = logging.ERROR

#: Hounsfield value given to padding outside the field of view.
AIR_HU = -1000

#: Values below this many HU cannot be tissue or air (the scale starts near
#: -1024); they are padding outside the reconstruction circle (-2000, -2048,
#: -3024 are common) and are set to air.
PADDING_BELOW_HU = -1500

#: At most this many missing slices are filled by interpolation.
MAX_FILLED_SLICES = 3

#: A hole wider than this many consecutive missing slices is not filled quietly.
MAX_FILLED_HOLE = 2

#: Slice interval / thickness above which a scan counts as gapped HRCT.
GAPPED_RATIO = 2.0

#: Fewer slices than this cannot support volumetric chest measurements.
MIN_SLICES = 10

#: Relative tolerance on slice intervals before they count as uneven.
INTERVAL_TOLERANCE = 0.02

#: Geometric tilt (degrees) between the slice normal and the stacking
#: direction above which the stack is reported as gantry-tilted.
TILT_TOLERANCE_DEG = 0.5

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
_CT_SOP_CLASSES = {
    CT_IMAGE_STORAGE,
    "1.2.840.10008.5.1.4.1.1.2.1",  # enhanced CT
    "1.2.840.10008.5.1.4.1.1.2.2",  # legacy converted enhanced CT
}
_NON_IMAGE_SOP_PREFIXES = {
    "1.2.840.10008.5.1.4.1.1.7": "secondary capture",
    "1.2.840.10008.5.1.4.1.1.11.": "presentation state",
    "1.2.840.10008.5.1.4.1.1.66": "raw data",
    "1.2.840.10008.5.1.4.1.1.88.": "structured report",
    "1.2.840.10008.5.1.4.1.1.104.": "encapsulated document",
    "1.2.840.10008.1.3.10": "DICOMDIR",
}
_LOCALIZER_WORDS = re.compile(
    r"scout|topogram|locali[sz]er|surview|scanogram|pilot|planning", re.IGNORECASE
)
# Only these elements are parsed: skipping private sequences halves header time
_HEADER_TAGS = [
    "SOPClassUID",
    "SOPInstanceUID",
    "Modality",
    "ImageType",
    "SeriesDescription",
    "ImageComments",
    "SeriesInstanceUID",
    "SeriesNumber",
    "InstanceNumber",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "PixelSpacing",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "SliceThickness",
    "ConvolutionKernel",
    "Manufacturer",
    "ManufacturerModelName",
    "KVP",
    "ContrastBolusAgent",
    "GantryDetectorTilt",
    "AcquisitionDateTime",
    "AcquisitionDate",
    "SeriesDate",
    "StudyDate",
    "ContentDate",
]
_PIXEL_TAGS = [
    "Rows",
    "Columns",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "PlanarConfiguration",
    "NumberOfFrames",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "RescaleSlope",
    "RescaleIntercept",
    "PixelPaddingValue",
    "PixelPaddingRangeLimit",
    "PixelData",
]
_IMAGE_SUFFIXES = {
    ".nii": "nifti",
    ".nii.gz": "nifti",
    ".nrrd": "nrrd",
    ".nhdr": "nrrd",
    ".mha": "mha",
    ".mhd": "mha",
}
_NOT_DICOM_SUFFIXES = {
    ".json",
    ".txt",
    ".csv",
    ".xml",
    ".md",
    ".html",
    ".pdf",
    ".png",
    ".jpg",
    ".jpeg",
    ".py",
    ".zip",
} | set(_IMAGE_SUFFIXES)


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


@dataclasses.dataclass
class SeriesInfo:
    """Summary of one series in a DICOM folder, free of identifiers.

    Attributes
    ----------
    series_key : str
        Short one-way hash of the SeriesInstanceUID; accepted by
        ``load_scan(path, series=...)``.
    series_number : int or None
        DICOM SeriesNumber.
    modality : str or None
        DICOM Modality (inferred from the SOP class when absent).
    n_images : int
        Number of files in the series.
    n_slices : int
        Number of distinct slice positions.
    rows, columns : int or None
        Image size.
    pixel_spacing_mm : tuple of float or None
        ``(row spacing, column spacing)``.
    slice_interval_mm : float or None
        Median distance between consecutive slice positions.
    slice_thickness_mm : float or None
        Median SliceThickness.
    z_extent_mm : float
        Distance between the first and last slice.
    kernel : str or None
        ConvolutionKernel.
    kernel_class : str
        ``"sharp"``, ``"soft"`` or ``"unknown"``.
    orientation : str
        ``"axial"``, ``"coronal"``, ``"sagittal"``, ``"oblique"`` or ``"unknown"``.
    derived : bool
        ImageType says DERIVED (reformats, MIPs).
    usable : bool
        Whether the series is a candidate for automatic choice.
    excluded_because : str
        Why it is not a candidate, when it is not.
    chosen : bool
        Whether :func:`load_scan` would choose it.
    """

    series_key: str
    series_number: int | None
    modality: str | None
    n_images: int
    n_slices: int
    rows: int | None
    columns: int | None
    pixel_spacing_mm: tuple[float, float] | None
    slice_interval_mm: float | None
    slice_thickness_mm: float | None
    z_extent_mm: float
    kernel: str | None
    kernel_class: str
    orientation: str
    derived: bool
    usable: bool
    excluded_because: str = ""
    chosen: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dictionary."""
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------
# Public API: loading


def load_scan(path: str | os.PathLike[str], series: int | str | None = None) -> Scan:
    """Load a chest CT scan from a DICOM folder or file, NIfTI, NRRD or MHA.

    Parameters
    ----------
    path : str or path-like
        A folder searched recursively for DICOM files, a single DICOM file, or
        an image file ending in ``.nii``, ``.nii.gz``, ``.nrrd``, ``.nhdr``,
        ``.mha`` or ``.mhd``. For image files a BIDS-style JSON sidecar with
        the same stem (``scan.nii.gz`` -> ``scan.json``) supplies the slice
        thickness, kernel and scanner when present.
    series : int or str, optional
        The DICOM series to load: its SeriesNumber, or its ``series_key`` from
        :func:`list_series` (a unique prefix of at least four characters is
        enough). Chosen automatically when omitted (see the module notes).

    Returns
    -------
    Scan
        Hounsfield units ``[z, y, x]`` in LPS, its geometry, metadata and the
        quality report.

    Raises
    ------
    ScanError
        When the path holds no usable CT volume: missing path, empty folder,
        no CT image, only corrupt files, another modality, unreadable format,
        or an unknown ``series``.
    """
    path = Path(path)
    if not path.exists():
        raise ScanError(f"{path}: no such file or folder")

    if path.is_dir():
        files = _find_files(path)
        if not files:
            raise ScanError(f"{path}: folder is empty")
        return _load_dicom(path, files, series)

    image_format = _image_format(path)
    if image_format is not None:
        if series is not None:
            raise ScanError(f"{path}: series can only be chosen in a DICOM folder")
        return _load_image_file(path, image_format)
    return _load_dicom(path, [path], series)


def list_series(path: str | os.PathLike[str]) -> list[SeriesInfo]:
    """Summarise every series in a DICOM folder or file without identifiers.

    Parameters
    ----------
    path : str or path-like
        A DICOM folder (searched recursively) or a single DICOM file.

    Returns
    -------
    list of SeriesInfo
        One summary per series, the one :func:`load_scan` would choose marked
        ``chosen``; ordered by SeriesNumber.

    Raises
    ------
    ScanError
        When the path does not exist or holds no readable DICOM file.
    """
    path = Path(path)
    if not path.exists():
        raise ScanError(f"{path}: no such file or folder")
    files = _find_files(path) if path.is_dir() else [path]
    if not files:
        raise ScanError(f"{path}: folder is empty")

    headers, _ = _read_headers(path, files)
    groups = _group_series(headers)
    candidates = [group for group in groups if group.info.usable]
    if candidates:
        best, _ = _rank_candidates(candidates)
        best.info.chosen = True
    return [group.info for group in groups]


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


# ---------------------------------------------------------------------------
# Public API: building scans and writing them


def scan_from_array(
    hounsfield: np.ndarray,
    spacing_mm: Sequence[float],
    origin_mm: Sequence[float] = (0.0, 0.0, 0.0),
    *,
    direction: Sequence[float] | None = None,
    slice_positions_mm: Sequence[float] | None = None,
    slice_thickness_mm: float | None = None,
    kernel: str | None = None,
    manufacturer: str | None = None,
    model: str | None = None,
    kvp: float | None = None,
    contrast: bool | None = None,
    acquisition_year: int | None = None,
    source: str = "<array>",
) -> Scan:
    """Build a :class:`Scan` from a Hounsfield array, with the usual checks.

    Parameters
    ----------
    hounsfield : numpy.ndarray
        ``[z, y, x]`` array in LPS; rounded to ``int16``.
    spacing_mm : sequence of float
        ``(z, y, x)`` spacing; ``z`` is the slice interval.
    origin_mm : sequence of float
        ``(x, y, z)`` position of voxel ``[0, 0, 0]``.
    direction : sequence of float, optional
        Row-major 3x3 direction cosines; identity when omitted.
    slice_positions_mm : sequence of float, optional
        Slice positions along the normal; ``origin z + k * spacing z`` when
        omitted.
    slice_thickness_mm : float, optional
        Slice thickness; decides ``contiguous`` with the interval.
    kernel, manufacturer, model : str, optional
        Acquisition details carried into the metadata.
    kvp : float, optional
        Tube voltage.
    contrast : bool, optional
        Whether contrast was given.
    acquisition_year : int, optional
        Year of acquisition.
    source : str
        A label for messages.

    Returns
    -------
    Scan
    """
    volume = _as_hounsfield(hounsfield, "hounsfield")
    spacing = _check_triple(spacing_mm, "spacing_mm", positive=True)
    origin = _check_triple(origin_mm, "origin_mm")
    matrix = _identity() if direction is None else _check_direction(direction)
    if slice_positions_mm is None:
        normal = np.array(matrix).reshape(3, 3)[:, 2]
        positions = float(np.dot(origin, normal)) + spacing[0] * np.arange(
            volume.shape[0]
        )
    else:
        positions = np.asarray(slice_positions_mm, dtype=float)
        if positions.shape != (volume.shape[0],):
            raise ValueError(
                f'Argument "slice_positions_mm" must have {volume.shape[0]} values, '
                f"one per slice, but has {positions.size}"
            )

    metadata = ScanMetadata(
        source_format="array",
        shape=tuple(volume.shape),
        spacing_mm=spacing,
        slice_thickness_mm=slice_thickness_mm,
        slice_interval_mm=spacing[0],
        contiguous=True,
        modality="CT",
        kernel=kernel,
        manufacturer=manufacturer,
        model=model,
        kvp=kvp,
        contrast=contrast,
        acquisition_year=acquisition_year,
        kernel_class=classify_kernel(kernel),
    )
    return _finish(volume, spacing, origin, matrix, positions, metadata, [], source)


def scan_to_sitk(array: np.ndarray, scan: Scan) -> SimpleITK.Image:
    """Wrap an array with a scan's geometry as a SimpleITK image.

    Parameters
    ----------
    array : numpy.ndarray
        ``[z, y, x]`` array of the scan's shape (Hounsfield units, a mask or
        a label map); boolean arrays become ``uint8``.
    scan : Scan
        Supplies spacing, origin and direction.

    Returns
    -------
    SimpleITK.Image
    """
    sitk = _sitk()

    array = np.asarray(array)
    if array.shape != scan.hounsfield.shape:
        raise ValueError(
            f'Argument "array" must have the scan\'s shape {scan.hounsfield.shape}, '
            f"but has {array.shape}"
        )
    if array.dtype == bool:
        array = array.astype(np.uint8)

    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing(tuple(float(v) for v in scan.spacing_mm[::-1]))
    image.SetOrigin(tuple(float(v) for v in scan.origin_mm))
    image.SetDirection(tuple(float(v) for v in scan.direction))
    return image


def write_image(
    array: np.ndarray,
    scan_like: Scan,
    path: str | os.PathLike[str],
    sidecar: Mapping[str, Any] | ScanMetadata | None = None,
    *,
    compress: bool = True,
) -> Path:
    """Write an array with a scan's geometry as NIfTI, NRRD or MHA.

    Parameters
    ----------
    array : numpy.ndarray
        ``[z, y, x]`` array of the scan's shape: a Hounsfield volume, a mask
        or a label map.
    scan_like : Scan
        Supplies spacing, origin and direction.
    path : str or path-like
        Output file; the format follows the suffix (``.nii``, ``.nii.gz``,
        ``.nrrd``, ``.mha``).
    sidecar : mapping or ScanMetadata, optional
        Written as a BIDS-style JSON sidecar next to the image
        (``scan.nii.gz`` -> ``scan.json``); a :class:`ScanMetadata` is turned
        into the keys :func:`load_scan` reads back (``SliceThickness``,
        ``ConvolutionKernel``...).
    compress : bool
        Compress NRRD and MHA output (``.nii.gz`` is always compressed).

    Returns
    -------
    pathlib.Path
        The image path.
    """
    sitk = _sitk()

    path = Path(path)
    if _image_format(path) is None:
        raise ValueError(
            f'Argument "path" must end in .nii, .nii.gz, .nrrd or .mha, got {path.name}'
        )
    image = scan_to_sitk(array, scan_like)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=compress)

    if sidecar is not None:
        keys = (
            metadata_to_sidecar(sidecar)
            if isinstance(sidecar, ScanMetadata)
            else dict(sidecar)
        )
        sidecar_path(path).write_text(
            json.dumps(keys, indent=2, sort_keys=True, default=_json_default) + "\n"
        )
    return path


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """Return the JSON sidecar path of an image file (``a.nii.gz`` -> ``a.json``)."""
    path = Path(path)
    name = path.name
    for suffix in sorted(_IMAGE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return path.with_name(name[: -len(suffix)] + ".json")
    return path.with_suffix(".json")


def metadata_to_sidecar(metadata: ScanMetadata) -> dict[str, Any]:
    """Express scan metadata as BIDS/dcm2niix-style sidecar keys.

    Parameters
    ----------
    metadata : ScanMetadata

    Returns
    -------
    dict
        Keys ``Modality``, ``SliceThickness``, ``SpacingBetweenSlices``,
        ``ConvolutionKernel``, ``Manufacturer``, ``ManufacturerModelName``,
        ``KVP``, ``ContrastBolusAgent`` and ``AcquisitionYear`` where known.
    """
    keys: dict[str, Any] = {
        "Modality": metadata.modality or "CT",
        "SliceThickness": metadata.slice_thickness_mm,
        "SpacingBetweenSlices": metadata.slice_interval_mm,
        "ConvolutionKernel": metadata.kernel,
        "Manufacturer": metadata.manufacturer,
        "ManufacturerModelName": metadata.model,
        "KVP": metadata.kvp,
        "AcquisitionYear": metadata.acquisition_year,
    }
    if metadata.contrast is not None:
        keys["ContrastBolusAgent"] = "contrast" if metadata.contrast else ""
    return {key: value for key, value in keys.items() if value is not None}


def write_dicom_series(
    hounsfield: np.ndarray,
    spacing_mm: Sequence[float],
    origin_mm: Sequence[float],
    out_dir: str | os.PathLike[str],
    *,
    slice_positions_mm: Sequence[float] | None = None,
    slice_thickness_mm: float | None = None,
    kernel: str | None = None,
    manufacturer: str | None = None,
    model: str | None = None,
    kvp: float | None = 120.0,
    patient_name: str = "SYNTHETIC^PHANTOM",
    patient_id: str = "RADSCL-SYNTH",
    series_number: int = 1,
    series_description: str = "",
    study_year: int = 2015,
    modality: str = "CT",
    rescale_intercept: float = -1024.0,
    pixel_padding_value: int | None = None,
    contrast_agent: str | None = None,
    study_uid: str | None = None,
) -> list[Path]:
    """Write a Hounsfield volume as an axial CT Image Storage DICOM series.

    One file per slice, explicit VR little endian, with ImagePositionPatient,
    ImageOrientationPatient (axial, LPS), PixelSpacing, SliceThickness,
    SpacingBetweenSlices, RescaleSlope 1 and the given RescaleIntercept, fresh
    UIDs and made-up patient identifiers.

    Parameters
    ----------
    hounsfield : numpy.ndarray
        ``[z, y, x]`` array in LPS with slices ascending in ``z``.
    spacing_mm : sequence of float
        ``(z, y, x)``; ``z`` is the slice interval used when
        ``slice_positions_mm`` is omitted.
    origin_mm : sequence of float
        ``(x, y, z)`` position of voxel ``[0, 0, 0]``.
    out_dir : str or path-like
        Created if needed; files are named ``CT<series>_<slice>.dcm``.
    slice_positions_mm : sequence of float, optional
        ``z`` of each slice, for gapped or irregular series.
    slice_thickness_mm : float, optional
        SliceThickness; the interval when omitted.
    kernel, manufacturer, model : str, optional
        ConvolutionKernel, Manufacturer, ManufacturerModelName.
    kvp : float, optional
        KVP.
    patient_name, patient_id : str
        Made-up identifiers; never real ones.
    series_number : int
        SeriesNumber.
    series_description : str
        SeriesDescription.
    study_year : int
        Year of the (made-up) study date, 1 July.
    modality : str
        Modality; other values than ``"CT"`` make test files for rejection.
    rescale_intercept : float
        RescaleIntercept; stored values are ``hounsfield - intercept``, kept
        unsigned when they allow it and signed otherwise.
    pixel_padding_value : int, optional
        PixelPaddingValue, in stored units.
    contrast_agent : str, optional
        ContrastBolusAgent.
    study_uid : str, optional
        StudyInstanceUID to share between series; generated when omitted.

    Returns
    -------
    list of pathlib.Path
        The files, in slice order.
    """
    pydicom = _pydicom()
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID
    from pydicom.uid import ExplicitVRLittleEndian
    from pydicom.uid import generate_uid
    from pydicom.valuerep import format_number_as_ds as ds_text

    volume = np.asarray(hounsfield)
    if volume.ndim != 3:
        raise ValueError(
            f'Argument "hounsfield" must be a 3-D [z, y, x] array, got {volume.ndim}-D'
        )
    spacing = _check_triple(spacing_mm, "spacing_mm", positive=True)
    origin = _check_triple(origin_mm, "origin_mm")
    n_slices, rows, columns = volume.shape
    if slice_positions_mm is None:
        z_positions = origin[2] + spacing[0] * np.arange(n_slices)
    else:
        z_positions = np.asarray(slice_positions_mm, dtype=float)
        if z_positions.shape != (n_slices,):
            raise ValueError(
                f'Argument "slice_positions_mm" must have {n_slices} values, '
                f"one per slice, but has {z_positions.size}"
            )
    interval = float(np.median(np.diff(z_positions))) if n_slices > 1 else spacing[0]
    thickness = interval if slice_thickness_mm is None else float(slice_thickness_mm)

    stored = np.rint(volume.astype(np.float64) - rescale_intercept)
    signed = bool(stored.min() < 0)
    low, high = (-32768, 32767) if signed else (0, 65535)
    if stored.min() < low or stored.max() > high:
        raise ValueError(
            "hounsfield values do not fit 16-bit stored values with "
            f"RescaleIntercept {rescale_intercept}"
        )
    stored = stored.astype("<i2" if signed else "<u2")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    series_uid = generate_uid()
    frame_uid = generate_uid()
    study_date = f"{int(study_year):04d}0701"
    sop_class = CT_IMAGE_STORAGE if modality == "CT" else "1.2.840.10008.5.1.4.1.1.4"
    pixel_spacing = [ds_text(spacing[1]), ds_text(spacing[2])]
    window = (-600, 1600) if classify_kernel(kernel) == "sharp" else (40, 400)

    paths = []
    for k in range(n_slices):
        sop_uid = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = sop_uid
        ds.StudyDate = study_date
        ds.SeriesDate = study_date
        ds.AcquisitionDate = study_date
        ds.ContentDate = study_date
        ds.StudyTime = "120000"
        ds.AccessionNumber = ""
        ds.Modality = modality
        ds.Manufacturer = manufacturer or ""
        ds.ReferringPhysicianName = ""
        ds.StudyDescription = "synthetic chest CT"
        ds.SeriesDescription = series_description
        ds.ManufacturerModelName = model or ""
        ds.PatientName = patient_name
        ds.PatientID = patient_id
        ds.PatientBirthDate = ""
        ds.PatientSex = ""
        ds.BodyPartExamined = "CHEST"
        ds.SliceThickness = ds_text(thickness)
        if kvp is not None:
            ds.KVP = ds_text(float(kvp))
        if kernel:
            ds.ConvolutionKernel = kernel
        if contrast_agent:
            ds.ContrastBolusAgent = contrast_agent
        ds.SpacingBetweenSlices = ds_text(interval)
        ds.PatientPosition = "HFS"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = "1"
        ds.SeriesNumber = int(series_number)
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [
            ds_text(origin[0]),
            ds_text(origin[1]),
            ds_text(float(z_positions[k])),
        ]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = ds_text(float(z_positions[k]))
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = rows
        ds.Columns = columns
        ds.PixelSpacing = pixel_spacing
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1 if signed else 0
        if pixel_padding_value is not None:
            ds.add_new(0x00280120, "SS" if signed else "US", int(pixel_padding_value))
        ds.WindowCenter = str(window[0])
        ds.WindowWidth = str(window[1])
        ds.RescaleIntercept = ds_text(float(rescale_intercept))
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.PixelData = stored[k].tobytes()

        file_path = out / f"CT{int(series_number):03d}_{k + 1:04d}.dcm"
        pydicom.dcmwrite(file_path, ds, enforce_file_format=True)
        paths.append(file_path)
    return paths


# ---------------------------------------------------------------------------
# DICOM headers and series


@dataclasses.dataclass
class _Header:
    """What radscl needs from one DICOM file's header; identifiers are not kept
    except the series UID, which is used for grouping and hashing only."""

    path: Path
    series_uid: str
    series_number: int | None
    modality: str | None
    sop_class: str
    sop_instance: str
    image_type: tuple[str, ...]
    localizer_words: bool
    rows: int | None
    columns: int | None
    frames: int
    pixel_spacing: tuple[float, float] | None
    position: np.ndarray | None
    orientation: np.ndarray | None
    thickness: float | None
    kernel: str | None
    manufacturer: str | None
    model: str | None
    kvp: float | None
    contrast: bool
    year: int | None
    instance_number: int | None
    gantry_tilt: float | None
    compressed: bool


@dataclasses.dataclass
class _Series:
    key: str
    headers: list[_Header]
    info: SeriesInfo
    normal: np.ndarray | None


def _find_files(folder: Path) -> list[Path]:
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if not name.startswith("."):
                files.append(Path(root) / name)
    return files


def _image_format(path: Path) -> str | None:
    name = path.name.lower()
    for suffix in sorted(_IMAGE_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return _IMAGE_SUFFIXES[suffix]
    return None


def _read_headers(
    source: Path, files: list[Path]
) -> tuple[list[_Header], list[tuple[Path, str]]]:
    """Read the headers of every DICOM file; return them and the corrupt ones."""
    pydicom = _pydicom()
    from pydicom.errors import InvalidDicomError

    headers = []
    corrupt = []
    not_dicom = []
    for file in files:
        suffix = file.suffix.lower()
        if source.is_dir() and suffix in _NOT_DICOM_SUFFIXES:
            not_dicom.append(file)
            continue
        try:
            with warnings.catch_warnings():
                # pydicom warns about non-conformant values; their text may quote
                # identifiers, so the warnings are not passed on
                warnings.simplefilter("ignore")
                try:
                    ds = pydicom.dcmread(
                        file, stop_before_pixels=True, specific_tags=_HEADER_TAGS
                    )
                except InvalidDicomError:
                    if not _may_lack_preamble(file):
                        raise
                    ds = pydicom.dcmread(
                        file,
                        stop_before_pixels=True,
                        specific_tags=_HEADER_TAGS,
                        force=True,
                    )
                    if "SOPClassUID" not in ds and "Rows" not in ds:
                        raise
                header = _header_from_dataset(file, ds)
        except InvalidDicomError:
            not_dicom.append(file)
        except Exception as error:  # any parse failure means a corrupt file
            corrupt.append((file, _describe_read_error(error)))
        else:
            headers.append(header)

    if not_dicom:
        logger.debug("ignored %d files that are not DICOM", len(not_dicom))
    if not headers:
        _raise_no_dicom(source, files, not_dicom, corrupt)
    return headers, corrupt


def _may_lack_preamble(file: Path) -> bool:
    """Old archives hold DICOM files without the 128-byte preamble; try those
    whose names look like DICOM (no suffix, .dcm, .ima, numeric UIDs)."""
    suffix = file.suffix.lower()
    return suffix in {"", ".dcm", ".dicom", ".ima", ".img"} or suffix[1:].isdigit()


def _raise_no_dicom(
    source: Path,
    files: list[Path],
    not_dicom: list[Path],
    corrupt: list[tuple[Path, str]],
) -> None:
    if corrupt and len(files) == 1:
        raise ScanError(f"{corrupt[0][0]}: {corrupt[0][1]}")
    if corrupt:
        raise ScanError(
            f"{source}: no readable DICOM file; {len(corrupt)} corrupt "
            f"(e.g. {corrupt[0][0].name}: {corrupt[0][1]})"
        )
    images = [f for f in not_dicom if _image_format(f) is not None]
    if source.is_dir() and images:
        raise ScanError(
            f"{source}: no DICOM files in folder (found {images[0].name}; "
            "pass the image file itself)"
        )
    if source.is_dir():
        raise ScanError(
            f"{source}: no DICOM files in folder ({len(files)} other files)"
        )
    raise ScanError(
        f"{source}: unsupported format; expected a DICOM file or folder, "
        ".nii, .nii.gz, .nrrd, .nhdr, .mha or .mhd"
    )


def _describe_read_error(error: Exception) -> str:
    # pydicom's messages can quote element values, so only the kind is kept
    if isinstance(error, EOFError | OSError) or "end of file" in str(error).lower():
        return "truncated or corrupt DICOM file"
    return f"corrupt DICOM file ({type(error).__name__})"


def _header_from_dataset(path: Path, ds: Any) -> _Header:
    file_meta = getattr(ds, "file_meta", None)
    sop_class = str(
        ds.get("SOPClassUID")
        or (file_meta.get("MediaStorageSOPClassUID") if file_meta else None)
        or ""
    )
    if sop_class == CT_IMAGE_STORAGE and any(
        keyword not in ds
        for keyword in ("Rows", "Columns", "ImagePositionPatient", "PixelSpacing")
    ):
        # these are mandatory in a CT image; pydicom stops quietly at the end
        # of a file cut short, so their absence is how truncation shows
        raise EOFError("incomplete CT image header")
    modality = _text(ds, "Modality")
    if modality is None and sop_class in _CT_SOP_CLASSES:
        modality = "CT"
    image_type = tuple(str(v).upper() for v in _values(ds.get("ImageType")))
    description = " ".join(
        filter(None, [_text(ds, "SeriesDescription"), _text(ds, "ImageComments")])
    )
    position = _vector(ds.get("ImagePositionPatient"), 3)
    orientation = _vector(ds.get("ImageOrientationPatient"), 6)
    spacing = _vector(ds.get("PixelSpacing"), 2)
    kernel_values = [str(v).strip() for v in _values(ds.get("ConvolutionKernel"))]
    transfer_syntax = file_meta.get("TransferSyntaxUID") if file_meta else None

    return _Header(
        path=path,
        series_uid=str(ds.get("SeriesInstanceUID", "") or ""),
        series_number=_int(ds, "SeriesNumber"),
        modality=modality,
        sop_class=sop_class,
        sop_instance=str(ds.get("SOPInstanceUID", "") or ""),
        image_type=image_type,
        localizer_words=bool(_LOCALIZER_WORDS.search(description)),
        rows=_int(ds, "Rows"),
        columns=_int(ds, "Columns"),
        frames=_int(ds, "NumberOfFrames") or 1,
        pixel_spacing=None
        if spacing is None
        else (float(spacing[0]), float(spacing[1])),
        position=position,
        orientation=orientation,
        thickness=_float(ds, "SliceThickness"),
        kernel="\\".join(v for v in kernel_values if v) or None,
        manufacturer=_text(ds, "Manufacturer"),
        model=_text(ds, "ManufacturerModelName"),
        kvp=_float(ds, "KVP"),
        contrast=bool(_text(ds, "ContrastBolusAgent")),
        year=_year(ds),
        instance_number=_int(ds, "InstanceNumber"),
        gantry_tilt=_float(ds, "GantryDetectorTilt"),
        compressed=bool(transfer_syntax is not None and transfer_syntax.is_compressed),
    )


def _group_series(headers: list[_Header]) -> list[_Series]:
    groups: dict[tuple, list[_Header]] = {}
    for header in headers:
        signature = (
            header.series_uid,
            _is_localizer(header),
            None
            if header.orientation is None
            else tuple(np.round(header.orientation, 2)),
            header.rows,
            header.columns,
        )
        groups.setdefault(signature, []).append(header)

    per_uid: dict[str, int] = {}
    for signature in groups:
        per_uid[signature[0]] = per_uid.get(signature[0], 0) + 1

    series = []
    seen: dict[str, int] = {}
    for signature, members in groups.items():
        uid = signature[0]
        key = _series_key(uid)
        if per_uid[uid] > 1:
            seen[uid] = seen.get(uid, 0) + 1
            key = f"{key}-{seen[uid]}"
        series.append(_summarise(key, members))
    series.sort(key=lambda s: (s.info.series_number is None, s.info.series_number or 0))
    return series


def _series_key(uid: str) -> str:
    return hashlib.sha256(uid.encode()).hexdigest()[:10]


def _is_localizer(header: _Header) -> bool:
    return "LOCALIZER" in header.image_type or header.localizer_words


def _summarise(key: str, members: list[_Header]) -> _Series:
    first = members[0]
    orientation = "unknown"
    normal = None
    if first.orientation is not None:
        normal = np.cross(first.orientation[:3], first.orientation[3:])
        orientation = _orientation_name(normal)

    positions = [h.position for h in members if h.position is not None]
    interval = None
    extent = 0.0
    n_slices = len(members)
    if normal is not None and len(positions) == len(members):
        along = np.unique(np.round(np.array(positions) @ normal, 3))
        n_slices = along.size
        if along.size > 1:
            interval = float(np.median(np.diff(along)))
            extent = float(along[-1] - along[0])

    thicknesses = [h.thickness for h in members if h.thickness is not None]
    reason = _exclusion(first, members, orientation)
    info = SeriesInfo(
        series_key=key,
        series_number=first.series_number,
        modality=first.modality,
        n_images=len(members),
        n_slices=n_slices,
        rows=first.rows,
        columns=first.columns,
        pixel_spacing_mm=first.pixel_spacing,
        slice_interval_mm=None if interval is None else round(interval, 4),
        slice_thickness_mm=float(np.median(thicknesses)) if thicknesses else None,
        z_extent_mm=round(extent, 3),
        kernel=first.kernel,
        kernel_class=classify_kernel(first.kernel),
        orientation=orientation,
        derived="DERIVED" in first.image_type,
        usable=not reason,
        excluded_because=reason,
    )
    return _Series(key=key, headers=members, info=info, normal=normal)


def _orientation_name(normal: np.ndarray) -> str:
    axis = int(np.argmax(np.abs(normal)))
    if abs(normal[axis]) < 0.7:
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


def _exclusion(first: _Header, members: list[_Header], orientation: str) -> str:
    for prefix, kind in _NON_IMAGE_SOP_PREFIXES.items():
        if first.sop_class.startswith(prefix):
            return kind
    if first.rows is None or first.columns is None:
        return "not an image"
    if first.modality != "CT":
        return f"modality {first.modality or 'unknown'}"
    if _is_localizer(first):
        return "localiser/scout"
    if first.frames > 1:
        return "multi-frame image (not supported)"
    if any(
        h.position is None or h.orientation is None or h.pixel_spacing is None
        for h in members
    ):
        return "no slice geometry"
    if orientation != "axial":
        return f"{orientation} orientation"
    return ""


def _rank_candidates(candidates: list[_Series]) -> tuple[_Series, str]:
    """Apply the documented choice rule and say which criterion decided."""

    def interval_of(s: _Series) -> float:
        if s.info.slice_interval_mm:
            return s.info.slice_interval_mm
        return s.info.slice_thickness_mm or math.inf

    reasons = []
    pool = list(candidates)

    longest = max(s.info.z_extent_mm for s in pool)
    covering = [s for s in pool if s.info.z_extent_mm >= 0.5 * longest]
    if len(covering) < len(pool):
        reasons.append(f"covers {longest:.0f} mm in z")
    pool = covering

    thinnest = min(interval_of(s) for s in pool)
    thin = [s for s in pool if interval_of(s) <= 1.15 * thinnest]
    if len(thin) < len(pool):
        reasons.append(f"thinnest slice interval ({thinnest:.2f} mm)")
    pool = thin

    sharpness = {"sharp": 2, "unknown": 1, "soft": 0}
    best_kernel = max(sharpness[s.info.kernel_class] for s in pool)
    sharp = [s for s in pool if sharpness[s.info.kernel_class] == best_kernel]
    if len(sharp) < len(pool):
        kernels = ", ".join(sorted({s.info.kernel or "none" for s in pool}))
        reasons.append(f"{sharp[0].info.kernel_class} kernel among {kernels}")
    pool = sharp

    most = max(s.info.n_slices for s in pool)
    many = [s for s in pool if s.info.n_slices == most]
    if len(many) < len(pool):
        reasons.append(f"most slices ({most})")
    pool = many

    original = [s for s in pool if not s.info.derived] or pool
    if len(original) < len(pool):
        reasons.append("original rather than derived images")
    pool = original

    pool.sort(key=lambda s: (s.info.series_number is None, s.info.series_number or 0))
    if len(pool) > 1:
        reasons.append("lowest series number among equals")
    return pool[0], "; ".join(reasons)


def _select_series(
    source: Path, groups: list[_Series], series: int | str | None
) -> tuple[_Series, str, list[QualityFinding]]:
    findings = _exclusion_findings(groups)
    candidates = [g for g in groups if g.info.usable]

    if series is not None:
        chosen = _match_series(source, groups, series)
        reason = chosen.info.excluded_because
        if (
            reason.startswith("modality")
            or reason
            in {
                "not an image",
                "no slice geometry",
                "multi-frame image (not supported)",
            }
            or reason in _NON_IMAGE_SOP_PREFIXES.values()
        ):
            raise ScanError(f"{source}: series {series} cannot be loaded: {reason}")
        if reason:
            findings.append(
                QualityFinding(
                    "unusual_series",
                    WARNING,
                    f"requested series {_series_label(chosen)} is a {reason} series",
                    "loaded as requested; it would not be chosen automatically",
                )
            )
        choice = f"series {_series_label(chosen)} chosen explicitly"
        return chosen, choice, findings

    if not candidates:
        raise ScanError(f"{source}: {_no_candidate_reason(groups)}")
    chosen, why = _rank_candidates(candidates)
    if len(candidates) == 1:
        choice = f"series {_series_label(chosen)}: the only axial CT series"
    else:
        choice = (
            f"series {_series_label(chosen)} chosen from {len(candidates)} axial CT "
            f"series: {why}"
        )
    image_groups = [g for g in groups if g.info.rows is not None]
    if len(image_groups) > 1:
        findings.append(
            QualityFinding(
                "mixed_series",
                INFO,
                f"the input holds {len(image_groups)} image series, "
                f"{len(candidates)} of them axial CT",
                choice + "; pick another with series=<number or key> (--series)",
            )
        )
    return chosen, choice, findings


def _series_label(group: _Series) -> str:
    number = group.info.series_number
    return f"{number} [{group.key}]" if number is not None else f"[{group.key}]"


def _match_series(source: Path, groups: list[_Series], series: int | str) -> _Series:
    text = str(series).strip()
    if text.lstrip("-").isdigit():
        matches = [g for g in groups if g.info.series_number == int(text)]
    else:
        matches = [g for g in groups if g.key == text]
        if not matches and len(text) >= 4:
            matches = [g for g in groups if g.key.startswith(text)]
    usable = [g for g in matches if g.info.usable]
    if len(usable) == 1:
        return usable[0]
    if len(matches) == 1:
        return matches[0]
    available = ", ".join(_series_label(g) for g in groups)
    if not matches:
        raise ScanError(f"{source}: no series {text}; available: {available}")
    raise ScanError(
        f"{source}: series {text} is ambiguous; use one of the keys: "
        + ", ".join(g.key for g in matches)
    )


def _no_candidate_reason(groups: list[_Series]) -> str:
    reasons: dict[str, int] = {}
    for group in groups:
        reasons[group.info.excluded_because] = (
            reasons.get(group.info.excluded_because, 0) + group.info.n_images
        )
    found = ", ".join(f"{n} images: {reason}" for reason, n in sorted(reasons.items()))
    if not any(g.info.modality == "CT" for g in groups):
        modalities = sorted({g.info.modality or "unknown" for g in groups})
        return f"no CT image (modality {', '.join(modalities)}; {found})"
    return f"no axial CT series ({found})"


def _exclusion_findings(groups: list[_Series]) -> list[QualityFinding]:
    findings = []
    localizers = sum(
        g.info.n_images for g in groups if g.info.excluded_because == "localiser/scout"
    )
    if localizers:
        findings.append(
            QualityFinding(
                "localizer_excluded",
                INFO,
                f"{localizers} localiser/scout images found",
                "excluded from the volume",
            )
        )
    other = {}
    for group in groups:
        if group.info.excluded_because.startswith("modality"):
            name = group.info.modality or "unknown"
            other[name] = other.get(name, 0) + group.info.n_images
    if other:
        listing = ", ".join(f"{n} {name}" for name, n in sorted(other.items()))
        findings.append(
            QualityFinding(
                "non_ct_excluded",
                INFO,
                f"images of another modality found ({listing})",
                "excluded; only CT is measured",
            )
        )
    reformats = [g for g in groups if g.info.excluded_because.endswith("orientation")]
    if reformats:
        kinds = ", ".join(sorted({g.info.orientation for g in reformats}))
        findings.append(
            QualityFinding(
                "non_axial_excluded",
                INFO,
                f"{len(reformats)} non-axial series found ({kinds})",
                "excluded from the automatic choice",
            )
        )
    objects = [
        g
        for g in groups
        if g.info.excluded_because in _NON_IMAGE_SOP_PREFIXES.values()
        or g.info.excluded_because
        in {"not an image", "multi-frame image (not supported)"}
    ]
    if objects:
        kinds = ", ".join(sorted({g.info.excluded_because for g in objects}))
        findings.append(
            QualityFinding(
                "non_image_excluded",
                INFO,
                f"{sum(g.info.n_images for g in objects)} non-image or unsupported "
                f"objects found ({kinds})",
                "excluded",
            )
        )
    return findings


# ---------------------------------------------------------------------------
# DICOM pixel data and geometry


def _load_dicom(source: Path, files: list[Path], series: int | str | None) -> Scan:
    headers, corrupt = _read_headers(source, files)
    groups = _group_series(headers)
    chosen, choice, findings = _select_series(source, groups, series)
    logger.info("%s: %s", source, choice)

    if corrupt:
        findings.append(_unreadable_finding(corrupt))
    members, duplicates = _sorted_unique(chosen)
    if duplicates:
        findings.append(
            QualityFinding(
                "duplicate_slices",
                WARNING,
                f"{duplicates} images repeat the position of another image",
                "kept the first of each position (lowest InstanceNumber)",
            )
        )
    volume, kept, failed, rescale_notes, padding_count = _read_slices(members)
    if failed:
        findings.append(_unreadable_finding(failed, stage="pixel data"))
    if not kept:
        first_path, first_reason = failed[0]
        where = first_path if len(failed) == 1 else source
        raise ScanError(f"{where}: {first_reason}; no usable slice in the series")
    findings.extend(rescale_notes)
    members = [members[i] for i in kept]
    volume = volume[kept] if len(kept) < volume.shape[0] else volume

    first = members[0]
    row_cosine = first.orientation[:3].astype(float)
    column_cosine = first.orientation[3:].astype(float)
    normal = np.cross(row_cosine, column_cosine)
    positions = np.array([h.position for h in members], dtype=float)
    row_mm, column_mm = first.pixel_spacing  # DICOM: row spacing (y) first
    thickness = _median([h.thickness for h in members])

    volume, tilt_deg, shear_findings = _remove_shear(
        volume, positions, row_cosine, column_cosine, normal, column_mm, row_mm
    )
    findings.extend(shear_findings)
    if not shear_findings and first.gantry_tilt:
        findings.append(
            QualityFinding(
                "gantry_tilt",
                INFO,
                f"GantryDetectorTilt is {first.gantry_tilt:g} degrees but the slice "
                "positions show no shear",
                "nothing to correct",
            )
        )

    along = positions @ normal
    volume, along, interval, contiguous, grid_findings = _regular_slices(
        volume, along, thickness
    )
    findings.extend(grid_findings)

    matrix = np.column_stack([row_cosine, column_cosine, normal])
    origin = positions[0] + (along[0] - positions[0] @ normal) * normal
    spacing = (interval, row_mm, column_mm)

    metadata = ScanMetadata(
        source_format="dicom",
        shape=(0, 0, 0),
        spacing_mm=spacing,
        slice_thickness_mm=thickness,
        slice_interval_mm=interval,
        contiguous=contiguous,
        modality=first.modality,
        kernel=first.kernel,
        manufacturer=first.manufacturer,
        model=first.model,
        kvp=first.kvp,
        contrast=any(h.contrast for h in members),
        acquisition_year=first.year,
        series_number=first.series_number,
        series_key=chosen.key,
        series_choice=choice,
        kernel_class=classify_kernel(first.kernel),
        gantry_tilt_deg=round(tilt_deg, 2),
    )
    volume, spacing, origin, direction, along = _orient_lps(
        volume, spacing, tuple(origin), matrix, along
    )
    return _finish(
        volume,
        spacing,
        origin,
        direction,
        along,
        metadata,
        findings,
        str(source),
        padding_count=padding_count,
        contiguity_known=True,
    )


def _unreadable_finding(
    failed: list[tuple[Path, str]], stage: str = "header"
) -> QualityFinding:
    names = ", ".join(f"{p.name} ({why})" for p, why in failed[:3])
    more = f" and {len(failed) - 3} more" if len(failed) > 3 else ""
    return QualityFinding(
        "unreadable_files",
        WARNING,
        f"{len(failed)} DICOM files could not be read ({stage}): {names}{more}",
        "left out; a slice missing from the series is reported separately",
    )


def _sorted_unique(group: _Series) -> tuple[list[_Header], int]:
    """Sort a series along its slice normal and drop repeated positions."""
    normal = group.normal
    members = sorted(
        group.headers,
        key=lambda h: (float(h.position @ normal), h.instance_number or 0),
    )
    unique = [members[0]]
    for header in members[1:]:
        if abs(float((header.position - unique[-1].position) @ normal)) > 1e-3:
            unique.append(header)
    return unique, len(members) - len(unique)


def _read_slices(
    members: list[_Header],
) -> tuple[np.ndarray, list[int], list[tuple[Path, str]], list[QualityFinding], int]:
    """Read pixel data of sorted slices into Hounsfield units.

    Returns the volume, the indices read, the failures, notes about rescaling
    and the number of padding voxels set to air.
    """
    pydicom = _pydicom()

    rows, columns = members[0].rows, members[0].columns
    volume = np.empty((len(members), rows, columns), dtype=np.int16)
    kept = []
    failed = []
    missing_rescale = 0
    padding_count = 0
    for index, header in enumerate(members):
        try:
            with warnings.catch_warnings():
                # see _read_headers: warning texts may quote identifiers
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(header.path, force=True, specific_tags=_PIXEL_TAGS)
                stored = _stored_pixels(ds, header)
                slope = _float(ds, "RescaleSlope")
                intercept = _float(ds, "RescaleIntercept")
                if stored is None:
                    hounsfield = _pixels_via_sitk(header.path)
                    slope, intercept = 1.0, 0.0
                else:
                    if slope is None or intercept is None:
                        missing_rescale += 1
                    hounsfield = _rescale(stored, slope or 1.0, intercept or 0.0)
                padding = _padding_mask(ds, stored, hounsfield)
        except Exception as error:  # a broken slice is left out, the rest load
            failed.append((header.path, _describe_pixel_error(error)))
            continue
        if hounsfield.shape != (rows, columns):
            failed.append((header.path, f"image size {hounsfield.shape} differs"))
            continue
        if padding is not None:
            padding_count += int(padding.sum())
            hounsfield[padding] = AIR_HU
        np.clip(hounsfield, -32768, 32767, out=hounsfield)
        volume[index] = hounsfield
        kept.append(index)

    notes = []
    if missing_rescale:
        notes.append(
            QualityFinding(
                "no_rescale",
                INFO,
                f"{missing_rescale} images have no RescaleSlope/RescaleIntercept",
                "stored values taken as Hounsfield units; see the HU check",
            )
        )
    return volume, kept, failed, notes, padding_count


def _stored_pixels(ds: Any, header: _Header) -> np.ndarray | None:
    """Stored values of one slice, or None when pydicom cannot decode them."""
    if "PixelData" not in ds:
        raise ValueError("no pixel data")
    rows, columns = int(ds.Rows), int(ds.Columns)
    bits = int(ds.get("BitsAllocated", 16))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    native = (
        not header.compressed and bits == 16 and int(ds.get("SamplesPerPixel", 1)) == 1
    )
    if native:
        # the common case, read straight from the buffer (3x faster than
        # pixel_array on uncompressed slices)
        raw = ds.PixelData
        expected = rows * columns * 2
        if len(raw) < expected:
            raise EOFError("pixel data shorter than the image size")
        syntax = (
            ds.file_meta.get("TransferSyntaxUID") if "file_meta" in dir(ds) else None
        )
        order = ">" if syntax is not None and not syntax.is_little_endian else "<"
        dtype = np.dtype(f"{order}{'i2' if signed else 'u2'}")
        stored = np.frombuffer(raw, dtype=dtype, count=rows * columns)
        stored = stored.reshape(rows, columns).astype(np.int32)
        bits_stored = int(ds.get("BitsStored", 16))
        if bits_stored < 16:
            if signed:
                shift = 32 - bits_stored
                stored = (stored << shift) >> shift
            else:
                stored &= (1 << bits_stored) - 1
        return stored
    try:
        return np.asarray(ds.pixel_array).astype(np.int32)
    except (NotImplementedError, RuntimeError):
        if header.compressed:
            return None  # no pydicom decoder; GDCM (SimpleITK) reads it
        raise


def _pixels_via_sitk(path: Path) -> np.ndarray:
    """Decode a compressed slice with GDCM; the result is already rescaled."""
    sitk = _sitk()
    image = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(image)
    return np.rint(array.reshape(array.shape[-2:])).astype(np.int32)


def _rescale(stored: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    if slope == 1.0 and float(intercept).is_integer():
        return stored + int(intercept)
    return np.rint(stored * slope + intercept).astype(np.int32)


def _padding_mask(ds: Any, stored: np.ndarray | None, hounsfield: np.ndarray):
    """Voxels marked as padding by PixelPaddingValue (and its range limit)."""
    value = ds.get("PixelPaddingValue")
    if value is None or stored is None:
        return None
    value = int(
        value if not isinstance(value, bytes) else _padding_from_bytes(ds, value)
    )
    limit = ds.get("PixelPaddingRangeLimit")
    if limit is None:
        return stored == value
    limit = int(
        limit if not isinstance(limit, bytes) else _padding_from_bytes(ds, limit)
    )
    low, high = min(value, limit), max(value, limit)
    return (stored >= low) & (stored <= high)


def _padding_from_bytes(ds: Any, raw: bytes) -> int:
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    return int(np.frombuffer(raw[:2], dtype="<i2" if signed else "<u2")[0])


def _describe_pixel_error(error: Exception) -> str:
    if isinstance(error, EOFError) or "length" in str(error).lower():
        return "truncated pixel data"
    return f"unreadable pixel data ({type(error).__name__})"


def _remove_shear(
    volume: np.ndarray,
    positions: np.ndarray,
    row_cosine: np.ndarray,
    column_cosine: np.ndarray,
    normal: np.ndarray,
    column_mm: float,
    row_mm: float,
) -> tuple[np.ndarray, float, list[QualityFinding]]:
    """Undo a sheared stack (gantry tilt) by shifting slices in-plane.

    With a tilted gantry the slice planes are stacked along a direction that
    is not their normal, so the grid is sheared. Each slice is shifted within
    its own plane so that all slices share the first slice's in-plane origin;
    every pixel keeps its recorded patient position and the grid becomes
    orthogonal in the frame of the slice planes (as dcm2niix does). Pixels
    shifted in from outside the field of view are air.
    """
    if volume.shape[0] < 2:
        return volume, 0.0, []
    offsets = positions - positions[0]
    u = offsets @ row_cosine  # along a row: the column index, x for axial
    v = offsets @ column_cosine
    s = offsets @ normal
    largest_px = float(max(np.max(np.abs(u)) / column_mm, np.max(np.abs(v)) / row_mm))
    if largest_px < 0.1:
        return volume, 0.0, []

    span = s[-1] - s[0]
    drift = math.hypot(np.polyfit(s, u, 1)[0], np.polyfit(s, v, 1)[0]) if span else 0.0
    tilt_deg = math.degrees(math.atan(drift))

    from scipy import ndimage

    corrected = np.empty_like(volume)
    for k in range(volume.shape[0]):
        if abs(u[k]) / column_mm < 1e-3 and abs(v[k]) / row_mm < 1e-3:
            corrected[k] = volume[k]
            continue
        shifted = ndimage.shift(
            volume[k].astype(np.float32),
            (v[k] / row_mm, u[k] / column_mm),
            order=1,
            mode="constant",
            cval=AIR_HU,
        )
        corrected[k] = np.rint(shifted).astype(np.int16)

    largest_mm = float(np.max(np.hypot(u, v)))
    plane = _orientation_name(normal)
    if tilt_deg >= TILT_TOLERANCE_DEG:
        finding = QualityFinding(
            "gantry_tilt",
            WARNING,
            f"gantry tilt of {tilt_deg:.1f} degrees: slice positions drift "
            f"{largest_mm:.1f} mm in-plane across the stack",
            f"each slice shifted in-plane to remove the shear; the grid is "
            f"orthogonal to the {plane} slice planes, which keep their recorded "
            "orientation",
        )
    else:
        finding = QualityFinding(
            "slice_offsets",
            WARNING,
            f"slices are displaced in-plane by up to {largest_mm:.2f} mm",
            "each slice shifted in-plane to line the stack up",
        )
    return corrected, tilt_deg, [finding]


def _regular_slices(
    volume: np.ndarray, along: np.ndarray, thickness: float | None
) -> tuple[np.ndarray, np.ndarray, float, bool, list[QualityFinding]]:
    """Check slice intervals; fill or resample contiguous scans to a regular grid.

    Returns the volume, slice positions, interval, contiguity and findings.
    """
    n = volume.shape[0]
    if n == 1:
        interval = thickness or 1.0
        return volume, along, float(interval), True, []

    gaps = np.diff(along)
    nominal = float(np.median(gaps))
    contiguous = thickness is None or nominal <= GAPPED_RATIO * thickness
    tolerance = max(INTERVAL_TOLERANCE * nominal, 0.01)
    if np.all(np.abs(gaps - nominal) <= tolerance):
        interval = float((along[-1] - along[0]) / (n - 1))
        return volume, along, interval, contiguous, []

    ratios = gaps / nominal
    multiples = np.rint(ratios)
    missing_case = bool(
        np.all(multiples >= 1) and np.all(np.abs(ratios - multiples) <= 0.1)
    )
    findings = []
    if missing_case:
        missing = int(np.sum(multiples - 1))
        widest = int(np.max(multiples - 1))
        holes = int(np.sum(multiples > 1))
        at = ", ".join(f"{z:.1f}" for z in along[:-1][multiples > 1][:5])
        message = (
            f"{missing} missing slices in {holes} holes (widest {widest} slices) "
            f"after z = {at} mm; nominal interval {nominal:.2f} mm"
        )
        if not contiguous:
            findings.append(
                QualityFinding(
                    "missing_slices",
                    WARNING,
                    message,
                    "not filled: in gapped HRCT each slice stands for itself; "
                    "slice_positions_mm records the gap",
                )
            )
            return volume, along, nominal, contiguous, findings
        few = missing <= MAX_FILLED_SLICES and widest <= MAX_FILLED_HOLE
        findings.append(
            QualityFinding(
                "missing_slices",
                WARNING if few else ERROR,
                message,
                "filled by linear interpolation between the neighbouring slices"
                if few
                else "interpolated across the holes to keep a regular grid; "
                "measurements across them are unreliable",
            )
        )
        step = nominal
    else:
        step = nominal
        message = (
            f"uneven slice intervals from {gaps.min():.2f} to {gaps.max():.2f} mm "
            f"(median {nominal:.2f} mm)"
        )
        if not contiguous:
            findings.append(
                QualityFinding(
                    "uneven_spacing",
                    WARNING,
                    message,
                    "kept as recorded (gapped HRCT); slice_positions_mm gives "
                    "each slice's position",
                )
            )
            return volume, along, nominal, contiguous, findings
        large = gaps.max() > 3 * nominal
        findings.append(
            QualityFinding(
                "uneven_spacing",
                ERROR if large else WARNING,
                message,
                f"resampled by linear interpolation to a regular {step:.2f} mm grid",
            )
        )

    count = int(round((along[-1] - along[0]) / step)) + 1
    grid = np.linspace(along[0], along[-1], count)
    interval = float((along[-1] - along[0]) / (count - 1))
    return _regrid(volume, along, grid), grid, interval, contiguous, findings


def _regrid(volume: np.ndarray, along: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Linear interpolation between slices onto new positions."""
    below = np.clip(np.searchsorted(along, grid, side="right") - 1, 0, len(along) - 2)
    weight = (grid - along[below]) / (along[below + 1] - along[below])
    out = np.empty((grid.size,) + volume.shape[1:], dtype=np.int16)
    for k, (j, w) in enumerate(zip(below, weight, strict=True)):
        if w < 1e-6:
            out[k] = volume[j]
        elif w > 1 - 1e-6:
            out[k] = volume[j + 1]
        else:
            mixed = (1 - w) * volume[j].astype(np.float32) + w * volume[j + 1]
            out[k] = np.rint(mixed).astype(np.int16)
    return out


def _orient_lps(
    volume: np.ndarray,
    spacing: tuple[float, float, float],
    origin: tuple[float, float, float],
    matrix: np.ndarray,
    along: np.ndarray,
) -> tuple[np.ndarray, tuple, tuple, tuple, np.ndarray]:
    """Bring a ``[k, j, i]`` volume with direction columns ``matrix`` to LPS."""
    matrix = _snap_direction(matrix)
    if np.array_equal(matrix, np.eye(3)):
        return volume, spacing, origin, _identity(), along

    sitk = _sitk()
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing(tuple(float(v) for v in spacing[::-1]))
    image.SetOrigin(tuple(float(v) for v in origin))
    image.SetDirection(tuple(float(v) for v in matrix.ravel()))
    oriented = sitk.DICOMOrient(image, "LPS")

    new_matrix = _snap_direction(np.array(oriented.GetDirection()).reshape(3, 3))
    new_normal = new_matrix[:, 2]
    old_normal = matrix[:, 2]
    new_origin = np.array(oriented.GetOrigin())
    along_dot = float(new_normal @ old_normal)
    if abs(along_dot) > 0.99:
        positions = along if along_dot > 0 else -along[::-1]
        # in-plane flips are exact; the normal component follows the slices
        new_origin = new_origin + (positions[0] - new_origin @ new_normal) * new_normal
    else:
        z_step = oriented.GetSpacing()[2]
        positions = new_origin @ new_normal + z_step * np.arange(oriented.GetSize()[2])
    return (
        sitk.GetArrayFromImage(oriented),
        tuple(float(v) for v in oriented.GetSpacing()[::-1]),
        tuple(float(v) for v in new_origin),
        tuple(float(v) for v in new_matrix.ravel()),
        np.asarray(positions, dtype=float),
    )


def _snap_direction(matrix: np.ndarray, tolerance: float = 1e-3) -> np.ndarray:
    """Round cosines within ``tolerance`` of a signed axis permutation to it."""
    matrix = np.asarray(matrix, dtype=float).reshape(3, 3)
    rounded = np.rint(matrix)
    if (
        np.all(np.abs(matrix - rounded) <= tolerance)
        and abs(np.linalg.det(rounded)) == 1
    ):
        return rounded + 0.0  # no negative zeros
    return matrix


# ---------------------------------------------------------------------------
# NIfTI, NRRD and MetaImage


def _load_image_file(path: Path, image_format: str) -> Scan:
    sitk = _sitk()

    findings: list[QualityFinding] = []
    sidecar, sidecar_note = _read_sidecar(path)
    if sidecar_note:
        findings.append(sidecar_note)
    modality = _sidecar_text(sidecar, "Modality")
    if modality is not None and modality.upper() != "CT":
        raise ScanError(
            f"{path}: modality {modality} (from {sidecar_path(path).name}), not CT"
        )

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise ScanError(
            f"{path}: cannot be read as {image_format.upper()} ({_itk_reason(error)})"
        ) from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ScanError(
            f"{path}: expected a 3-D single-channel volume, got "
            f"{image.GetDimension()}-D with {image.GetNumberOfComponentsPerPixel()} "
            "components"
        )
    original_direction = np.array(image.GetDirection()).reshape(3, 3)
    if not np.array_equal(_snap_direction(original_direction), np.eye(3)):
        image = sitk.DICOMOrient(image, "LPS")

    array = sitk.GetArrayFromImage(image)
    volume = _as_hounsfield(array, str(path))
    spacing = tuple(float(v) for v in image.GetSpacing()[::-1])
    origin = tuple(float(v) for v in image.GetOrigin())
    matrix = _snap_direction(np.array(image.GetDirection()).reshape(3, 3))
    normal = matrix[:, 2]
    along = float(np.dot(origin, normal)) + spacing[0] * np.arange(volume.shape[0])

    thickness = _sidecar_float(sidecar, "SliceThickness")
    if thickness is None:
        thickness = _nrrd_thickness(image)
    kernel = _sidecar_text(sidecar, "ConvolutionKernel")
    metadata = ScanMetadata(
        source_format=image_format,
        shape=(0, 0, 0),
        spacing_mm=spacing,
        slice_thickness_mm=thickness,
        slice_interval_mm=spacing[0],
        contiguous=True,
        modality=modality.upper() if modality else None,
        kernel=kernel,
        manufacturer=_sidecar_text(sidecar, "Manufacturer"),
        model=_sidecar_text(sidecar, "ManufacturerModelName")
        or _sidecar_text(sidecar, "ManufacturersModelName"),
        kvp=_sidecar_float(sidecar, "KVP") or _sidecar_float(sidecar, "KVp"),
        contrast=_sidecar_contrast(sidecar),
        acquisition_year=_sidecar_year(sidecar),
        series_number=_sidecar_int(sidecar, "SeriesNumber"),
        kernel_class=classify_kernel(kernel),
    )
    return _finish(
        volume,
        spacing,
        origin,
        tuple(float(v) for v in matrix.ravel()),
        along,
        metadata,
        findings,
        str(path),
        contiguity_known=thickness is not None,
    )


def _read_sidecar(path: Path) -> tuple[dict[str, Any], QualityFinding | None]:
    side = sidecar_path(path)
    if not side.is_file():
        return {}, None
    try:
        keys = json.loads(side.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return {}, QualityFinding(
            "sidecar_unreadable",
            WARNING,
            f"{side.name} is not valid JSON ({type(error).__name__})",
            "ignored; thickness and scanner unknown",
        )
    if not isinstance(keys, dict):
        return {}, QualityFinding(
            "sidecar_unreadable",
            WARNING,
            f"{side.name} does not hold a JSON object",
            "ignored; thickness and scanner unknown",
        )
    return keys, None


def _sidecar_text(keys: Mapping[str, Any], name: str) -> str | None:
    value = keys.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, list):
        return "\\".join(str(v) for v in value) or None
    return str(value)


def _sidecar_float(keys: Mapping[str, Any], name: str) -> float | None:
    value = keys.get(name)
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        result = float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
    return result if result is not None and math.isfinite(result) else None


def _sidecar_int(keys: Mapping[str, Any], name: str) -> int | None:
    value = _sidecar_float(keys, name)
    return None if value is None else int(value)


def _sidecar_contrast(keys: Mapping[str, Any]) -> bool | None:
    if "ContrastBolusAgent" not in keys:
        return None
    return bool(_sidecar_text(keys, "ContrastBolusAgent"))


def _sidecar_year(keys: Mapping[str, Any]) -> int | None:
    year = _sidecar_int(keys, "AcquisitionYear")
    if year is not None:
        return year
    for name in ("AcquisitionDateTime", "AcquisitionDate", "SeriesDate", "StudyDate"):
        text = _sidecar_text(keys, name)
        if text and text[:4].isdigit():
            return int(text[:4])
    return None


def _nrrd_thickness(image: SimpleITK.Image) -> float | None:
    for key in ("NRRD_thicknesses[2]",):
        if image.HasMetaDataKey(key):
            try:
                value = float(image.GetMetaData(key))
            except ValueError:
                return None
            return value if math.isfinite(value) and value > 0 else None
    return None


def _itk_reason(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "Description:" in line:
            return line.split("Description:", 1)[1].strip()[:160]
    return (lines[-1] if lines else type(error).__name__)[:160]


# ---------------------------------------------------------------------------
# Checks shared by every format


def _finish(
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
    below = volume < PADDING_BELOW_HU
    below_count = int(np.count_nonzero(below))
    if below_count:
        volume[below] = AIR_HU
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
                f"only {volume.shape[0]} slices; volumetric chest measurements "
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
    """Is air where it should be? Catches unrescaled data and wrong scaling."""
    step_z = max(1, volume.shape[0] // 24)
    sample = volume[::step_z, ::4, ::4]
    low, high = np.percentile(sample, [1.0, 99.9])
    if -1100 <= low <= -900:
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
            f"lowest values lie near {low:.0f} HU (1st percentile), not near air "
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
        return [
            QualityFinding(
                "thickness_unknown",
                INFO,
                "slice thickness is not recorded",
                "assumed contiguous; add SliceThickness to a JSON sidecar to check",
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


# ---------------------------------------------------------------------------
# Small helpers


def _pydicom():
    import pydicom

    return pydicom


def _sitk():
    import SimpleITK

    return SimpleITK


def _identity() -> tuple[float, ...]:
    return (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def _as_hounsfield(array: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 3:
        raise ScanError(f"{name}: expected a 3-D [z, y, x] volume, got {array.ndim}-D")
    if array.dtype == np.int16:
        return np.array(array, copy=True)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ScanError(f"{name}: expected numbers, got {array.dtype}")
    values = np.rint(array) if np.issubdtype(array.dtype, np.floating) else array
    return np.clip(values, -32768, 32767).astype(np.int16)


def _check_triple(values: Sequence[float], name: str, positive: bool = False) -> tuple:
    triple = tuple(float(v) for v in values)
    if len(triple) != 3 or not all(math.isfinite(v) for v in triple):
        raise ValueError(f'Argument "{name}" must have 3 finite values, got {values!r}')
    if positive and min(triple) <= 0:
        raise ValueError(f'Argument "{name}" must be positive, got {values!r}')
    return triple


def _check_direction(direction: Sequence[float]) -> tuple[float, ...]:
    matrix = np.asarray(direction, dtype=float)
    if matrix.size != 9 or abs(abs(np.linalg.det(matrix.reshape(3, 3))) - 1) > 1e-3:
        raise ValueError('Argument "direction" must be 9 direction cosines')
    return tuple(float(v) for v in matrix.ravel())


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None and v > 0]
    return float(np.median(present)) if present else None


def _values(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        return [value]
    return list(value)


def _vector(value: Any, size: int) -> np.ndarray | None:
    items = _values(value)
    if len(items) != size:
        return None
    try:
        vector = np.array([float(v) for v in items])
    except (TypeError, ValueError):
        return None
    return vector if np.all(np.isfinite(vector)) else None


def _text(ds: Any, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None:
        return None
    text = str(value).strip()
    # some converters write the literal text "None" for an empty value
    return text if text and text.lower() not in {"none", "null", "n/a"} else None


def _float(ds: Any, keyword: str) -> float | None:
    value = ds.get(keyword)
    items = _values(value)
    if not items:
        return None
    try:
        result = float(items[0])
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def _int(ds: Any, keyword: str) -> int | None:
    value = _float(ds, keyword)
    return None if value is None else int(value)


def _year(ds: Any) -> int | None:
    for keyword in (
        "AcquisitionDateTime",
        "AcquisitionDate",
        "SeriesDate",
        "StudyDate",
        "ContentDate",
    ):
        text = _text(ds, keyword)
        if text and len(text) >= 4 and text[:4].isdigit():
            year = int(text[:4])
            if 1970 <= year <= dt.date.today().year + 1:
                return year
    return None


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
