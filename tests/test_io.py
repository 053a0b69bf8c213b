"""Tests of scan loading, series choice, quality checks and the writers."""

from __future__ import annotations

import json
import logging
import math
import random
import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from conftest import shared_data

from radscl.errors import RadsclError
from radscl.errors import ScanError
from radscl.io import AIR_HU
from radscl.io import ERROR
from radscl.io import INFO
from radscl.io import WARNING
from radscl.io import classify_kernel
from radscl.io import list_series
from radscl.io import load_scan
from radscl.io import scan_from_array
from radscl.io import scan_to_sitk
from radscl.io import sidecar_path
from radscl.io import write_dicom_series
from radscl.io import write_image

SPACING = (2.5, 0.7, 0.7)
ORIGIN = (-22.05, -30.1, -120.0)


def chest_like(n_slices: int = 40, size: int = 64, seed: int = 0) -> np.ndarray:
    """A small chest-like volume: air, an elliptic body, two lungs, a spine.

    The lungs taper towards the ends so that every slice differs, and noise
    makes each voxel distinct; values stay within [-1024, 3071] like a scanner.
    """
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[0:n_slices, 0:size, 0:size].astype(float)
    cy, cx = size / 2, size / 2
    hounsfield = np.full((n_slices, size, size), -1000.0)

    body = ((y - cy) / (0.38 * size)) ** 2 + ((x - cx) / (0.45 * size)) ** 2 < 1
    hounsfield[body] = 40.0
    taper = 1.0 - 0.5 * np.abs(z - n_slices / 2) / n_slices
    for side in (-1, 1):
        lung = ((y - cy + 2) / (0.25 * size * taper)) ** 2 + (
            (x - cx - side * 0.2 * size) / (0.14 * size * taper)
        ) ** 2 < 1
        hounsfield[lung] = -850.0
    spine = (y - cy - 0.28 * size) ** 2 + (x - cx) ** 2 < (0.05 * size) ** 2
    hounsfield[spine] = 700.0

    hounsfield += rng.normal(0.0, 15.0, hounsfield.shape)
    return np.clip(np.rint(hounsfield), -1024, 3071).astype(np.int16)


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    return chest_like()


@pytest.fixture
def dicom_dir(tmp_path, volume):
    out = tmp_path / "series"
    write_dicom_series(
        volume, SPACING, ORIGIN, out, kernel="B70f", manufacturer="SIEMENS"
    )
    return out


def codes(scan) -> dict[str, int]:
    return {finding.code: finding.severity for finding in scan.quality}


# ---------------------------------------------------------------------------
# round trips


def test_dicom_round_trip_gives_identical_array_and_geometry(dicom_dir, volume):
    scan = load_scan(dicom_dir)

    np.testing.assert_array_equal(scan.hounsfield, volume)
    assert scan.hounsfield.dtype == np.int16
    np.testing.assert_allclose(scan.spacing_mm, SPACING, rtol=0, atol=1e-9)
    np.testing.assert_allclose(scan.origin_mm, ORIGIN, rtol=0, atol=1e-9)
    assert scan.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    np.testing.assert_allclose(
        scan.slice_positions_mm, ORIGIN[2] + SPACING[0] * np.arange(40), atol=1e-9
    )
    assert scan.voxel_volume_ml == pytest.approx(2.5 * 0.7 * 0.7 / 1000)
    assert scan.metadata.shape == (40, 64, 64)
    assert scan.metadata.slice_thickness_mm == 2.5
    assert scan.metadata.contiguous
    assert scan.metadata.kernel == "B70f"
    assert scan.metadata.kernel_class == "sharp"
    assert scan.metadata.kvp == 120.0
    assert scan.metadata.acquisition_year == 2015
    assert scan.metadata.contrast is False
    assert scan.quality == []


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_dicom_and_image_file_of_the_same_volume_agree(tmp_path, dicom_dir, suffix):
    from_dicom = load_scan(dicom_dir)
    path = write_image(
        from_dicom.hounsfield,
        from_dicom,
        tmp_path / f"scan{suffix}",
        from_dicom.metadata,
    )

    from_file = load_scan(path)

    np.testing.assert_array_equal(from_file.hounsfield, from_dicom.hounsfield)
    # NIfTI keeps geometry in float32
    np.testing.assert_allclose(from_file.spacing_mm, from_dicom.spacing_mm, atol=1e-5)
    np.testing.assert_allclose(from_file.origin_mm, from_dicom.origin_mm, atol=1e-4)
    np.testing.assert_allclose(from_file.direction, from_dicom.direction, atol=1e-6)
    np.testing.assert_allclose(
        from_file.slice_positions_mm, from_dicom.slice_positions_mm, atol=1e-4
    )
    assert from_file.metadata.slice_thickness_mm == 2.5
    assert from_file.metadata.kernel == "B70f"
    assert from_file.metadata.manufacturer == "SIEMENS"
    assert from_file.metadata.contiguous


