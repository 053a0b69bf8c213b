"""Tests of the airway segmentation, the airway tree and the airway features."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import shared_data
from scipy import ndimage

from radscl.errors import ParameterError
from radscl.extract.params import load_parameters
from radscl.extract.stages import CaseState
from radscl.extract.stages import enabled_stages
from radscl.extract.stages import stage_methods
from radscl.extractors.airway import DIAMETER_GENERATIONS
from radscl.extractors.airway import ZONES
from radscl.extractors.airway import airway_feature_names
from radscl.extractors.airway import airway_features
from radscl.io import scan_from_array
from radscl.segmentation import AIRWAY_LUMEN
from radscl.segmentation import AIRWAY_WALL
from radscl.segmentation import TRACHEA
from radscl.segmentation.airways import AirwayParams
from radscl.segmentation.airways import airway_labels
from radscl.segmentation.airways import segment_airways
from radscl.segmentation.lungs import LungSegmentation
from radscl.segmentation.zones import lung_zones

#: Phantom tissue label of airway lumen and airway wall.
TRUTH_LUMEN = 2
TRUTH_WALL = 3

#: Smallest lumen radius a scan of the full-size phantom can show as airway.
#: Blurred by the soft kernel, a generation-8 lumen (radius 1.17 mm) is
#: brighter at its centre (-758 HU) than the lung around it (-830 HU), while a
#: generation-7 lumen (1.48 mm) is still darker (-872 HU): no intensity-based
#: method can find the thinner ones, so accuracy is judged on the airways at
#: least this wide.
RESOLVABLE_RADIUS_MM = 1.3


def _lungs(phantom) -> LungSegmentation:
    return LungSegmentation(phantom.lungs, phantom.spacing_mm)


def _resolvable_lumen(phantom, radius_mm: float = RESOLVABLE_RADIUS_MM) -> np.ndarray:
    """Truth lumen of the airways at least ``radius_mm`` wide: an opening by a ball."""
    truth = phantom.labels == TRUTH_LUMEN
    box = ndimage.find_objects(truth.astype(np.uint8))[0]
    reach = [int(radius_mm // s) for s in phantom.spacing_mm]
    zz, yy, xx = np.ogrid[tuple(slice(-r, r + 1) for r in reach)]
    dz, dy, dx = phantom.spacing_mm
    ball = (zz * dz) ** 2 + (yy * dy) ** 2 + (xx * dx) ** 2 <= radius_mm**2
    opened = np.zeros_like(truth)
    opened[box] = ndimage.binary_opening(truth[box], ball)
    return opened


def _zones(lungs: LungSegmentation) -> dict[str, np.ndarray]:
    """The lung zones the airway features report (thirds, rind and core)."""
    zones = lung_zones(lungs.labels, lungs.spacing_mm)
    return {name: zones[name] for name in ZONES}


# --------------------------------------------------------------------------
# Parameters and inputs


def test_params_reject_unknown_key_and_bad_values():
    with pytest.raises(ParameterError, match="unknown airway parameter 'treshold'"):
        AirwayParams.from_mapping({"treshold": -900})
    with pytest.raises(ParameterError, match="must be a number"):
        AirwayParams.from_mapping({"start_threshold_hu": "low"})
    with pytest.raises(ParameterError, match="max_threshold_hu"):
        AirwayParams.from_mapping(
            {"start_threshold_hu": -800, "max_threshold_hu": -900}
        )
    with pytest.raises(ParameterError, match="leak_growth_ratio"):
        AirwayParams.from_mapping({"leak_growth_ratio": 0.9})
    assert AirwayParams.from_mapping({"refine_rounds": 0}).refine_rounds == 0


def test_mismatched_lungs_are_refused(phantom_factory):
    phantom = phantom_factory("small", seed=0)
    lungs = LungSegmentation(phantom.lungs[1:], phantom.spacing_mm)
    with pytest.raises(ParameterError, match="do not match the scan's shape"):
        segment_airways(phantom.to_scan(), lungs)


# --------------------------------------------------------------------------
# Small phantom: seed, leaks, gapped scans, features


@pytest.fixture(scope="module")
def small(phantom_factory):
    phantom = phantom_factory("small", seed=0)
    scan = phantom.to_scan()
    lungs = _lungs(phantom)
    return phantom, scan, lungs, segment_airways(scan, lungs)


def test_small_phantom_lumen_is_airway_and_excludes_walls(small):
    phantom, scan, _, airways = small
    truth = phantom.labels == TRUTH_LUMEN
    voxel_ml = scan.voxel_volume_ml

    assert airways.seed_source == "lung segmentation"
    false_ml = np.count_nonzero(airways.lumen & ~truth) * voxel_ml
    assert false_ml <= 0.05 * phantom.truth["airway_volume_ml"]
    on_wall = np.count_nonzero(airways.lumen & (phantom.labels == TRUTH_WALL))
    assert on_wall <= 0.05 * np.count_nonzero(airways.lumen)
    assert not np.any(airways.lumen & airways.wall)
    # The trachea and main bronchi (radius >= 5.6 mm) are found whole.
    central = _resolvable_lumen(phantom, 5.0)
    assert np.count_nonzero(airways.lumen & central) >= 0.95 * np.count_nonzero(central)


def test_trachea_is_found_without_the_lung_segmentation_seed(small):
    phantom, scan, lungs, airways = small
    no_trachea = np.where(phantom.lungs == TRACHEA, 0, phantom.lungs).astype(np.uint8)

    searched = segment_airways(scan, LungSegmentation(no_trachea, phantom.spacing_mm))

    assert searched.seed_source == "image search"
    assert "airway_seed_search" in [f.code for f in searched.findings]
    assert np.array_equal(searched.lumen, airways.lumen)


@pytest.mark.parametrize(
    "case", ["off_centre", "starts_below_apex_level"], ids=lambda c: c.replace("_", " ")
)
def test_trachea_search_is_robust(small, case):
    phantom, _, _, airways = small
    hounsfield = phantom.hounsfield
    labels = np.where(phantom.lungs == TRACHEA, 0, phantom.lungs).astype(np.uint8)
    expected = airways.lumen
    if case == "off_centre":
        # The whole chest moved 40 mm to the patient's left of the image centre.
        shift = int(round(40.0 / phantom.spacing_mm[2]))
        hounsfield = np.full_like(hounsfield, -1000)
        hounsfield[:, :, shift:] = phantom.hounsfield[:, :, :-shift]
        labels = np.roll(labels, shift, axis=2)
        expected = np.roll(expected, shift, axis=2)
    else:
        # The scan starts 50 mm lower: only 20 mm of trachea above the apices.
        cut = int(round(50.0 / phantom.spacing_mm[0]))
        hounsfield = hounsfield[:-cut]
        labels = labels[:-cut]
        expected = expected[:-cut]
    scan = scan_from_array(hounsfield, phantom.spacing_mm, slice_thickness_mm=2.5)

    found = segment_airways(scan, LungSegmentation(labels, phantom.spacing_mm))

    assert found.seed_source == "image search"
    overlap = np.count_nonzero(found.lumen & expected) / np.count_nonzero(expected)
    assert overlap >= 0.97
    assert found.tree is not None and found.tree.max_generation >= 3


def test_no_trachea_gives_empty_features_with_a_reason(small):
    phantom, _, _, _ = small
    hounsfield = phantom.hounsfield.copy()
    # Fill every airway with soft tissue: there is nothing to seed from.
    hounsfield[phantom.labels == TRUTH_LUMEN] = 40
    hounsfield[phantom.lungs == TRACHEA] = 40
    labels = np.where(phantom.lungs == TRACHEA, 0, phantom.lungs).astype(np.uint8)
    scan = scan_from_array(hounsfield, phantom.spacing_mm, slice_thickness_mm=2.5)
    lungs = LungSegmentation(labels, phantom.spacing_mm)

    airways = segment_airways(scan, lungs)
    features = airway_features(scan, lungs, airways)

    assert not airways.lumen.any() and airways.tree is None
    assert "airway_no_seed" in [f.code for f in airways.findings]
    assert features["airway_reason"] == "no_seed"
    assert math.isnan(features["airway_volume_ml"])
    assert math.isnan(features["airway_branch_count"])


def test_leak_into_emphysematous_lung_is_stopped(small):
    phantom, _, lungs, airways = small
    truth = phantom.labels == TRUTH_LUMEN
    hounsfield = phantom.hounsfield.copy()
    # Right-lung parenchyma at emphysema level, and a hole through the wall
    # of a bronchus: growing above -940 HU would fill the whole lung.
    right = (phantom.lungs == 1) & (phantom.labels == 1)
    noise = np.random.default_rng(0).normal(0.0, 8.0, np.count_nonzero(right))
    hounsfield[right] = np.round(-940.0 + noise).astype(np.int16)
    wall = np.argwhere((phantom.labels == TRUTH_WALL) & (phantom.lungs == 1))
    hole = np.zeros(truth.shape, bool)
    hole[tuple(wall[wall.shape[0] // 2])] = True
    hole = ndimage.binary_dilation(hole, iterations=2) & (phantom.labels == TRUTH_WALL)
    hounsfield[hole] = -1000
    scan = scan_from_array(hounsfield, phantom.spacing_mm, slice_thickness_mm=2.5)

    leaky = segment_airways(scan, lungs)

    leaks = [f for f in leaky.findings if f.code == "airway_leak"]
    assert leaks and "leaked into the lung" in leaks[0].message
    assert leaky.threshold_hu <= -940.0
    false_ml = np.count_nonzero(leaky.lumen & ~truth & ~hole) * scan.voxel_volume_ml
    assert false_ml <= 0.02 * phantom.truth["airway_volume_ml"]
    assert leaky.volume_ml >= 0.85 * airways.volume_ml


def test_gapped_scan_has_no_tree_and_empty_measurements(phantom_factory):
    phantom = phantom_factory("small", seed=0, gapped=True)
    scan = phantom.to_scan()
    lungs = _lungs(phantom)

    airways = segment_airways(scan, lungs)
    features = airway_features(scan, lungs, airways)

    assert not scan.metadata.contiguous
    assert airways.tree is None
    assert "airway_gapped" in [f.code for f in airways.findings]
    # The trachea is still outlined on the slices that hold it, for the label map.
    trachea = phantom.lungs == TRACHEA
    assert np.count_nonzero(airways.lumen & trachea) >= 0.9 * np.count_nonzero(trachea)
    assert features["airway_reason"] == "gapped"
    for name in airway_feature_names()[:-1]:
        assert math.isnan(features[name]), name


def test_features_names_values_and_zones(small):
    phantom, scan, lungs, airways = small
    zones = _zones(lungs)

    features = airway_features(scan, lungs, airways, zones)

    assert list(features) == airway_feature_names()
    assert features["airway_reason"] == ""
    lumen_ml = np.count_nonzero(airways.lumen) * scan.voxel_volume_ml
    assert features["airway_volume_ml"] == pytest.approx(lumen_ml)
    intra = features["airway_intrapulmonary_volume_ml"]
    assert 0 < intra < features["airway_volume_ml"]
    lung_ml = lungs.volumes_ml()["lung_volume_ml"]
    assert features["airway_lung_ratio_pct"] == pytest.approx(100 * intra / lung_ml)
    thirds = sum(
        features[f"airway_intrapulmonary_volume_{z}_ml"]
        for z in ("upper", "middle", "lower")
    )
    assert thirds == pytest.approx(intra)
    shells = sum(
        features[f"airway_intrapulmonary_volume_{z}_ml"] for z in ("rind", "core")
    )
    assert shells == pytest.approx(intra)
    # Central airways sit in the core and the upper two thirds.
    assert (
        features["airway_intrapulmonary_volume_core_ml"]
        > features["airway_intrapulmonary_volume_rind_ml"]
    )
    assert features["airway_branch_count"] == airways.tree.branch_count
    reached = airways.tree.max_generation
    for k in DIAMETER_GENERATIONS:
        value = features[f"airway_lumen_diameter_gen{k}_mm"]
        assert math.isnan(value) == (k > reached), k
    assert (
        features["airway_lumen_diameter_gen0_mm"]
        > features["airway_lumen_diameter_gen1_mm"]
    )


def test_features_refuse_unknown_zone(small):
    _, scan, lungs, airways = small
    with pytest.raises(ParameterError, match="unknown lung zone 'apex'"):
        airway_features(scan, lungs, airways, {"apex": lungs.lung_mask})


def test_airway_labels_join_the_lung_labels(small):
    phantom, _, lungs, airways = small

    labels = airway_labels(lungs, airways)

    lung = lungs.lung_mask
    assert np.all(labels[airways.lumen & lung] == AIRWAY_LUMEN)
    assert np.all(labels[airways.lumen & ~lung] == TRACHEA)
    assert np.all(labels[airways.wall] == AIRWAY_WALL)
    untouched = ~airways.lumen & ~airways.wall & (phantom.lungs != TRACHEA)
    assert np.array_equal(labels[untouched], phantom.lungs[untouched])
    assert set(np.unique(labels)) <= {0, 1, 2, TRACHEA, AIRWAY_LUMEN, AIRWAY_WALL}


def test_traction_dilation_raises_the_airway_lung_ratio(phantom_factory):
    # Fibrotic small phantoms: airways of generation 3 on inside fibrotic lung
    # are widened by the dilation factor.
    ratios = []
    for dilation in (1.0, 1.3, 1.6):
        phantom = phantom_factory(
            "small", seed=0, fibrosis_pct=30, airway_dilation=dilation
        )
        scan = phantom.to_scan()
        lungs = _lungs(phantom)
        features = airway_features(scan, lungs, segment_airways(scan, lungs))
        ratios.append(features["airway_lung_ratio_pct"])

    assert ratios[0] < ratios[1] < ratios[2]
    assert ratios[2] >= 1.1 * ratios[0]


# --------------------------------------------------------------------------
# The airways extraction stage


def _run_stages(scan) -> CaseState:
    params = load_parameters()
    state = CaseState(scan=scan, case_id="p1")
    for stage in enabled_stages(params):
        if stage.name in ("lungs", "airways"):
            stage.run(state, params.section(stage.name))
    return state


def test_airways_stage_on_the_small_phantom(phantom_factory):
    phantom = phantom_factory("small", seed=0)
    truth = phantom.labels == TRUTH_LUMEN

    state = _run_stages(phantom.to_scan())

    names = [stage.name for stage in enabled_stages(load_parameters())]
    assert names.index("airways") == names.index("lungs") + 1
    lumen, wall = state.masks["airway_lumen"], state.masks["airway_wall"]
    voxel_ml = state.scan.voxel_volume_ml
    # The stage's own lung segmentation seeds it: the lumen is still airway.
    false_ml = np.count_nonzero(lumen & ~truth) * voxel_ml
    assert false_ml <= 0.05 * phantom.truth["airway_volume_ml"]
    assert np.count_nonzero(lumen & truth) >= 0.6 * np.count_nonzero(truth)
    assert not np.any(lumen & wall)
    assert state.columns["airway_reason"] == ""
    assert state.columns["airway_volume_ml"] == pytest.approx(
        np.count_nonzero(lumen) * voxel_ml
    )
    thirds = sum(
        state.columns[f"airway_intrapulmonary_volume_{z}_ml"]
        for z in ("upper", "middle", "lower")
    )
    assert thirds == pytest.approx(state.columns["airway_intrapulmonary_volume_ml"])
    assert state.columns["airway_max_generation"] >= 3
    # The label map carries the lumen, its wall and the lungs.
    label_map = state.label_map
    in_lung = state.lungs.lung_mask
    assert np.all(label_map[lumen & in_lung] == AIRWAY_LUMEN)
    assert np.all(label_map[lumen & ~in_lung] == TRACHEA)
    assert np.all(label_map[wall] == AIRWAY_WALL)
    assert {1, 2, TRACHEA, AIRWAY_LUMEN, AIRWAY_WALL} <= set(np.unique(label_map))
    method = stage_methods(load_parameters())["airways"]
    assert method["method"] == "radscl-classical-airways-1"
    assert method["start_threshold_hu"] == -950.0


def test_airways_stage_on_a_gapped_scan(phantom_factory):
    phantom = phantom_factory("small", seed=0, gapped=True)

    state = _run_stages(phantom.to_scan())

    assert state.columns["airway_reason"] == "gapped"
    for name in ("airway_volume_ml", "airway_branch_count", "airway_max_generation"):
        assert math.isnan(state.columns[name]), name
    stages = {code: stage for stage, code in ((s, f.code) for s, f in state.findings)}
    assert stages["airway_gapped"] == "airways"
    assert np.count_nonzero(state.label_map == TRACHEA) > 0


def test_airways_stage_refuses_bad_settings(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("airways:\n  start_threshold_hu: -600\n  max_threshold_hu: -800\n")
    with pytest.raises(ParameterError, match="airways: airway thresholds must"):
        enabled_stages(load_parameters(path))
    path.write_text("airways:\n  enabled: true\nlungs:\n  enabled: false\n")
    with pytest.raises(ParameterError, match="needs lungs"):
        enabled_stages(load_parameters(path))


# --------------------------------------------------------------------------
# Full-size phantom: accuracy against ground truth


@pytest.fixture(scope="module")
def full(phantom_factory):
    phantom = phantom_factory("full", seed=0)
    scan = phantom.to_scan()
    lungs = _lungs(phantom)
    return phantom, scan, lungs, segment_airways(scan, lungs)


@pytest.mark.slow
def test_full_phantom_volumes_against_truth(full):
    phantom, scan, lungs, airways = full
    voxel_ml = scan.voxel_volume_ml
    resolvable = _resolvable_lumen(phantom)
    lung = lungs.lung_mask
    features = airway_features(scan, lungs, airways)

    total = features["airway_volume_ml"]
    intra = features["airway_intrapulmonary_volume_ml"]
    resolvable_ml = np.count_nonzero(resolvable) * voxel_ml
    resolvable_intra_ml = np.count_nonzero(resolvable & lung) * voxel_ml
    assert total == pytest.approx(resolvable_ml, rel=0.10)
    assert intra == pytest.approx(resolvable_intra_ml, rel=0.15)
    # Against all drawn airways, down to 0.45 mm radius, the segmentation
    # misses the unresolvable periphery and nothing else.
    assert (
        0.65 * phantom.truth["airway_volume_ml"]
        <= total
        <= phantom.truth["airway_volume_ml"]
    )
    found = np.count_nonzero(airways.lumen & resolvable) / np.count_nonzero(resolvable)
    assert found >= 0.9


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason=(
        "issue 4 asks for the total airway volume within 10 % of the phantom's "
        "truth and the intrapulmonary volume within 15 %; the truth holds about "
        "12 ml of airway lumen of radius below 1 mm (generations 9-12), whose "
        "blurred centre is as bright as their wall (-570 HU), so the "
        "segmentation reaches -26 % and -47 % (measured against the airways it "
        "can resolve, see test_full_phantom_volumes_against_truth)"
    ),
)
def test_full_phantom_volumes_within_the_issue_limits_of_all_truth(full):
    phantom, scan, lungs, airways = full

    features = airway_features(scan, lungs, airways)

    assert features["airway_volume_ml"] == pytest.approx(
        phantom.truth["airway_volume_ml"], rel=0.10
    )
    assert features["airway_intrapulmonary_volume_ml"] == pytest.approx(
        phantom.truth["airway_intrapulmonary_volume_ml"], rel=0.15
    )


@pytest.mark.slow
def test_full_phantom_leaks_nothing(full):
    phantom, scan, _, airways = full
    truth = phantom.labels == TRUTH_LUMEN

    false_ml = np.count_nonzero(airways.lumen & ~truth) * scan.voxel_volume_ml

    assert false_ml <= 0.05 * phantom.truth["airway_volume_ml"]
    assert not np.any(airways.lumen & airways.wall)


@pytest.mark.slow
def test_full_phantom_tree_generations_and_calibre(full):
    phantom, _, _, airways = full
    tree = airways.tree
    truth_counts = phantom.truth["airway_branch_count_by_generation"]
    truth_radius = phantom.truth["airway_lumen_radius_mm_by_generation"]

    counts = tree.branch_count_by_generation()
    diameters = tree.lumen_diameter_by_generation_mm()

    assert tree.max_generation >= 6
    # The phantom numbers the bronchus beyond the hilum as generation 2
    # although the main bronchus does not branch there; from its generation
    # 3 on, the phantom's generation g is our generation g - 1.
    assert [counts[g] for g in (0, 1)] == [truth_counts[0], truth_counts[1]]
    # (One false branch or one missed branch per generation is tolerated.)
    for g in range(2, 6):
        assert abs(counts[g] - truth_counts[g + 1]) <= 1, g
    assert counts[6] >= 0.9 * truth_counts[7]
    assert diameters[0] == pytest.approx(2 * truth_radius[0], rel=0.03)
    for g in range(2, 6):
        assert diameters[g] == pytest.approx(2 * truth_radius[g + 1], abs=1.2), g
        assert diameters[g] < diameters[g - 1]
    # Phantom branches are straight cylinders: no tapering within a branch.
    middle_sized = tree.branches[tree.branches["lumen_diameter_mm"] > 4.0]
    assert middle_sized["taper_mm_per_cm"].abs().median() < 0.3
    trachea = tree.branches[tree.branches["generation"] == 0].iloc[0]
    assert trachea["length_mm"] == pytest.approx(150.0 - 14.0, abs=12.0)


@pytest.mark.slow
def test_full_phantom_wall_surrounds_the_lumen(full):
    phantom, _, lungs, airways = full
    truth_wall = phantom.labels == TRUTH_WALL
    # Truth wall around the airways found (within 2 mm of the lumen).
    near = ndimage.binary_dilation(airways.lumen, iterations=3) & truth_wall

    covered = np.count_nonzero(airways.wall & near) / np.count_nonzero(near)
    in_lung = airways.wall & lungs.lung_mask
    on_wall_or_lumen = np.isin(phantom.labels[in_lung], (TRUTH_LUMEN, TRUTH_WALL))

    assert covered >= 0.7
    assert on_wall_or_lumen.mean() >= 0.6


# --------------------------------------------------------------------------
# Real data


@pytest.mark.realdata
def test_cone_lumen_radius_and_taper():
    """Airway cone of the Chest Imaging Platform: lumen radius 0.5 to 8 mm.

    createConeTestImages.sh asks for a lumen radius from 0.5 mm to 8 mm over
    300 slices of 1 mm after 20 slices of overshoot. The drawn cone (the lumen
    fraction in lumen.nrrd, summed per slice) widens by 0.0256 mm per slice,
    2 % faster than that, from 0 at the first slice; it is the reference here.
    """
    import SimpleITK as sitk

    from radscl.io import load_scan

    folder = shared_data("tube_phantoms_cip")
    scan = load_scan(folder / "airway.nrrd")
    lumen_truth = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "lumen.nrrd")))
    wall_truth = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "wall.nrrd")))
    # Everything outside the tube is "lung"; the top of the lumen is the seed.
    labels = np.where(wall_truth > -500, 0, 1).astype(np.uint8)
    top = labels[-30:]
    top[lumen_truth[-30:] > -500] = TRACHEA

    airways = segment_airways(scan, LungSegmentation(labels, scan.spacing_mm))

    tree = airways.tree
    z = tree.centreline[:, 0]
    fraction = (lumen_truth.astype(float) + 1000.0) / 1000.0
    expected = np.sqrt(fraction.sum(axis=(1, 2)) / np.pi)[z]
    scripted = 0.5 + 0.025 * (z - 20)
    assert np.abs(expected - scripted)[z <= 320].max() < 0.2
    measured = tree.centreline_radius_mm
    wide = (expected >= 1.0) & (z < lumen_truth.shape[0] - 25)
    assert wide.sum() >= 250
    assert np.abs(measured[wide] - expected[wide]).max() <= 0.5
    # Diameter shrinks by 0.51 mm per cm from the wide end to the narrow one.
    assert tree.branches["taper_mm_per_cm"].iloc[0] == pytest.approx(-0.51, abs=0.08)


@pytest.mark.realdata
def test_cip_downsampled_ct_airways(record_property):
    """COPDGene 10002K at 4 mm: overlap with the CIP airway labels, reported.

    The scan is downsampled eightfold, so only the trachea and main bronchi
    are resolved; the overlap is recorded, not asserted, because the
    reference labels were drawn at full resolution and downsampled.
    """
    import SimpleITK as sitk

    from radscl.io import load_scan

    folder = shared_data("chest_ct_cip")
    scan = load_scan(folder / "ct-64.nrrd")
    label_map = sitk.GetArrayFromImage(
        sitk.ReadImage(str(folder / "lm-64.nrrd"))
    ).astype(int)
    region, kind = label_map % 256, label_map // 256
    labels = np.zeros(label_map.shape, np.uint8)
    labels[(region >= 12) & (region <= 14)] = 1  # right lung thirds
    labels[(region >= 9) & (region <= 11)] = 2  # left lung thirds

    airways = segment_airways(scan, LungSegmentation(labels, scan.spacing_mm))

    reference = kind == 2
    overlap = np.count_nonzero(airways.lumen & reference)
    dice = 2 * overlap / (np.count_nonzero(airways.lumen) + np.count_nonzero(reference))
    record_property("cip_airway_dice", round(float(dice), 3))
    record_property("cip_airway_volume_ml", round(airways.volume_ml, 1))
    assert airways.seed_source == "image search"
    assert airways.tree is not None and airways.tree.max_generation >= 1
