"""The chest phantom: anatomy, ground truth and its consistency."""

import numpy as np
import pytest

from radscl.errors import RadsclError
from radscl.phantom import make_phantom
from radscl.phantom.geometry import Grid
from radscl.phantom.geometry import regular_axis
from radscl.phantom.geometry import tube_occupancy
from radscl.phantom.trees import render_tubes


def test_small_phantom_geometry_and_hounsfield(phantom_factory):
    phantom = phantom_factory("small", seed=0)

    assert phantom.hounsfield.dtype == np.int16
    assert phantom.hounsfield.shape == (117, 160, 160)
    assert phantom.spacing_mm == pytest.approx((2.5, 2.25, 2.25))
    hu = phantom.hounsfield
    # Outside air, lung and soft tissue sit where CT puts them.
    assert np.median(hu[:, :5, :5]) == pytest.approx(-1000, abs=30)
    lung = hu[(phantom.labels == 1)]
    assert -880 < np.median(lung) < -780
    assert np.median(hu[phantom.lungs == 3]) < -900


def test_lung_volumes_are_adult(phantom_factory):
    truth = phantom_factory("small", seed=0).truth

    assert 4000 < truth["lung_volume_ml"] < 7000
    assert truth["lung_right_volume_ml"] > truth["lung_left_volume_ml"]
    assert truth["lung_volume_ml"] == pytest.approx(
        truth["lung_right_volume_ml"] + truth["lung_left_volume_ml"]
    )


def test_truth_agrees_with_label_map(phantom_factory):
    phantom = phantom_factory("small", seed=1, fibrosis_pct=20)
    truth = phantom.truth
    voxel_ml = float(np.prod(phantom.spacing_mm)) / 1000.0
    lung_voxels = np.isin(phantom.lungs, (1, 2))

    assert lung_voxels.sum() * voxel_ml == pytest.approx(truth["lung_volume_ml"], rel=0.01)
    assert (phantom.lungs == 1).sum() * voxel_ml == pytest.approx(
        truth["lung_right_volume_ml"], rel=0.01
    )
    fibrotic = np.isin(phantom.labels, (5, 6, 7)) & lung_voxels
    assert 100 * fibrotic.sum() / lung_voxels.sum() == pytest.approx(
        truth["fibrosis_extent_pct"], abs=0.01
    )
    # Vessels and airways are thin at 2.25 mm: label counts agree less tightly.
    vessel_ml = ((phantom.labels == 4) & lung_voxels).sum() * voxel_ml
    assert vessel_ml == pytest.approx(truth["vessel_volume_ml"], rel=0.25)
    assert (phantom.labels == 2).sum() * voxel_ml == pytest.approx(
        truth["airway_volume_ml"], rel=0.25
    )
    bins = sum(
        truth[f"vessel_volume_csa_{name}_ml"] for name in ("lt5", "5to10", "gt10")
    )
    assert bins == pytest.approx(truth["vessel_volume_ml"], rel=1e-6)


@pytest.mark.parametrize("requested", [0.0, 10.0, 25.0, 40.0])
def test_fibrosis_extent_follows_request(phantom_factory, requested):
    truth = phantom_factory("small", seed=2, fibrosis_pct=requested).truth

    # Airways and vessels inside fibrotic lung stay what they are.
    assert truth["fibrosis_extent_pct"] == pytest.approx(requested, abs=0.06 * requested + 0.01)
    assert truth["fibrosis_extent_pct"] <= requested + 0.5
    if requested >= 25:
        assert truth["honeycombing_pct"] > 0
    else:
        assert truth["honeycombing_pct"] == 0