def test_writer_is_exact_across_the_full_hounsfield_range(tmp_path):
    hounsfield = np.arange(-1024, 3072, dtype=np.int16)[: 4 * 32 * 32].reshape(
        4, 32, 32
    )
    write_dicom_series(hounsfield, (1.0, 0.5, 0.5), (0, 0, 0), tmp_path)

    scan = load_scan(tmp_path)

    np.testing.assert_array_equal(scan.hounsfield, hounsfield)
    first = pydicom.dcmread(sorted(tmp_path.iterdir())[0])
    assert first.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert first.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert first.PixelRepresentation == 0
    assert float(first.RescaleIntercept) == -1024
    assert float(first.RescaleSlope) == 1
    assert first.pixel_array.min() == 0


def test_image_in_ras_storage_is_turned_to_lps(tmp_path, volume):
    image = sitk.GetImageFromArray(volume[:, ::-1, ::-1].copy())
    image.SetSpacing(SPACING[::-1])
    image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    far_corner = (ORIGIN[0] + 63 * 0.7, ORIGIN[1] + 63 * 0.7, ORIGIN[2])
    image.SetOrigin(far_corner)
    sitk.WriteImage(image, str(tmp_path / "ras.nii.gz"))

    scan = load_scan(tmp_path / "ras.nii.gz")

    np.testing.assert_array_equal(scan.hounsfield, volume)
    np.testing.assert_allclose(scan.origin_mm, ORIGIN, atol=1e-4)
    assert scan.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def test_scan_from_array_and_label_map_round_trip(tmp_path, volume):
    scan = scan_from_array(
        volume, SPACING, ORIGIN, slice_thickness_mm=1.0, kernel="FC51"
    )
    labels = (volume < -500).astype(np.uint8) * 3

    path = write_image(labels, scan, tmp_path / "labels.nrrd")
    image = sitk.ReadImage(str(path))

    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), labels)
    assert image.GetSpacing() == pytest.approx(SPACING[::-1])
    assert image.GetOrigin() == pytest.approx(ORIGIN)
    assert scan_to_sitk(labels, scan).GetSize() == (64, 64, 40)
    assert scan.metadata.kernel_class == "sharp"
    assert not scan.contiguous  # 2.5 mm interval, 1 mm slices
    assert "gapped" in codes(scan)
    np.testing.assert_allclose(scan.slice_positions_mm, -120.0 + 2.5 * np.arange(40))
    assert not sidecar_path(path).exists()


def test_writer_output_is_valid_pydicom_and_fast_enough(tmp_path):
    # a correctness check of the header rather than a timing
    hounsfield = chest_like(3, 32)
    paths = write_dicom_series(
        hounsfield,
        (1.25, 0.8, 0.8),
        (1.0, 2.0, 3.0),
        tmp_path,
        slice_thickness_mm=1.0,
        series_number=7,
    )
    ds = pydicom.dcmread(paths[2])

    assert [float(v) for v in ds.ImagePositionPatient] == [1.0, 2.0, 5.5]
    assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert [float(v) for v in ds.PixelSpacing] == [0.8, 0.8]
    assert float(ds.SliceThickness) == 1.0
    assert float(ds.SpacingBetweenSlices) == 1.25
    assert ds.SeriesNumber == 7
    assert ds.InstanceNumber == 3
    assert ds.PatientName == "SYNTHETIC^PHANTOM"


# ---------------------------------------------------------------------------
# geometry and series problems


def test_shuffled_file_names_load_in_slice_order(tmp_path, dicom_dir, volume):
    paths = sorted(dicom_dir.iterdir())
    names = [p.name for p in paths]
    random.Random(4).shuffle(names)
    shuffled = tmp_path / "shuffled" / "deeper"
    shuffled.mkdir(parents=True)
    for source, name in zip(paths, names, strict=True):
        shutil.copy(source, shuffled / name)

    scan = load_scan(tmp_path / "shuffled")

    np.testing.assert_array_equal(scan.hounsfield, volume)
    np.testing.assert_allclose(scan.origin_mm, ORIGIN, atol=1e-9)


