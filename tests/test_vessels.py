"""Tests of the vessel segmentation, the vessel features and the vessels stage."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import shared_data

from radscl.errors import ParameterError
from radscl.extract.params import load_parameters
from radscl.extract.stages import CaseState
from radscl.extract.stages import stage_methods
from radscl.extract.stages import stage_names
from radscl.extractors.vessel import vessel_feature_names
from radscl.extractors.vessel import vessel_features
from radscl.segmentation import VESSEL
from radscl.segmentation.airways import segment_airways
from radscl.segmentation.lungs import LungSegmentation
from radscl.segmentation.vessels import VESSEL_METHOD
from radscl.segmentation.vessels import VesselParams
from radscl.segmentation.vessels import segment_vessels

#: Phantom tissue labels.
TRUTH_LUMEN = 2
TRUTH_WALL = 3

BINS = (
    "vessel_volume_csa_lt5_ml",
    "vessel_volume_csa_5to10_ml",
    "vessel_volume_csa_gt10_ml",
)


def _lungs(phantom) -> LungSegmentation:
    return LungSegmentation(
        phantom.lungs, phantom.spacing_mm, slice_positions_mm=phantom.slice_positions_mm
    )


def _measure(phantom):
    scan = phantom.to_scan()
    lungs = _lungs(phantom)
    airways = segment_airways(scan, lungs)
    vessels = segment_vessels(scan, lungs, airways.lumen, airways.wall)
    return scan, lungs, airways, vessels, vessel_features(scan, lungs, vessels)


# --------------------------------------------------------------------------
# Small phantom: fast checks


@pytest.fixture(scope="module")
def small(phantom_factory):
    return (
        phantom_factory("small", seed=0),
        *_measure(phantom_factory("small", seed=0)),
    )


def test_features_add_up_and_use_slice_positions(small):
    phantom, scan, lungs, airways, vessels, features = small
    assert list(features) == vessel_feature_names()
    assert features["vessel_reason"] == ""
    total = features["vessel_volume_ml"]
    assert sum(features[name] for name in BINS) == pytest.approx(total, rel=1e-9)
    assert features["vessel_volume_upper_ml"] is not None
    assert features["vessel_small_share_pct"] == pytest.approx(
        100 * features["vessel_volume_csa_lt5_ml"] / total
    )
    lung_ml = lungs.volume_ml(lungs.lung_mask)
    assert features["vessel_lung_ratio_pct"] == pytest.approx(100 * total / lung_ml)

    # Slices spread apart at one end: the volume follows the positions.
    positions = np.asarray(phantom.slice_positions_mm, float).copy()
    positions[positions.size // 2 :] += np.arange(positions.size - positions.size // 2)
    stretched = LungSegmentation(
        phantom.lungs, phantom.spacing_mm, slice_positions_mm=positions
    )
    assert vessel_features(scan, stretched, vessels)["vessel_volume_ml"] > 1.05 * total


def test_small_phantom_total_is_close_to_truth(small):
    phantom, *_, features = small
    # 2.25 x 2.25 x 2.5 mm voxels: only the total is meaningful at this size.
    assert features["vessel_volume_ml"] == pytest.approx(
        phantom.truth["vessel_volume_ml"], rel=0.25
    )


def test_segmented_airways_are_never_vessel(small):
    _, _, _, airways, vessels, _ = small
    assert airways.lumen.any() and airways.wall.any()
    assert not (vessels.mask & (airways.lumen | airways.wall)).any()


def test_larger_vessels_raise_volume_and_move_it_to_larger_bins(phantom_factory):
    results = []
    for scale in (0.8, 1.0, 1.3):
        *_, features = _measure(phantom_factory("small", seed=0, vessel_scale=scale))
        results.append(features)
    volumes = [f["vessel_volume_ml"] for f in results]
    assert volumes[0] < volumes[1] < volumes[2]
    large_share = [
        f["vessel_volume_csa_gt10_ml"] / f["vessel_volume_ml"] for f in results
    ]
    assert large_share[0] < large_share[1] < large_share[2]


def test_gapped_scan_gives_empty_values_and_a_reason(phantom_factory):
    phantom = phantom_factory("small", seed=0, gapped=True)
    scan = phantom.to_scan()
    lungs = _lungs(phantom)
    vessels = segment_vessels(scan, lungs)
    features = vessel_features(scan, lungs, vessels)
    assert features["vessel_reason"] == "gapped"
    for name in vessel_feature_names()[:-1]:
        assert math.isnan(features[name]), name
    assert not vessels.mask.any()
    assert any(f.code == "vessels_not_measured" for f in vessels.findings)


def test_bad_parameters_are_refused():
    with pytest.raises(ParameterError, match="unknown"):
        VesselParams.from_mapping({"treshold": 3})
    with pytest.raises(ParameterError, match="low_hu"):
        VesselParams.from_mapping({"low_hu": 80.0, "high_hu": 60.0})


def test_vessels_stage_on_small_phantom(phantom_factory):
    phantom = phantom_factory("small", seed=0)
    params = load_parameters(None)
    assert stage_names().index("vessels") > stage_names().index("lungs")
    state = CaseState(scan=phantom.to_scan(), case_id="phantom")
    from radscl.extract.stages import STAGES

    for stage in STAGES:
        if params.enabled(stage.name):
            stage.run(state, params.section(stage.name))
    vessel = state.masks["vessel"]
    assert vessel.any()
    assert np.array_equal(state.label_map == VESSEL, vessel)
    assert state.columns["vessel_volume_ml"] == pytest.approx(
        phantom.truth["vessel_volume_ml"], rel=0.25
    )
    assert state.columns["vessel_volume_lower_ml"] > 0
    method = stage_methods(params)["vessels"]
    assert method["method"] == VESSEL_METHOD
    assert method["parameters"]["scales_mm"] == params.section("vessels")["scales_mm"]
    # thick phantom slices are reported
    assert any(f.code == "vessels_thick_slices" for _, f in state.findings)


def test_stage_excludes_given_airway_masks(phantom_factory):
    phantom = phantom_factory("small", seed=0)
    params = load_parameters(None)
    from radscl.extract.stages import STAGES

    stages = {stage.name: stage for stage in STAGES}
    state = CaseState(scan=phantom.to_scan(), case_id="phantom")
    stages["lungs"].run(state, params.section("lungs"))
    # an airway stage would leave these; take the truth airways here
    state.masks["airway_lumen"] = phantom.labels == TRUTH_LUMEN
    state.masks["airway_wall"] = phantom.labels == TRUTH_WALL
    stages["vessels"].run(state, params.section("vessels"))
    airway = state.masks["airway_lumen"] | state.masks["airway_wall"]
    assert not (state.masks["vessel"] & airway).any()


# --------------------------------------------------------------------------
# Calibre on the CIP vessel cone


def test_radius_on_the_cip_vessel_cone():
    folder = shared_data("tube_phantoms_cip")
    cones = sorted(folder.glob("*essel*.nrrd"))
    if not cones:
        pytest.skip("the bright vessel cone is not in tube_phantoms_cip")
    from radscl.io import load_scan

    scan = load_scan(cones[0])
    hounsfield = scan.hounsfield
    inside = np.ones(hounsfield.shape, bool)
    inside[:, :2] = inside[:, -2:] = False
    inside[:, :, :2] = inside[:, :, -2:] = False
    vessels = segment_vessels(
        scan, LungSegmentation(inside.astype(np.uint8), scan.spacing_mm)
    )
    radius = vessels.radius_map()
    measured = np.array(
        [np.median(r[r > 0]) if (r > 0).any() else np.nan for r in radius]
    )

    # The true radius of each slice is that of the cone's cross-section, from
    # its partial-volume occupancy (0 HU inside, -1000 HU outside). Slices
    # near the end of the volume are left out: the cone is cut open there.
    occupancy = np.clip((hounsfield.astype(float) + 1000.0) / 1000.0, 0.0, 1.0)
    true_radius = np.sqrt(
        occupancy.sum(axis=(1, 2)) * np.prod(scan.spacing_mm[1:]) / np.pi
    )
    interior = np.arange(len(true_radius)) < len(true_radius) - 3 * 10
    usable = interior & (true_radius >= 1.0) & (true_radius <= 7.0)
    assert usable.sum() > 150
    assert np.isfinite(measured[usable]).all()
    assert np.max(np.abs(measured[usable] - true_radius[usable])) <= 0.5


# --------------------------------------------------------------------------
# Full-size phantom: accuracy against ground truth (issue 5)


@pytest.fixture(scope="module")
def full(phantom_factory):
    phantom = phantom_factory("full", seed=0)
    return (phantom, *_measure(phantom))


@pytest.mark.slow
def test_full_phantom_total_volume_within_15_percent(full):
    phantom, *_, features = full
    assert features["vessel_volume_ml"] == pytest.approx(
        phantom.truth["vessel_volume_ml"], rel=0.15
    )


@pytest.mark.slow
def test_full_phantom_area_bins_within_25_percent(full):
    phantom, *_, features = full
    for name in BINS:
        assert features[name] == pytest.approx(phantom.truth[name], rel=0.25), name


@pytest.mark.slow
def test_full_phantom_fibrosis_is_not_vessel(phantom_factory):
    phantom = phantom_factory("full", seed=0, fibrosis_pct=30.0)
    *_, vessels, features = _measure(phantom)
    assert features["vessel_volume_ml"] == pytest.approx(
        phantom.truth["vessel_volume_ml"], rel=0.25
    )
    reticular = np.isin(phantom.labels, (6, 7))
    assert np.count_nonzero(vessels.mask & reticular) < 0.10 * np.count_nonzero(
        vessels.mask
    )
