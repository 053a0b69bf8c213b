"""Reading DICOM folders: headers, series choice, pixel data and slice geometry."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import math
import os
import re
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from radscl.errors import ScanError
from radscl.io._common import IMAGE_SUFFIXES
from radscl.io._common import image_format
from radscl.io._common import import_pydicom
from radscl.io._common import import_sitk
from radscl.io._common import positive_median
from radscl.io.checks import finish_scan
from radscl.io.geometry import orient_lps
from radscl.io.geometry import orientation_name
from radscl.io.geometry import regular_slices
from radscl.io.geometry import remove_shear
from radscl.io.scan import AIR_HU
from radscl.io.scan import INFO
from radscl.io.scan import WARNING
from radscl.io.scan import QualityFinding
from radscl.io.scan import Scan
from radscl.io.scan import ScanMetadata
from radscl.io.scan import classify_kernel

logger = logging.getLogger(__name__)

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
    "SamplesPerPixel",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    "RescaleSlope",
    "RescaleIntercept",
    "PixelPaddingValue",
    "PixelPaddingRangeLimit",
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

_EXPLICIT_LITTLE = "1.2.840.10008.1.2.1"
_NATIVE_SYNTAXES = {"1.2.840.10008.1.2", _EXPLICIT_LITTLE}
_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"
_MULTI_FRAME = "multi-frame image (not supported)"
# reasons that rule a series out even when it is asked for by name
_UNLOADABLE = {
    "not an image",
    "no slice geometry",
    _MULTI_FRAME,
    *_NON_IMAGE_SOP_PREFIXES.values(),
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
} | set(IMAGE_SUFFIXES)


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
    files = find_files(path) if path.is_dir() else [path]
    if not files:
        raise ScanError(f"{path}: folder is empty")

    headers, _ = _read_headers(path, files)
    groups = _group_series(headers)
    candidates = [group for group in groups if group.info.usable]
    if candidates:
        best, _ = _rank_candidates(candidates)
        best.info.chosen = True
    return [group.info for group in groups]


@dataclasses.dataclass
class _Header:
    """What radscl needs from one DICOM file's header; identifiers are not kept
    except the series UID, which is used for grouping and hashing only."""

    path: Path
    series_uid: str
    series_number: int | None
    modality: str | None
    sop_class: str
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
    # where the pixel data element starts, for a direct read of uncompressed
    # little-endian 16-bit slices; None when pydicom must decode the slice
    pixel_offset: int | None
    explicit_vr: bool
    signed: bool
    bits_stored: int
    slope: float | None
    intercept: float | None
    padding: tuple[int, int] | None


@dataclasses.dataclass
class _Series:
    key: str
    headers: list[_Header]
    info: SeriesInfo
    normal: np.ndarray | None


def find_files(folder: Path) -> list[Path]:
    """Every file under a folder, sorted, skipping hidden files and folders."""
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if not name.startswith("."):
                files.append(Path(root) / name)
    return files


def _read_headers(
    source: Path, files: list[Path]
) -> tuple[list[_Header], list[tuple[Path, str]]]:
    """Read the headers of every DICOM file; return them and the corrupt ones."""
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
                ds, offset = _read_header_dataset(file)
                header = None if ds is None else _header_from_dataset(file, ds, offset)
        except Exception as error:  # any parse failure means a corrupt file
            corrupt.append((file, _describe_read_error(error)))
            continue
        if header is None:
            not_dicom.append(file)
        else:
            headers.append(header)

    if not_dicom:
        logger.debug("ignored %d files that are not DICOM", len(not_dicom))
    if not headers:
        _raise_no_dicom(source, files, not_dicom, corrupt)
    return headers, corrupt


def _read_header_dataset(file: Path) -> tuple[Any | None, int]:
    """The header of a DICOM file without its pixel data, and the file offset
    where reading stopped (the pixel data element, if any); None if not DICOM.
    """
    pydicom = import_pydicom()
    from pydicom.errors import InvalidDicomError

    with open(file, "rb") as handle:
        try:
            ds = pydicom.dcmread(
                handle, stop_before_pixels=True, specific_tags=_HEADER_TAGS
            )
            return ds, handle.tell()
        except InvalidDicomError:
            if not _may_lack_preamble(file):
                return None, 0
        handle.seek(0)
        try:
            ds = pydicom.dcmread(
                handle, stop_before_pixels=True, specific_tags=_HEADER_TAGS, force=True
            )
        except Exception:  # forced parsing of a file that is not DICOM at all
            return None, 0
        if "SOPClassUID" not in ds or "Rows" not in ds:
            return None, 0
        return ds, handle.tell()


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
    images = [f for f in not_dicom if image_format(f) is not None]
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


def _header_from_dataset(path: Path, ds: Any, pixel_offset: int) -> _Header:
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
    native = (
        str(transfer_syntax or "1.2.840.10008.1.2") in _NATIVE_SYNTAXES
        and _int(ds, "BitsAllocated") == 16
        and (_int(ds, "SamplesPerPixel") or 1) == 1
        and (_int(ds, "NumberOfFrames") or 1) == 1
    )
    signed = _int(ds, "PixelRepresentation") == 1

    return _Header(
        path=path,
        series_uid=str(ds.get("SeriesInstanceUID", "") or ""),
        series_number=_int(ds, "SeriesNumber"),
        modality=modality,
        sop_class=sop_class,
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
        pixel_offset=pixel_offset if native else None,
        explicit_vr=str(transfer_syntax) == _EXPLICIT_LITTLE,
        signed=signed,
        bits_stored=_int(ds, "BitsStored") or 16,
        slope=_float(ds, "RescaleSlope"),
        intercept=_float(ds, "RescaleIntercept"),
        padding=_padding_range(ds, signed),
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
        orientation = orientation_name(normal)

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
        return _MULTI_FRAME
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
        if reason.startswith("modality") or reason in _UNLOADABLE:
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
        if g.info.excluded_because in _UNLOADABLE - {"no slice geometry"}
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


def load_dicom(source: Path, files: list[Path], series: int | str | None) -> Scan:
    """Load the chosen (or requested) CT series among DICOM files.

    ``source`` is the folder or file the user gave, for messages; ``files``
    are the candidate files under it.
    """
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
    thickness = positive_median([h.thickness for h in members])

    volume, tilt_deg, shear_findings = remove_shear(
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
    volume, along, interval, contiguous, grid_findings = regular_slices(
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
    volume, spacing, origin, direction, along = orient_lps(
        volume, spacing, tuple(origin), matrix, along
    )
    return finish_scan(
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
    rows, columns = members[0].rows, members[0].columns
    volume = np.empty((len(members), rows, columns), dtype=np.int16)
    kept = []
    failed = []
    missing_rescale = 0
    padding_count = 0
    for index, header in enumerate(members):
        try:
            hounsfield, padding, rescaled = _slice_hounsfield(header)
        except Exception as error:  # a broken slice is left out, the rest load
            failed.append((header.path, _describe_pixel_error(error)))
            continue
        if hounsfield.shape != (rows, columns):
            failed.append((header.path, f"image size {hounsfield.shape} differs"))
            continue
        missing_rescale += not rescaled
        if padding is not None:
            padding_count += int(np.count_nonzero(padding))
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


def _slice_hounsfield(
    header: _Header,
) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """One slice in Hounsfield units (int32), its padding mask, and whether
    the file had rescale tags."""
    rescaled = header.slope is not None and header.intercept is not None
    slope = header.slope if rescaled else 1.0
    intercept = header.intercept if rescaled else 0.0
    if header.pixel_offset is not None:
        stored = _read_native_pixels(header)
        return (
            _rescale(stored, slope, intercept),
            _padding_mask(header, stored),
            rescaled,
        )

    pydicom = import_pydicom()
    with warnings.catch_warnings():
        # see _read_headers: warning texts may quote identifiers
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(header.path, force=True, specific_tags=_PIXEL_TAGS)
        if "PixelData" not in ds:
            raise ValueError("no pixel data")
        try:
            stored = np.asarray(ds.pixel_array).astype(np.int32)
        except (NotImplementedError, RuntimeError):
            if not header.compressed:
                raise
            # no pydicom decoder for this syntax; GDCM reads it, rescaled
            hounsfield = _pixels_via_sitk(header.path)
            return (
                hounsfield,
                _padding_mask(header, hounsfield, slope, intercept),
                rescaled,
            )
    return _rescale(stored, slope, intercept), _padding_mask(header, stored), rescaled


def _read_native_pixels(header: _Header) -> np.ndarray:
    """Stored values of an uncompressed little-endian 16-bit slice, read
    straight from the file at the offset found while reading the header."""
    count = header.rows * header.columns
    with open(header.path, "rb") as handle:
        handle.seek(header.pixel_offset)
        element = handle.read(12 if header.explicit_vr else 8)
        if element[:4] != _PIXEL_DATA_TAG:
            raise ValueError("no pixel data")
        length = int.from_bytes(element[-4:], "little")
        if length == 0xFFFFFFFF:
            raise ValueError("encapsulated pixel data in an uncompressed syntax")
        raw = handle.read(min(length, 2 * count))
    if len(raw) < 2 * count:
        raise EOFError("pixel data shorter than the image size")

    stored = np.frombuffer(raw, dtype="<i2" if header.signed else "<u2")
    stored = stored.reshape(header.rows, header.columns).astype(np.int32)
    if header.bits_stored < 16:
        if header.signed:
            shift = 32 - header.bits_stored
            stored = (stored << shift) >> shift
        else:
            stored &= (1 << header.bits_stored) - 1
    return stored


def _pixels_via_sitk(path: Path) -> np.ndarray:
    """Decode a compressed slice with GDCM; the result is already rescaled."""
    sitk = import_sitk()
    image = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(image)
    return np.rint(array.reshape(array.shape[-2:])).astype(np.int32)


def _rescale(stored: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    if slope == 1.0 and float(intercept).is_integer():
        return stored + int(intercept)
    return np.rint(stored * slope + intercept).astype(np.int32)


def _padding_mask(
    header: _Header, values: np.ndarray, slope: float = 1.0, intercept: float = 0.0
) -> np.ndarray | None:
    """Voxels marked as padding by PixelPaddingValue (and its range limit).

    The padding range is in stored units; ``slope`` and ``intercept`` bring it
    to the units of ``values`` when those are already rescaled.
    """
    if header.padding is None:
        return None
    low, high = (round(end * slope + intercept) for end in header.padding)
    return (values >= min(low, high)) & (values <= max(low, high))


def _padding_range(ds: Any, signed: bool) -> tuple[int, int] | None:
    """PixelPaddingValue and PixelPaddingRangeLimit in stored units."""
    ends = []
    for keyword in ("PixelPaddingValue", "PixelPaddingRangeLimit"):
        value = ds.get(keyword)
        if value is None:
            continue
        if isinstance(value, bytes):  # the ambiguous US/SS VR left unresolved
            value = np.frombuffer(value[:2], dtype="<i2" if signed else "<u2")[0]
        ends.append(int(value))
    if not ends:
        return None
    return min(ends), max(ends)


def _describe_pixel_error(error: Exception) -> str:
    if isinstance(error, EOFError) or "length" in str(error).lower():
        return "truncated pixel data"
    return f"unreadable pixel data ({type(error).__name__})"


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