def test_one_missing_slice_is_filled_from_its_neighbours(dicom_dir, volume):
    sorted(dicom_dir.iterdir())[17].unlink()

    scan = load_scan(dicom_dir)

    assert scan.hounsfield.shape == volume.shape
    assert codes(scan) == {"missing_slices": WARNING}
    assert "1 missing slice in 1 hole (widest 1 slice)" in scan.quality[0].message
    expected = np.rint((volume[16].astype(float) + volume[18]) / 2)
    np.testing.assert_array_equal(scan.hounsfield[17], expected)
    np.testing.assert_array_equal(scan.hounsfield[:17], volume[:17])
    np.testing.assert_array_equal(scan.hounsfield[18:], volume[18:])
    assert scan.spacing_mm[0] == pytest.approx(2.5)


def test_a_wide_hole_is_an_error_finding(dicom_dir, volume):
    for path in sorted(dicom_dir.iterdir())[10:14]:
        path.unlink()

    scan = load_scan(dicom_dir)

    assert codes(scan)["missing_slices"] == ERROR
    assert scan.hounsfield.shape == volume.shape
    assert scan.worst_severity == ERROR


def test_uneven_spacing_is_resampled(tmp_path, volume):
    positions = -120.0 + 2.5 * np.arange(40)
    positions[20:] += 0.8  # one interval of 3.3 mm
    write_dicom_series(volume, SPACING, ORIGIN, tmp_path, slice_positions_mm=positions)

    scan = load_scan(tmp_path)

    assert codes(scan) == {"uneven_spacing": WARNING}
    span = positions[-1] - positions[0]
    assert scan.hounsfield.shape[0] == round(span / 2.5) + 1
    assert scan.spacing_mm[0] == pytest.approx(span / (scan.hounsfield.shape[0] - 1))
    np.testing.assert_array_equal(scan.hounsfield[0], volume[0])
    np.testing.assert_array_equal(scan.hounsfield[-1], volume[-1])


def test_two_series_in_one_folder(tmp_path, volume):
    soft = volume[::2]
    write_dicom_series(
        soft, (5.0, 0.7, 0.7), ORIGIN, tmp_path, kernel="B30f", series_number=2
    )
    write_dicom_series(
        volume, SPACING, ORIGIN, tmp_path, kernel="B70f", series_number=3
    )

    chosen = load_scan(tmp_path)
    explicit = load_scan(tmp_path, series=2)
    summaries = list_series(tmp_path)
    by_key = load_scan(tmp_path, series=summaries[0].series_key)

    assert chosen.metadata.series_number == 3
    assert chosen.hounsfield.shape[0] == 40
    assert "thinnest slice interval" in chosen.metadata.series_choice
    assert codes(chosen) == {"mixed_series": INFO}
    np.testing.assert_array_equal(explicit.hounsfield, soft)
    assert explicit.metadata.kernel == "B30f"
    assert "explicitly" in explicit.metadata.series_choice
    assert [s.series_number for s in summaries] == [2, 3]
    assert [s.chosen for s in summaries] == [False, True]
    assert [s.n_slices for s in summaries] == [20, 40]
    assert summaries[0].slice_interval_mm == 5.0
    assert by_key.metadata.series_number == 2
    with pytest.raises(ScanError, match="no series 9; available: 2 .*, 3 "):
        load_scan(tmp_path, series=9)


def test_sharp_kernel_wins_between_equal_reconstructions(tmp_path, volume):
    study = pydicom.uid.generate_uid()
    for number, kernel in ((4, "STANDARD"), (5, "LUNG"), (6, "SOFT")):
        write_dicom_series(
            volume,
            SPACING,
            ORIGIN,
            tmp_path,
            kernel=kernel,
            series_number=number,
            study_uid=study,
        )

    scan = load_scan(tmp_path)

    assert scan.metadata.kernel == "LUNG"
    assert "sharp kernel among LUNG, SOFT, STANDARD" in scan.metadata.series_choice