def test_fibrosis_is_basal_and_subpleural(phantom_factory):
    phantom = phantom_factory("small", seed=2, fibrosis_pct=25.0)
    lung = np.isin(phantom.lungs, (1, 2))
    fibrotic = np.isin(phantom.labels, (5, 6, 7))
    slices = np.flatnonzero(lung.any(axis=(1, 2)))
    lower = slices[: slices.size // 3]
    upper = slices[-(slices.size // 3) :]

    share_lower = fibrotic[lower].sum() / lung[lower].sum()
    share_upper = fibrotic[upper].sum() / lung[upper].sum()
    assert share_lower > 2 * share_upper


def test_airway_dilation_widens_airways_in_fibrotic_lung(phantom_factory):
    plain = phantom_factory("small", seed=3, fibrosis_pct=25.0).truth
    dilated = phantom_factory("small", seed=3, fibrosis_pct=25.0, airway_dilation=1.5).truth

    gain = dilated["airway_intrapulmonary_volume_ml"] / plain["airway_intrapulmonary_volume_ml"]
    assert 1.03 < gain < 1.5
    assert dilated["airway_volume_ml"] - plain["airway_volume_ml"] == pytest.approx(
        dilated["airway_intrapulmonary_volume_ml"] - plain["airway_intrapulmonary_volume_ml"],
        rel=0.05,
    )
    assert dilated["lung_volume_ml"] == pytest.approx(plain["lung_volume_ml"])


def test_vessel_scale_moves_volume_into_larger_bins(phantom_factory):
    thin = phantom_factory("small", seed=4, vessel_scale=0.8).truth
    thick = phantom_factory("small", seed=4, vessel_scale=1.25).truth

    assert thick["vessel_volume_ml"] > 1.8 * thin["vessel_volume_ml"]
    assert thick["vessel_volume_csa_gt10_ml"] > thin["vessel_volume_csa_gt10_ml"]
    assert thick["vessel_small_share_pct"] < thin["vessel_small_share_pct"]


def test_same_seed_same_phantom_other_seed_other_anatomy():
    first = make_phantom("small", seed=5)
    again = make_phantom("small", seed=5)
    other = make_phantom("small", seed=6)

    assert np.array_equal(first.hounsfield, again.hounsfield)
    assert first.truth == again.truth
    assert other.truth["lung_volume_ml"] != pytest.approx(first.truth["lung_volume_ml"], rel=1e-4)


def test_gapped_samples_the_same_anatomy(phantom_factory):
    contiguous = phantom_factory("small", seed=7, fibrosis_pct=20.0)
    gapped = phantom_factory("small", seed=7, fibrosis_pct=20.0, gapped=True)

    assert gapped.spacing_mm[0] == pytest.approx(10.0)
    assert gapped.slice_thickness_mm == pytest.approx(1.0)
    assert gapped.truth["contiguous"] is False
    assert not gapped.to_scan().contiguous
    # Volumes from slice positions estimate the same lung.
    voxel_ml = float(np.prod(gapped.spacing_mm)) / 1000.0
    gapped_lung_ml = np.isin(gapped.lungs, (1, 2)).sum() * voxel_ml
    assert gapped_lung_ml == pytest.approx(contiguous.truth["lung_volume_ml"], rel=0.05)
    assert gapped.truth["fibrosis_extent_pct"] == pytest.approx(
        contiguous.truth["fibrosis_extent_pct"], abs=2.0
    )


def test_kernels_differ_in_noise(phantom_factory):
    soft = phantom_factory("small", seed=8, kernel="soft")
    sharp = phantom_factory("small", seed=8, kernel="sharp")
    # A cube inside the heart, which is uniform blood before noise.
    heart = (slice(28, 34), slice(62, 70), slice(83, 91))

    assert np.std(soft.hounsfield[heart]) == pytest.approx(18, rel=0.3)
    assert np.std(sharp.hounsfield[heart]) > 2 * np.std(soft.hounsfield[heart])


def test_hu_offset_shifts_every_voxel(phantom_factory):
    base = phantom_factory("small", seed=9)
    shifted = phantom_factory("small", seed=9, hu_offset=20.0)
    lung = base.labels == 1

    difference = shifted.hounsfield[lung].astype(float) - base.hounsfield[lung]
    assert difference.mean() == pytest.approx(20.0, abs=0.5)


@pytest.mark.parametrize("radius", [0.3, 0.6, 1.0, 2.5])
def test_tube_partial_volume_conserves_cross_section(radius):
    grid = Grid(regular_axis(40, 0.5), regular_axis(40, 0.5), regular_axis(60, 0.5), 0.5)
    occupancy = np.zeros(grid.shape, np.float32)
    start = np.array([[0.13, -0.21, -10.0]])
    end = np.array([[0.13, -0.21, 10.0]])

    render_tubes(grid, start, end, np.array([[radius]]), [occupancy])

    middle = occupancy[20:40]
    area_mm2 = middle.sum() * 0.5**3 / (20 * 0.5)
    assert area_mm2 == pytest.approx(np.pi * radius**2, rel=0.03)


def test_tube_profile_is_continuous_at_the_switch():
    width = 0.8
    switch = width / np.sqrt(3.0)
    distances = np.linspace(0, 2, 50)
    below = tube_occupancy(distances, np.full(50, switch - 1e-6), width)
    above = tube_occupancy(distances, np.full(50, switch + 1e-6), width)

    assert np.allclose(below, above, atol=1e-4)


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"size": "huge"}, id="size"),
        pytest.param({"fibrosis_pct": 80.0}, id="fibrosis"),
        pytest.param({"kernel": "B70f"}, id="kernel"),
        pytest.param({"airway_dilation": 5.0}, id="dilation"),
    ],
)
def test_bad_parameters_raise(params):
    with pytest.raises(RadsclError):
        make_phantom(**params)


