"""NIfTI, NRRD and MetaImage volumes, their JSON sidecars, and scans from arrays."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

import numpy as np

from radscl.errors import ParameterError
from radscl.errors import ScanError
from radscl.io._common import IMAGE_SUFFIXES
from radscl.io._common import as_hounsfield
from radscl.io._common import check_direction
from radscl.io._common import check_triple
from radscl.io._common import identity_direction
from radscl.io._common import image_format
from radscl.io._common import import_sitk
from radscl.io._common import json_default
from radscl.io._common import snap_direction
from radscl.io.checks import finish_scan
from radscl.io.scan import WARNING
from radscl.io.scan import QualityFinding
from radscl.io.scan import Scan
from radscl.io.scan import ScanMetadata
from radscl.io.scan import classify_kernel

if TYPE_CHECKING:
    import SimpleITK


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

    The array is copied to ``int16``; values below -1500 HU become air and the
    quality checks of :func:`load_scan` that need no file (Hounsfield range,
    contiguity, slice count) are run.

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
    volume = as_hounsfield(hounsfield, "hounsfield")
    spacing = check_triple(spacing_mm, "spacing_mm", positive=True)
    origin = check_triple(origin_mm, "origin_mm")
    matrix = identity_direction() if direction is None else check_direction(direction)
    if slice_positions_mm is None:
        normal = np.array(matrix).reshape(3, 3)[:, 2]
        positions = float(np.dot(origin, normal)) + spacing[0] * np.arange(
            volume.shape[0]
        )
    else:
        positions = np.asarray(slice_positions_mm, dtype=float)
        if positions.shape != (volume.shape[0],):
            raise ParameterError(
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
    return finish_scan(volume, spacing, origin, matrix, positions, metadata, [], source)


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
    sitk = import_sitk()

    array = np.asarray(array)
    if array.shape != scan.hounsfield.shape:
        raise ParameterError(
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

    Notes
    -----
    These formats hold a regular grid only: the slices of a gapped scan with
    uneven positions are written at the nominal interval.

    Returns
    -------
    pathlib.Path
        The image path.
    """
    sitk = import_sitk()

    path = Path(path)
    if image_format(path) is None:
        raise ParameterError(
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
            json.dumps(keys, indent=2, sort_keys=True, default=json_default) + "\n"
        )
    return path


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """Return the JSON sidecar path of an image file (``a.nii.gz`` -> ``a.json``)."""
    path = Path(path)
    name = path.name
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
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


def load_image_file(path: Path, kind: str) -> Scan:
    """Load a NIfTI, NRRD or MetaImage volume (``kind``) and its JSON sidecar."""
    sitk = import_sitk()

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
            f"{path}: cannot be read as {kind.upper()} ({_itk_reason(error)})"
        ) from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ScanError(
            f"{path}: expected a 3-D single-channel volume, got "
            f"{image.GetDimension()}-D with {image.GetNumberOfComponentsPerPixel()} "
            "components"
        )
    original_direction = np.array(image.GetDirection()).reshape(3, 3)
    if not np.array_equal(snap_direction(original_direction), np.eye(3)):
        image = sitk.DICOMOrient(image, "LPS")

    spacing = tuple(float(v) for v in image.GetSpacing()[::-1])
    origin = tuple(float(v) for v in image.GetOrigin())
    # a view, copied once by as_hounsfield; the ITK buffer is freed with image
    volume = as_hounsfield(sitk.GetArrayViewFromImage(image), str(path))
    matrix = snap_direction(np.array(image.GetDirection()).reshape(3, 3))
    thickness = _sidecar_float(sidecar, "SliceThickness")
    if thickness is None:
        thickness = _nrrd_thickness(image)
    del image
    normal = matrix[:, 2]
    along = float(np.dot(origin, normal)) + spacing[0] * np.arange(volume.shape[0])

    kernel = _sidecar_text(sidecar, "ConvolutionKernel")
    metadata = ScanMetadata(
        source_format=kind,
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
    return finish_scan(
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