def test_localiser_and_other_modalities_are_set_aside(tmp_path, volume):
    write_dicom_series(volume, SPACING, ORIGIN, tmp_path / "ct", series_number=2)
    scout = write_dicom_series(
        volume[:1], SPACING, ORIGIN, tmp_path / "scout", series_number=1
    )[0]
    ds = pydicom.dcmread(scout)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    ds.save_as(scout)
    write_dicom_series(volume[:5], SPACING, ORIGIN, tmp_path / "mr", modality="MR")

    scan = load_scan(tmp_path)

    assert scan.metadata.series_number == 2
    assert codes(scan) == {
        "localizer_excluded": INFO,
        "non_ct_excluded": INFO,
        "mixed_series": INFO,
    }
    reasons = {s.series_number: s.excluded_because for s in list_series(tmp_path)}
    assert reasons[1] == "localiser/scout"
    assert reasons[2] == ""


def test_a_requested_localiser_loads_with_a_warning(tmp_path, volume):
    write_dicom_series(volume, SPACING, ORIGIN, tmp_path, series_number=2)
    scout = write_dicom_series(volume[:1], SPACING, ORIGIN, tmp_path, series_number=1)
    ds = pydicom.dcmread(scout[0])
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    ds.save_as(scout[0])

    scan = load_scan(tmp_path, series=1)

    assert codes(scan)["unusual_series"] == WARNING
    # a coronal image turned to LPS: its rows run from head to feet
    assert scan.hounsfield.shape == (64, 1, 64)
    np.testing.assert_array_equal(scan.hounsfield[:, 0, :], volume[0, ::-1, :])


def test_coronal_reformats_are_not_chosen(tmp_path, volume):
    write_dicom_series(volume, SPACING, ORIGIN, tmp_path / "axial", series_number=2)
    coronal = write_dicom_series(
        volume[:8], SPACING, ORIGIN, tmp_path / "coronal", series_number=5
    )
    for k, path in enumerate(coronal):
        ds = pydicom.dcmread(path)
        ds.ImageType = ["DERIVED", "SECONDARY", "MPR"]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
        ds.ImagePositionPatient = [ORIGIN[0], ORIGIN[1] + 3.0 * k, 0.0]
        ds.save_as(path)

    scan = load_scan(tmp_path)

    assert scan.metadata.series_number == 2
    assert codes(scan)["non_axial_excluded"] == INFO
    with pytest.raises(ScanError, match="no axial CT series .*coronal orientation"):
        load_scan(tmp_path / "coronal")


def test_duplicate_files_are_dropped(dicom_dir, volume):
    first = sorted(dicom_dir.iterdir())[0]
    shutil.copy(first, dicom_dir / "copy_of_first.dcm")

    scan = load_scan(dicom_dir)

    np.testing.assert_array_equal(scan.hounsfield, volume)
    assert codes(scan) == {"duplicate_slices": WARNING}


def test_an_mr_file_is_an_error(tmp_path, volume):
    path = write_dicom_series(volume[:1], SPACING, ORIGIN, tmp_path, modality="MR")[0]

    with pytest.raises(ScanError, match=f"{path}: no CT image .*modality MR"):
        load_scan(path)
    with pytest.raises(ScanError, match="no CT image"):
        load_scan(tmp_path)


def test_an_mr_nifti_with_a_sidecar_is_an_error(tmp_path, volume):
    scan = scan_from_array(volume, SPACING, ORIGIN)
    path = write_image(volume, scan, tmp_path / "t1.nii.gz", {"Modality": "MR"})

    with pytest.raises(ScanError, match="t1.nii.gz: modality MR .*not CT"):
        load_scan(path)


def test_a_truncated_file_is_left_out_and_filled(dicom_dir, volume):
    victim = sorted(dicom_dir.iterdir())[5]
    victim.write_bytes(victim.read_bytes()[:-3000])

    scan = load_scan(dicom_dir)

    assert codes(scan) == {"unreadable_files": WARNING, "missing_slices": WARNING}
    assert f"{victim.name} (truncated pixel data)" in scan.quality[0].message
    assert scan.hounsfield.shape == volume.shape
    np.testing.assert_array_equal(scan.hounsfield[6:], volume[6:])


def test_a_file_cut_inside_its_header_is_reported(dicom_dir, volume):
    victim = sorted(dicom_dir.iterdir())[-1]
    victim.write_bytes(victim.read_bytes()[:400])

    scan = load_scan(dicom_dir)

    assert scan.hounsfield.shape == (39, 64, 64)
    assert codes(scan) == {"unreadable_files": WARNING}


