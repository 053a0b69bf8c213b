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

Padding and Hounsfield units
----------------------------
RescaleSlope and RescaleIntercept are applied slice by slice. Voxels marked by
PixelPaddingValue (and PixelPaddingRangeLimit), and any value below
:data:`PADDING_BELOW_HU`, lie outside the reconstruction circle and become air
(:data:`AIR_HU`). A scan whose air does not sit near -1000 HU is flagged as
unrescaled or implausible but is not altered.

Image files
-----------
NIfTI, NRRD and MetaImage volumes are read with SimpleITK and turned to LPS
with ``DICOMOrient``. They carry no slice thickness, so a BIDS/dcm2niix-style
JSON sidecar next to the image (``scan.nii.gz`` -> ``scan.json``) is read when
present (``SliceThickness``, ``ConvolutionKernel``, ``Manufacturer``,
``ManufacturerModelName``, ``KVP``, ``ContrastBolusAgent``,
``AcquisitionDateTime``...); without it a scan counts as contiguous and says so.

Privacy
-------
Patient identifiers are never kept: names, IDs, dates other than the year and
UIDs are read by pydicom but not copied into the metadata, the findings, the
logs or the error messages. A series is named by its SeriesNumber and a short
one-way hash of its SeriesInstanceUID (``series_key``). Series descriptions are
free text and are not reported either.

Known limitations
-----------------
Enhanced (multi-frame) CT objects are not read. DICOM files lacking the
128-byte preamble are only tried when their names look like DICOM (no suffix,
``.dcm``, ``.ima`` or a numeric suffix). Compressed transfer syntaxes that
pydicom cannot decode are read slice by slice through GDCM, which is several
times slower than uncompressed files. After a gantry-tilt correction the
volume keeps the tilted slice planes (a non-identity ``direction``) rather
than being resampled onto true axial planes.

Modules
-------
:mod:`~radscl.io.scan` (the data classes and kernel classes),
:mod:`~radscl.io.dicom` (DICOM reading and series choice),
:mod:`~radscl.io.geometry` (tilt, slice spacing, orientation),
:mod:`~radscl.io.images` (NIfTI/NRRD/MHA, sidecars, scans from arrays),
:mod:`~radscl.io.checks` (checks common to every format) and
:mod:`~radscl.io.dicom_writer` (synthetic DICOM series).
"""

from __future__ import annotations

import os
from pathlib import Path

from radscl.errors import ScanError
from radscl.io._common import image_format
from radscl.io.checks import GAPPED_RATIO
from radscl.io.checks import MIN_SLICES
from radscl.io.checks import PADDING_BELOW_HU
from radscl.io.dicom import SeriesInfo
from radscl.io.dicom import find_files
from radscl.io.dicom import list_series
from radscl.io.dicom import load_dicom
from radscl.io.dicom_writer import write_dicom_series
from radscl.io.geometry import MAX_FILLED_HOLE
from radscl.io.geometry import MAX_FILLED_SLICES
from radscl.io.images import load_image_file
from radscl.io.images import metadata_to_sidecar
from radscl.io.images import scan_from_array
from radscl.io.images import scan_to_sitk
from radscl.io.images import sidecar_path
from radscl.io.images import write_image
from radscl.io.scan import AIR_HU
from radscl.io.scan import ERROR
from radscl.io.scan import INFO
from radscl.io.scan import WARNING
from radscl.io.scan import QualityFinding
from radscl.io.scan import Scan
from radscl.io.scan import ScanMetadata
from radscl.io.scan import classify_kernel

__all__ = [
    "AIR_HU",
    "ERROR",
    "GAPPED_RATIO",
    "INFO",
    "MAX_FILLED_HOLE",
    "MAX_FILLED_SLICES",
    "MIN_SLICES",
    "PADDING_BELOW_HU",
    "WARNING",
    "QualityFinding",
    "Scan",
    "ScanMetadata",
    "SeriesInfo",
    "classify_kernel",
    "list_series",
    "load_scan",
    "metadata_to_sidecar",
    "scan_from_array",
    "scan_to_sitk",
    "sidecar_path",
    "write_dicom_series",
    "write_image",
]


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
        files = find_files(path)
        if not files:
            raise ScanError(f"{path}: folder is empty")
        return load_dicom(path, files, series)

    kind = image_format(path)
    if kind is not None:
        if series is not None:
            raise ScanError(f"{path}: series can only be chosen in a DICOM folder")
        return load_image_file(path, kind)
    return load_dicom(path, [path], series)
