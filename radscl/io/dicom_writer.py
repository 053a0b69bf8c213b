"""Writing a Hounsfield volume as a CT DICOM series (for phantoms and tests)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from radscl.errors import ParameterError
from radscl.io._common import check_triple
from radscl.io._common import import_pydicom
from radscl.io.dicom import CT_IMAGE_STORAGE
from radscl.io.scan import classify_kernel


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
    pydicom = import_pydicom()
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID
    from pydicom.uid import ExplicitVRLittleEndian
    from pydicom.uid import generate_uid
    from pydicom.valuerep import format_number_as_ds as ds_text

    volume = np.asarray(hounsfield)
    if volume.ndim != 3:
        raise ParameterError(
            f'Argument "hounsfield" must be a 3-D [z, y, x] array, got {volume.ndim}-D'
        )
    spacing = check_triple(spacing_mm, "spacing_mm", positive=True)
    origin = check_triple(origin_mm, "origin_mm")
    n_slices, rows, columns = volume.shape
    if slice_positions_mm is None:
        z_positions = origin[2] + spacing[0] * np.arange(n_slices)
    else:
        z_positions = np.asarray(slice_positions_mm, dtype=float)
        if z_positions.shape != (n_slices,):
            raise ParameterError(
                f'Argument "slice_positions_mm" must have {n_slices} values, '
                f"one per slice, but has {z_positions.size}"
            )
    interval = float(np.median(np.diff(z_positions))) if n_slices > 1 else spacing[0]
    thickness = interval if slice_thickness_mm is None else float(slice_thickness_mm)

    low_hu, high_hu = float(volume.min()), float(volume.max())
    signed = low_hu - rescale_intercept < -0.5
    low, high = (-32768, 32767) if signed else (0, 65535)
    if (
        round(low_hu - rescale_intercept) < low
        or round(high_hu - rescale_intercept) > high
    ):
        raise ParameterError(
            "hounsfield values do not fit 16-bit stored values with "
            f"RescaleIntercept {rescale_intercept}"
        )
    stored_type = np.dtype("<i2" if signed else "<u2")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    study_date = f"{int(study_year):04d}0701"
    sop_class = CT_IMAGE_STORAGE if modality == "CT" else "1.2.840.10008.5.1.4.1.1.4"
    window = (-600, 1600) if classify_kernel(kernel) == "sharp" else (40, 400)

    # One dataset is filled once and only its per-slice elements change:
    # setting ~50 validated elements per file would dominate the run time.
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = sop_class
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
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyID = "1"
    ds.SeriesNumber = int(series_number)
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = 1
    ds.ImagePositionPatient = [ds_text(origin[0]), ds_text(origin[1]), "0"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.FrameOfReferenceUID = generate_uid()
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = "0"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.PixelSpacing = [ds_text(spacing[1]), ds_text(spacing[2])]
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
    ds.PixelData = b""

    paths = []
    for k in range(n_slices):
        sop_uid = generate_uid()
        z_text = ds_text(float(z_positions[k]))
        stored = np.rint(volume[k].astype(np.float64) - rescale_intercept)
        meta.MediaStorageSOPInstanceUID = sop_uid
        ds.SOPInstanceUID = sop_uid
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [ds_text(origin[0]), ds_text(origin[1]), z_text]
        ds.SliceLocation = z_text
        ds.PixelData = stored.astype(stored_type).tobytes()

        file_path = out / f"CT{int(series_number):03d}_{k + 1:04d}.dcm"
        pydicom.dcmwrite(file_path, ds, enforce_file_format=True)
        paths.append(file_path)
    return paths