def test_only_truncated_files_is_an_error(tmp_path, volume):
    path = write_dicom_series(volume[:1], SPACING, ORIGIN, tmp_path)[0]
    path.write_bytes(path.read_bytes()[:-100])

    with pytest.raises(ScanError, match=f"^{path}: truncated pixel data"):
        load_scan(path)
    with pytest.raises(ScanError, match="truncated pixel data"):
        load_scan(tmp_path)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(lambda p: p.mkdir(), "folder is empty", id="empty-folder"),
        pytest.param(
            lambda p: (p.mkdir(), (p / "notes.txt").write_text("x")),
            "no DICOM files in folder",
            id="no-dicom",
        ),
        pytest.param(
            lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64)),
            "unsupported format",
            id="png",
        ),
        pytest.param(lambda p: None, "no such file or folder", id="missing"),
    ],
)
def test_unusable_paths_raise_one_line_scan_errors(tmp_path, make, message):
    path = tmp_path / "input"
    make(path)

    with pytest.raises(ScanError, match=message) as raised:
        load_scan(path)

    assert isinstance(raised.value, RadsclError)
    assert isinstance(raised.value, ValueError)
    assert str(path) in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_corrupt_nifti_is_an_error(tmp_path):
    path = tmp_path / "broken.nii.gz"
    path.write_bytes(b"\x1f\x8b" + bytes(100))

    with pytest.raises(ScanError, match="broken.nii.gz: cannot be read as NIFTI"):
        load_scan(path)


def test_gapped_hrct_is_supported_and_flagged(tmp_path, volume):
    gapped = volume[::3]
    positions = -120.0 + 10.0 * np.arange(14)
    write_dicom_series(
        gapped,
        (10.0, 0.7, 0.7),
        ORIGIN,
        tmp_path,
        slice_positions_mm=positions,
        slice_thickness_mm=1.0,
    )

    scan = load_scan(tmp_path)

    assert not scan.contiguous
    assert scan.metadata.slice_thickness_mm == 1.0
    assert scan.metadata.slice_interval_mm == pytest.approx(10.0)
    assert codes(scan) == {"gapped": INFO}
    np.testing.assert_array_equal(scan.hounsfield, gapped)
    np.testing.assert_allclose(scan.slice_positions_mm, positions)


def test_gapped_hrct_with_a_missing_slice_is_not_interpolated(tmp_path, volume):
    gapped = volume[::3]
    positions = -120.0 + 10.0 * np.arange(14)
    write_dicom_series(
        gapped,
        (10.0, 0.7, 0.7),
        ORIGIN,
        tmp_path,
        slice_positions_mm=positions,
        slice_thickness_mm=1.0,
    )
    sorted(tmp_path.iterdir())[4].unlink()

    scan = load_scan(tmp_path)

    assert scan.hounsfield.shape[0] == 13
    assert codes(scan) == {"missing_slices": WARNING, "gapped": INFO}
    np.testing.assert_allclose(scan.slice_positions_mm, np.delete(positions, 4))


def test_nifti_contiguity_comes_from_the_sidecar(tmp_path, volume):
    gapped = scan_from_array(volume[::4], (10.0, 0.7, 0.7), ORIGIN)
    with_sidecar = write_image(
        gapped.hounsfield,
        gapped,
        tmp_path / "hrct.nii.gz",
        {
            "SliceThickness": 1.0,
            "ConvolutionKernel": "B70f",
            "KVP": 140,
            "AcquisitionDateTime": "1998-03-02T10:00:00",
            "ManufacturersModelName": "X",
        },
    )
    without = write_image(gapped.hounsfield, gapped, tmp_path / "bare.nii.gz")

    flagged = load_scan(with_sidecar)
    unknown = load_scan(without)

    assert json.loads(sidecar_path(with_sidecar).read_text())["SliceThickness"] == 1.0
    assert not flagged.contiguous
    assert flagged.metadata.slice_interval_mm == pytest.approx(10.0)
    assert flagged.metadata.kvp == 140.0
    assert flagged.metadata.acquisition_year == 1998
    assert flagged.metadata.model == "X"
    assert codes(flagged) == {"gapped": INFO}
    assert unknown.contiguous
    assert unknown.metadata.slice_thickness_mm is None
    assert codes(unknown) == {"thickness_unknown": INFO}