@pytest.mark.slow
def test_full_size_phantom(phantom_factory):
    phantom = phantom_factory("full", seed=0)
    truth = phantom.truth

    assert phantom.hounsfield.shape == (291, 512, 512)
    assert 4000 < truth["lung_volume_ml"] < 7000
    # At least 7 generations of airways, lumen down to sub-millimetre.
    radii = truth["airway_lumen_radius_mm_by_generation"]
    assert truth["airway_max_generation"] >= 7
    assert min(radii.values()) < 0.5
    vessel_radius = truth["vessel_volume_csa_lt5_ml"]
    assert vessel_radius > 0
    assert truth["vessel_volume_csa_gt10_ml"] > 0


def test_written_dicom_and_nifti_load_identically(phantom_factory, tmp_path):
    from radscl.io import load_scan
    from radscl.phantom.output import write_phantom

    phantom = phantom_factory("small", seed=0, fibrosis_pct=10.0)
    write_phantom(phantom, tmp_path)
    from_dicom = load_scan(tmp_path / "dicom")
    from_nifti = load_scan(tmp_path / "ct.nii.gz")

    assert np.array_equal(from_dicom.hounsfield, phantom.hounsfield)
    assert np.array_equal(from_nifti.hounsfield, phantom.hounsfield)
    assert from_dicom.spacing_mm == pytest.approx(from_nifti.spacing_mm)
    assert from_dicom.origin_mm == pytest.approx(from_nifti.origin_mm, abs=1e-3)
    assert from_dicom.metadata.slice_thickness_mm == pytest.approx(2.5)
    assert from_nifti.metadata.kernel == from_dicom.metadata.kernel
    labels = load_scan(tmp_path / "truth_labels.nii.gz").hounsfield
    assert np.array_equal(labels, phantom.labels)


def test_written_gapped_phantom_is_detected_as_gapped(phantom_factory, tmp_path):
    from radscl.io import load_scan
    from radscl.phantom.output import write_phantom

    phantom = phantom_factory("small", seed=0, gapped=True)
    write_phantom(phantom, tmp_path, formats=("dicom",))
    scan = load_scan(tmp_path / "dicom")

    assert not scan.metadata.contiguous
    assert scan.metadata.slice_interval_mm == pytest.approx(10.0)
    assert scan.metadata.slice_thickness_mm == pytest.approx(1.0)
    assert any(finding.code == "gapped" for finding in scan.quality)


def test_phantom_command_writes_truth(tmp_path):
    import json

    from radscl.cli import main

    code = main(["phantom", "--out", str(tmp_path), "--seed", "4", "--fibrosis", "15", "--format", "nifti"])

    assert code == 0
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["spec"]["fibrosis_pct"] == 15.0
    assert truth["truth"]["fibrosis_extent_pct"] == pytest.approx(15.0, abs=1.0)
    assert (tmp_path / "ct.nii.gz").exists()
    assert not (tmp_path / "dicom").exists()
    assert main(["phantom", "--out", str(tmp_path), "--fibrosis", "95"]) == 2