def test_positions_drifting_in_y_are_a_gantry_tilt(tmp_path, volume):
    # each slice is recorded one row (0.7 mm) further posterior per 2.5 mm in z:
    # the images hold the anatomy shifted up by k rows
    paths = write_dicom_series(volume, SPACING, ORIGIN, tmp_path)
    for k, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        shifted = np.full_like(volume[k], -1000)
        shifted[: 64 - k] = volume[k, k:]
        ds.PixelData = (shifted.astype(np.int32) + 1024).astype("<u2").tobytes()
        ds.ImagePositionPatient = [
            ORIGIN[0],
            ORIGIN[1] + 0.7 * k,
            ds.ImagePositionPatient[2],
        ]
        ds.GantryDetectorTilt = 15.6
        ds.save_as(path)

    scan = load_scan(tmp_path)

    assert codes(scan) == {"gantry_tilt": WARNING}
    assert scan.metadata.gantry_tilt_deg == pytest.approx(
        math.degrees(math.atan(0.28)), abs=0.01
    )
    assert scan.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    for k in (0, 10, 39):
        np.testing.assert_array_equal(scan.hounsfield[k, k:], volume[k, k:])
        assert (scan.hounsfield[k, :k] == AIR_HU).all()


def test_tilted_slice_planes_are_detected(tmp_path, volume):
    tilt = math.radians(20.0)
    paths = write_dicom_series(volume, SPACING, ORIGIN, tmp_path)
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.ImageOrientationPatient = [1, 0, 0, 0, math.cos(tilt), math.sin(tilt)]
        ds.save_as(path)

    scan = load_scan(tmp_path)

    assert codes(scan)["gantry_tilt"] == WARNING
    assert scan.metadata.gantry_tilt_deg == pytest.approx(20.0, abs=0.01)
    assert scan.spacing_mm[0] == pytest.approx(2.5 * math.cos(tilt))
    direction = np.array(scan.direction).reshape(3, 3)
    np.testing.assert_allclose(direction[:, 1], [0, math.cos(tilt), math.sin(tilt)])
    np.testing.assert_allclose(direction[:, 2], [0, -math.sin(tilt), math.cos(tilt)])
    # slice 0 needs no shift
    np.testing.assert_array_equal(scan.hounsfield[0], volume[0])


@pytest.mark.parametrize(("padding", "intercept"), [(-2048, 0.0), (-3024, -1024.0)])
def test_padding_outside_the_field_of_view_becomes_air(
    tmp_path, volume, padding, intercept
):
    y, x = np.mgrid[0:64, 0:64]
    outside = (y - 31.5) ** 2 + (x - 31.5) ** 2 > 31**2
    padded = volume.copy()
    padded[:, outside] = padding
    write_dicom_series(padded, SPACING, ORIGIN, tmp_path, rescale_intercept=intercept)

    scan = load_scan(tmp_path)

    assert (scan.hounsfield[:, outside] == AIR_HU).all()
    np.testing.assert_array_equal(scan.hounsfield[:, ~outside], volume[:, ~outside])
    assert codes(scan) == {"padding": INFO}
    share = 100 * outside.mean()
    assert f"{share:.1f}% of voxels are padding" in scan.quality[0].message


def test_pixel_padding_value_becomes_air(tmp_path, volume):
    corner = np.zeros((64, 64), bool)
    corner[:6, :6] = True
    padded = np.maximum(volume, -1020)
    padded[:, corner] = -1024
    write_dicom_series(padded, SPACING, ORIGIN, tmp_path, pixel_padding_value=0)

    scan = load_scan(tmp_path)

    assert (scan.hounsfield[:, corner] == AIR_HU).all()
    assert scan.hounsfield.min() == -1020
    assert codes(scan) == {"padding": INFO}


def test_unrescaled_values_are_flagged(tmp_path, volume):
    write_dicom_series(volume + 1024, SPACING, ORIGIN, tmp_path, rescale_intercept=0.0)

    scan = load_scan(tmp_path)

    assert codes(scan) == {"unrescaled_hu": ERROR}
    assert "air lies near 0" in scan.quality[0].message
    np.testing.assert_array_equal(scan.hounsfield, volume + 1024)


def test_dense_lungs_in_a_tight_field_of_view_are_plausible():
    # no air around the body; only the trachea (0.7% of voxels) holds air
    rng = np.random.default_rng(2)
    hounsfield = np.full((40, 64, 64), 40.0) + rng.normal(0, 15, (40, 64, 64))
    hounsfield[:, 10:50, 6:28] = -700
    hounsfield[:, 10:50, 36:58] = -700
    y, x = np.mgrid[0:64, 0:64]
    hounsfield[:, (y - 20) ** 2 + (x - 32) ** 2 <= 9] = -1000

    scan = scan_from_array(hounsfield, SPACING, ORIGIN, slice_thickness_mm=2.5)

    assert scan.quality == []


def test_a_volume_without_air_is_implausible():
    scan = scan_from_array(np.full((12, 16, 16), 500, np.int16), (1, 1, 1))

    assert codes(scan)["implausible_hu"] == ERROR


def test_too_few_slices(tmp_path, volume):
    write_dicom_series(volume[:3], SPACING, ORIGIN, tmp_path)

    scan = load_scan(tmp_path)

    assert codes(scan) == {"too_few_slices": WARNING}


def test_jpeg_lossless_slices_are_read_through_gdcm(tmp_path, dicom_dir, volume):
    # pydicom has no JPEG-lossless decoder in this environment; GDCM has
    for path in sorted(dicom_dir.iterdir())[:3]:
        ds = pydicom.dcmread(path)
        stored = sitk.GetImageFromArray(ds.pixel_array[None])
        writer = sitk.ImageFileWriter()
        writer.SetImageIO("GDCMImageIO")
        writer.SetFileName(str(tmp_path / "jpeg.dcm"))
        writer.SetUseCompression(True)
        writer.SetCompressor("JPEG")
        writer.Execute(stored)
        compressed = pydicom.dcmread(tmp_path / "jpeg.dcm")
        ds["PixelData"] = compressed["PixelData"]
        ds.file_meta.TransferSyntaxUID = compressed.file_meta.TransferSyntaxUID
        ds.save_as(path, enforce_file_format=True)
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID.is_compressed

    scan = load_scan(dicom_dir)

    np.testing.assert_array_equal(scan.hounsfield, volume)
    assert scan.quality == []


def test_rle_slices_are_decoded_by_pydicom(dicom_dir, volume):
    path = sorted(dicom_dir.iterdir())[7]
    ds = pydicom.dcmread(path)
    ds.compress(pydicom.uid.RLELossless)
    ds.save_as(path, enforce_file_format=True)

    scan = load_scan(dicom_dir)

    np.testing.assert_array_equal(scan.hounsfield, volume)


def test_no_identifier_reaches_metadata_findings_logs_or_errors(
    tmp_path, volume, caplog
):
    secrets = ["DOE^JANE^QUINCY", "MRN-99887766", "19450312", "ACC-55443322"]
    paths = write_dicom_series(
        volume,
        SPACING,
        ORIGIN,
        tmp_path,
        patient_name=secrets[0],
        patient_id=secrets[1],
    )
    paths[3].unlink()  # a finding with a file-level message
    write_dicom_series(volume[:2], SPACING, ORIGIN, tmp_path, series_number=8)
    uids = set()
    for path in tmp_path.iterdir():
        ds = pydicom.dcmread(path)
        ds.PatientBirthDate = secrets[2]
        ds.AccessionNumber = secrets[3]
        ds.save_as(path)
        uids |= {ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.SOPInstanceUID}
    secrets += sorted(uids)

    caplog.set_level(logging.DEBUG, logger="radscl")
    scan = load_scan(tmp_path)
    summaries = list_series(tmp_path)
    with pytest.raises(ScanError) as raised:
        load_scan(tmp_path, series="nonexistent")

    reported = " ".join(
        [
            json.dumps(scan.metadata.to_dict()),
            json.dumps([f.to_dict() for f in scan.quality]),
            json.dumps([s.to_dict() for s in summaries]),
            caplog.text,
            str(raised.value),
        ]
    )
    assert "missing_slices" in reported and "mixed_series" in reported
    for secret in secrets:
        assert secret not in reported
    assert "DOE" not in reported and "99887766" not in reported


@pytest.mark.parametrize(
    ("kernel", "expected"),
    [
        ("B70f", "sharp"),
        ("I70f\\3", "sharp"),
        ("B60f", "sharp"),
        ("Br64d", "sharp"),
        ("B30f", "soft"),
        ("B45f", "soft"),
        ("L", "sharp"),
        ("YC", "sharp"),
        ("B", "soft"),
        ("C", "soft"),
        ("FC51", "sharp"),
        ("FC86", "sharp"),
        ("FC13", "soft"),
        ("LUNG", "sharp"),
        ("BONEPLUS", "sharp"),
        ("STANDARD", "soft"),
        ("SOFT", "soft"),
        ("", "unknown"),
        (None, "unknown"),
        ("XYZ", "unknown"),
    ],
)
def test_kernel_classes(kernel, expected):
    assert classify_kernel(kernel) == expected


# ---------------------------------------------------------------------------
# real data (../shared/data)


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("folder", "kernel", "slices", "pixel_mm", "interval_mm"),
    [
        ("A0001_philips_5mm_kernelL", "L", 64, 0.841796875, 5.0),
        ("A0001_philips_5mm_kernelB", "B", 64, 0.841796875, 5.0),
        ("A0002_siemens_8mm_B70f", "B70f", 30, 0.646484375, 8.0),
        ("A0002_siemens_8mm_B40f", "B40f", 30, 0.646484375, 8.0),
    ],
)
def test_tcia_series_geometry_and_hounsfield(
    folder, kernel, slices, pixel_mm, interval_mm
):
    scan = load_scan(shared_data("chest_ct_tcia", folder))

    assert scan.hounsfield.shape == (slices, 512, 512)
    assert scan.spacing_mm == (interval_mm, pixel_mm, pixel_mm)
    assert scan.metadata.slice_thickness_mm == interval_mm
    assert scan.metadata.kernel == kernel
    assert scan.metadata.contiguous
    assert scan.metadata.acquisition_year == 2007
    assert scan.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    assert np.all(np.diff(scan.slice_positions_mm) == interval_mm)
    assert scan.quality == []
    values = scan.hounsfield
    air = np.histogram(values[values < -500], bins=np.arange(-1100, -499, 10))
    tissue = np.histogram(
        values[(values > -50) & (values < 150)], bins=np.arange(-50, 151, 5)
    )
    assert -1040 <= air[1][np.argmax(air[0])] <= -960
    assert 0 <= tissue[1][np.argmax(tissue[0])] <= 60


@pytest.mark.realdata
def test_tcia_folder_choice_prefers_thin_sharp_series():
    root = shared_data("chest_ct_tcia")

    scan = load_scan(root)
    summaries = list_series(root)

    assert scan.metadata.kernel == "L"
    assert "sharp kernel among B, L" in scan.metadata.series_choice
    assert sorted(s.kernel for s in summaries) == ["B", "B40f", "B70f", "L"]
    assert [s.kernel for s in summaries if s.chosen] == ["L"]


@pytest.mark.realdata
def test_cip_dicom_and_nrrd_agree():
    from_dicom = load_scan(shared_data("chest_ct_cip", "ct-64Dicom"))
    from_nrrd = load_scan(shared_data("chest_ct_cip", "ct-64.nrrd"))

    np.testing.assert_array_equal(from_dicom.hounsfield, from_nrrd.hounsfield)
    assert from_dicom.hounsfield.shape == (79, 64, 64)
    np.testing.assert_allclose(from_dicom.spacing_mm, from_nrrd.spacing_mm, atol=1e-4)
    np.testing.assert_allclose(from_dicom.origin_mm, from_nrrd.origin_mm, atol=1e-3)
    np.testing.assert_allclose(
        from_nrrd.spacing_mm, (3.98734, 4.171872, 4.171872), atol=1e-5
    )
    assert from_dicom.metadata.manufacturer == "GE Medical Systems"
    assert from_dicom.metadata.model is None  # stored as the text "None"


@pytest.mark.realdata
def test_lungmask_slices_padding_becomes_air():
    folder = shared_data("chest_slices_lungmask")
    raw = pydicom.dcmread(folder / "slice0.dcm").pixel_array
    outside = raw == -2048

    single = load_scan(folder / "slice0.dcm")
    pair = load_scan(folder)

    assert 0.2 < outside.mean() < 0.25
    assert (single.hounsfield[0][outside] == AIR_HU).all()
    np.testing.assert_array_equal(single.hounsfield[0][~outside], raw[~outside])
    assert single.hounsfield.min() > -1100
    assert pair.hounsfield.shape == (2, 512, 512)
    assert pair.spacing_mm == (1.0, 0.625, 0.625)
    assert single.metadata.modality == "CT"  # from the SOP class; no Modality tag
    assert set(codes(pair)) == {"padding", "too_few_slices"}
