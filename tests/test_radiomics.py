"""Tests of the pyradiomics layer: columns, values, empty regions, parameters,
logging and the IBSI-1 reference values."""

from __future__ import annotations

import importlib.util
import logging
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import shared_data
from radiomics import featureextractor

from radscl.errors import ParameterError
from radscl.errors import ScanError
from radscl.extractors import radiomics as rad
from radscl.io import Scan
from radscl.io import ScanMetadata

ROOT = Path(__file__).resolve().parents[1]
FORWARDED = "radscl.extractors.radiomics.pyradiomics"

# pykwalify, under pyradiomics' own parameter check, loads schema functions
# with importlib's deprecated load_module(); radscl silences it in its own calls
pykwalify_load_module = pytest.mark.filterwarnings(
    "ignore:the load_module:DeprecationWarning"
)

# Texture without resampling: fast, and the crop-to-region path.
NATIVE = {
    "imageType": {"Original": {}},
    "featureClass": {"firstorder": None, "glcm": None, "glszm": None},
    "setting": {"binWidth": 25},
}


def make_scan(
    hounsfield: np.ndarray,
    spacing_mm=(1.0, 0.75, 0.75),
    origin_mm=(-120.0, -90.0, -300.0),
    source="/archive/cohort/case_017.nii.gz",
) -> Scan:
    metadata = ScanMetadata(
        source_format="nifti",
        shape=hounsfield.shape,
        spacing_mm=spacing_mm,
        slice_thickness_mm=spacing_mm[0],
        slice_interval_mm=spacing_mm[0],
        contiguous=True,
    )
    return Scan(
        hounsfield=hounsfield,
        spacing_mm=spacing_mm,
        origin_mm=origin_mm,
        direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
        slice_positions_mm=origin_mm[2]
        + spacing_mm[0] * np.arange(hounsfield.shape[0]),
        metadata=metadata,
        quality=[],
        source=source,
    )


@pytest.fixture(scope="module")
def lung_like():
    """A 40 x 64 x 64 scan with a textured ellipsoidal 'lung' and a lower zone."""
    rng = np.random.default_rng(13)
    shape = (40, 64, 64)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    lung = ((z - 20) / 17) ** 2 + ((y - 32) / 26) ** 2 + ((x - 32) / 24) ** 2 < 1
    hounsfield = np.full(shape, 40, dtype=np.int16)
    texture = rng.normal(-820, 60, size=shape)
    fibrotic = lung & (z < 14) & (rng.random(shape) < 0.5)
    texture[fibrotic] = rng.normal(-350, 120, size=int(fibrotic.sum()))
    hounsfield[lung] = np.clip(texture[lung], -1024, 300).astype(np.int16)
    lower = lung & (z < 14)
    return make_scan(hounsfield), {"lung": lung, "zone_lower": lower}


def sitk_pair(scan: Scan, mask: np.ndarray):
    image = sitk.GetImageFromArray(scan.hounsfield.astype(np.float32))
    image.SetSpacing(tuple(reversed(scan.spacing_mm)))
    image.SetOrigin(scan.origin_mm)
    image.SetDirection(scan.direction)
    label = sitk.GetImageFromArray(mask.astype(np.uint8))
    label.CopyInformation(image)
    return image, label


# --- columns and values ------------------------------------------------------


def test_columns_are_pyradiomics_names_prefixed_by_mask(lung_like):
    scan, masks = lung_like

    features = rad.extract_radiomics(scan, masks, NATIVE)

    assert "rad_lung_original_glcm_Contrast" in features
    assert "rad_zone_lower_original_firstorder_Mean" in features
    assert not any("diagnostics" in name for name in features)
    lung = [n.removeprefix("rad_lung_") for n in features if n.startswith("rad_lung_")]
    lower = [
        n.removeprefix("rad_zone_lower_")
        for n in features
        if n.startswith("rad_zone_lower_")
    ]
    assert lung == lower
    assert len(features) == len(lung) + len(lower)
    assert all(isinstance(v, float) and math.isfinite(v) for v in features.values())


@pykwalify_load_module
@pytest.mark.parametrize(
    "params", [NATIVE, None], ids=["cropped-native", "default-lung"]
)
def test_values_equal_pyradiomics_on_the_whole_image(lung_like, params):
    scan, masks = lung_like

    ours = rad.extract_radiomics(scan, {"lung": masks["lung"]}, params)

    config = rad.load_params(params)
    extractor = featureextractor.RadiomicsFeatureExtractor(config, additionalInfo=False)
    theirs = extractor.execute(*sitk_pair(scan, masks["lung"]))
    assert len(ours) == len(theirs)
    for name, value in theirs.items():
        assert ours[f"rad_lung_{name}"] == pytest.approx(
            float(value), rel=1e-12, abs=1e-12
        )


@pykwalify_load_module
@pytest.mark.parametrize(
    ("interpolator", "rel"), [("sitkLinear", 1e-12), ("sitkBSpline", 1e-6)]
)
def test_small_region_is_resampled_on_pyradiomics_grid(interpolator, rel):
    # radscl resamples a small region from its neighbourhood only; the grid
    # and the values must be those pyradiomics gets from the whole scan, with
    # an oblique direction and a spacing ratio that is not a whole number
    rng = np.random.default_rng(5)
    hounsfield = rng.normal(-700, 150, size=(30, 70, 80)).astype(np.int16)
    region = np.zeros(hounsfield.shape, dtype=bool)
    region[12:21, 40:55, 47:66] = rng.random((9, 15, 19)) < 0.8
    scan = make_scan(hounsfield, spacing_mm=(1.25, 0.7, 0.66))
    theta = np.deg2rad(20)
    scan.direction = (
        np.cos(theta), -np.sin(theta), 0.0,
        np.sin(theta), np.cos(theta), 0.0,
        0.0, 0.0, 1.0,
    )  # fmt: skip
    params = rad.load_params()
    params["setting"].update(interpolator=interpolator, minimumROISize=10)

    ours = rad.extract_radiomics(scan, {"region": region}, params)

    extractor = featureextractor.RadiomicsFeatureExtractor(params, additionalInfo=False)
    theirs = extractor.execute(*sitk_pair(scan, region))
    assert len(ours) == len(theirs) > 90
    for name, value in theirs.items():
        assert ours[f"rad_region_{name}"] == pytest.approx(
            float(value), rel=rel, abs=1e-9
        )


def test_first_order_values_worked_by_hand():
    hounsfield = np.full((3, 3, 3), 40, dtype=np.int16)
    values = np.array([-1000, -900, -800, -700, -600, -500, -400, -300])
    hounsfield[:2, :2, :2] = values.reshape(2, 2, 2)
    mask = np.zeros((3, 3, 3), dtype=bool)
    mask[:2, :2, :2] = True
    scan = make_scan(hounsfield, spacing_mm=(2.0, 0.5, 0.5))
    params = {"featureClass": {"firstorder": None}, "setting": {"binWidth": 25}}

    features = rad.extract_radiomics(scan, {"roi": mask}, params)

    def get(name):
        return features[f"rad_roi_original_firstorder_{name}"]

    # mean -650; squares sum to 3.8e6; deviations +-50, 150, 250, 350
    assert get("Mean") == pytest.approx(-650.0)
    assert get("Energy") == pytest.approx(3.8e6)
    assert get("TotalEnergy") == pytest.approx(3.8e6 * 0.5)  # 0.5 mm3 voxels
    assert get("Variance") == pytest.approx(2 * (50**2 + 150**2 + 250**2 + 350**2) / 8)
    assert get("Range") == pytest.approx(700.0)
    # eight values in eight 25-HU bins: 3 bits, uniformity 8 x (1/8)^2
    assert get("Entropy") == pytest.approx(3.0)
    assert get("Uniformity") == pytest.approx(0.125)


def test_spacing_reaches_pyradiomics_in_array_order():
    # box of 4 (z) x 6 (y) x 10 (x) voxels; axis length = 4 sqrt(s^2 (n^2 - 1) / 12)
    hounsfield = np.full((8, 10, 14), -800, dtype=np.int16)
    mask = np.zeros_like(hounsfield, dtype=bool)
    mask[2:6, 2:8, 2:12] = True
    scan = make_scan(hounsfield, spacing_mm=(2.5, 0.5, 0.8))
    params = {"featureClass": {"shape": None}}

    features = rad.extract_radiomics(scan, {"box": mask}, params)

    def axis_mm(n, spacing):
        return 4 * math.sqrt(spacing**2 * (n**2 - 1) / 12)

    assert features["rad_box_original_shape_VoxelVolume"] == pytest.approx(240 * 1.0)
    assert features["rad_box_original_shape_MajorAxisLength"] == pytest.approx(
        axis_mm(4, 2.5)
    )
    assert features["rad_box_original_shape_MinorAxisLength"] == pytest.approx(
        axis_mm(10, 0.8)
    )
    assert features["rad_box_original_shape_LeastAxisLength"] == pytest.approx(
        axis_mm(6, 0.5)
    )


# --- empty and tiny regions, failures ------------------------------------------


def test_empty_mask_gives_nan_and_logs_why(lung_like, caplog):
    scan, masks = lung_like
    empty = np.zeros_like(masks["lung"])

    with caplog.at_level(logging.INFO, logger="radscl"):
        features = rad.extract_radiomics(
            scan, {"lung": masks["lung"], "fibrotic": empty}, NATIVE, case_id="SSC-0042"
        )

    fibrotic = {k: v for k, v in features.items() if k.startswith("rad_fibrotic_")}
    lung = [k for k in features if k.startswith("rad_lung_")]
    assert len(fibrotic) == len(lung) > 0
    assert all(math.isnan(v) for v in fibrotic.values())
    assert not any(math.isnan(features[k]) for k in lung)
    messages = [r.getMessage() for r in caplog.records if "fibrotic" in r.getMessage()]
    assert messages and "SSC-0042" in messages[0] and "empty" in messages[0]


def test_tiny_mask_gives_nan_with_pyradiomics_reason(lung_like, caplog):
    scan, masks = lung_like
    tiny = np.zeros_like(masks["lung"])
    tiny[20, 30:32, 30] = True  # 2 voxels: too small for the default's 250

    with caplog.at_level(logging.WARNING, logger="radscl"):
        features = rad.extract_radiomics(scan, {"tiny": tiny})

    assert features and all(math.isnan(v) for v in features.values())
    warning = [r for r in caplog.records if r.name == rad.__name__]
    assert len(warning) == 1
    text = warning[0].getMessage()
    assert "'tiny'" in text and "case_017.nii.gz" in text and "rejected" in text
    assert "/archive/cohort" not in text


def test_only_empty_masks_still_give_every_column(lung_like):
    scan, masks = lung_like

    empty = rad.extract_radiomics(scan, {"lung": np.zeros_like(masks["lung"])}, NATIVE)
    real = rad.extract_radiomics(scan, {"lung": masks["lung"]}, NATIVE)

    assert list(empty) == list(real)
    assert all(math.isnan(v) for v in empty.values())
    assert rad.radiomics_feature_names(NATIVE) == [
        k.removeprefix("rad_lung_") for k in real
    ]


def test_pyradiomics_failure_names_mask_and_scan(lung_like, monkeypatch):
    scan, masks = lung_like

    def broken(self, image, mask, *args, **kwargs):
        raise ValueError("matrix went wrong")

    monkeypatch.setattr(featureextractor.RadiomicsFeatureExtractor, "execute", broken)

    with pytest.raises(
        rad.RadiomicsError, match="'zone_lower' of scan 'SSC-7'.*matrix went"
    ):
        rad.extract_radiomics(
            scan, {"zone_lower": masks["zone_lower"]}, NATIVE, case_id="SSC-7"
        )


def test_mask_of_another_shape_is_a_scan_error(lung_like):
    scan, masks = lung_like

    with pytest.raises(ScanError, match="case_017.nii.gz: mask 'lung' has shape"):
        rad.extract_radiomics(scan, {"lung": masks["lung"][:-1]}, NATIVE)


@pytest.mark.parametrize("name", ["upper zone", "lung-left", "_x", ""])
def test_mask_names_must_fit_a_column_name(lung_like, name):
    scan, masks = lung_like

    with pytest.raises(ParameterError, match="mask name"):
        rad.extract_radiomics(scan, {name: masks["lung"]}, NATIVE)


# --- parameters -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (
            {"setting": {"binWidht": 25}},
            "unknown key 'binWidht' in 'setting' (did you mean 'binWidth'?)",
        ),
        (
            {"settings": {"binWidth": 25}},
            "unknown key 'settings' in the top level (did you mean 'setting'?)",
        ),
        (
            {"featureClass": {"glcmx": None}},
            "unknown key 'glcmx' in 'featureClass' (did you mean 'glcm'?)",
        ),
        (
            {"featureClass": {"glcm": ["Contrastx"]}},
            "unknown feature 'Contrastx' in featureClass 'glcm'",
        ),
        (
            {"imageType": {"LoGx": {}}},
            "unknown key 'LoGx' in 'imageType' (did you mean 'LoG'?)",
        ),
        (
            {"imageType": {"LoG": {"sigmas": [1.0]}}},
            "unknown key 'sigmas' in imageType 'LoG' (did you mean 'sigma'?)",
        ),
        (
            {"setting": {"binWidth": "wide"}},
            "setting/binWidth: value 'wide' is not of type 'float'",
        ),
        (
            {"setting": {"interpolator": "cubic"}},
            'Interpolator value "cubic" not valid',
        ),
        ({"setting": [1, 2]}, "'setting' must be a mapping, found list"),
    ],
)
def test_bad_parameters_are_one_line_errors_naming_the_key(params, expected, capfd):
    with pytest.raises(ParameterError) as raised:
        rad.load_params(params)

    message = str(raised.value)
    assert expected in message
    assert "\n" not in message
    assert capfd.readouterr().err == ""


def test_parameter_file_errors_name_the_file(tmp_path):
    path = tmp_path / "my_lung.yaml"
    path.write_text("setting:\n  binWidth: 25\n  resampledPixelSpacng: [2, 2, 2]\n")

    with pytest.raises(
        ParameterError, match=r"my_lung.yaml: unknown key 'resampledPixelSpacng'"
    ):
        rad.load_params(path)
    with pytest.raises(
        ParameterError, match="missing.yaml: radiomics parameter file not found"
    ):
        rad.load_params(tmp_path / "missing.yaml")
    path.write_text("setting: [unclosed\n")
    with pytest.raises(ParameterError, match="my_lung.yaml: not a YAML file"):
        rad.load_params(path)


@pykwalify_load_module
def test_shipped_parameter_files_are_valid_for_pyradiomics_itself():
    files = [
        rad.default_params_path(),
        *sorted((ROOT / "params" / "ibsi").glob("*.yaml")),
    ]
    assert len(files) == 6

    for path in files:
        extractor = featureextractor.RadiomicsFeatureExtractor(str(path))
        assert extractor.enabledFeatures
        assert rad.load_params(path)


def test_default_lung_configuration_choices():
    settings = rad.load_params()["setting"]
    config = rad.load_params()

    assert settings["binWidth"] == 25
    assert settings["resampledPixelSpacing"] == [2, 2, 2]
    assert settings["resegmentRange"] == [-1024, 200]
    assert set(config["imageType"]) == {"Original"}
    assert "shape" not in config["featureClass"]


# --- logging ----------------------------------------------------------------------


def test_pyradiomics_is_quiet_and_speaks_through_radscl(lung_like, caplog, capfd):
    scan, masks = lung_like
    pyradiomics_logger = logging.getLogger("radiomics")

    with caplog.at_level(logging.DEBUG, logger="radscl"):
        rad.extract_radiomics(scan, {"lung": masks["lung"]}, NATIVE)

    assert capfd.readouterr().err == ""
    assert pyradiomics_logger.propagate is False
    handlers = pyradiomics_logger.handlers
    assert sum(isinstance(h, rad._ForwardToRadscl) for h in handlers) == 1
    assert not any(getattr(h, "stream", None) is sys.stderr for h in handlers)
    forwarded = [r for r in caplog.records if r.name == FORWARDED]
    assert forwarded, "pyradiomics' records should reach radscl's logger"
    symmetric = [r for r in forwarded if "GLCM is symmetrical" in r.getMessage()]
    assert symmetric and all(r.levelno == logging.INFO for r in symmetric)
    assert all(r.levelno <= logging.INFO for r in forwarded)


def test_nothing_from_pyradiomics_at_radscl_default_level(lung_like, caplog):
    scan, masks = lung_like

    with caplog.at_level(logging.WARNING, logger="radscl"):
        rad.extract_radiomics(scan, {"lung": masks["lung"]}, NATIVE)

    assert [r for r in caplog.records if r.name == FORWARDED] == []


# --- IBSI ------------------------------------------------------------------------


def _ibsi_check():
    # benchmarks/ is not a package users install; load the script by path
    name = "radscl_benchmarks_ibsi_check"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, ROOT / "benchmarks" / "ibsi_check.py"
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("config", "ibsi_interpolation"),
    [("A", False), ("B", True), ("D", True)],
    ids=["A", "B-ibsi-interpolated", "D-ibsi-interpolated"],
)
def test_ibsi_reference_values_within_tolerance(config, ibsi_interpolation):
    # Without interpolation (A), and once the phantom is interpolated as IBSI
    # prescribes (B, D with fixed bin numbers), every IBSI feature pyradiomics
    # computes agrees: statistics, histogram entropy and uniformity,
    # morphology, GLCM, GLRLM, GLSZM, NGTDM and NGLDM (pyradiomics' GLDM).
    data = shared_data("ibsi")
    check = _ibsi_check()

    features = check.extract(data, config, ibsi_interpolation=ibsi_interpolation)
    comparison = check.compare(features, check.reference(data, config), config)

    computed = comparison[comparison["pyradiomics"].notna()]
    assert len(computed) == 104
    outside = computed[~computed["within"].astype(bool)]
    assert outside.empty, outside[
        ["tag", "reference", "tolerance", "value"]
    ].to_string()


@pytest.mark.realdata
def test_ibsi_fixed_bin_width_after_interpolation_differs_only_by_bin_origin():
    # pyradiomics starts fixed-width bins at the multiple of 25 HU below the
    # region's minimum (-950 here), IBSI at the re-segmentation minimum
    # (-1000): statistics and morphology agree, features that depend on a
    # grey level's index (joint average, high/low grey-level emphasis) do not.
    data = shared_data("ibsi")
    check = _ibsi_check()

    features = check.extract(data, "C", ibsi_interpolation=True)
    comparison = check.compare(features, check.reference(data, "C"), "C")

    computed = comparison[comparison["pyradiomics"].notna()]
    by_family = computed.groupby("family")["within"].agg(
        lambda w: w.astype(bool).mean()
    )
    assert by_family["statistics"] == 1.0
    assert by_family["morphology"] == 1.0
    offset = computed.set_index("tag")
    joint_average_shift = (
        offset.loc["cm_joint_avg_3D_avg", "reference"]
        - offset.loc["cm_joint_avg_3D_avg", "value"]
    )
    assert joint_average_shift == pytest.approx(2.0, abs=0.2)


# --- the radiomics extraction stage -------------------------------------------

STAGE_MASKS = ["lung", "parenchyma", "fibrosis", "zone_upper", "zone_lower"]


def _stage(name: str):
    from radscl.extract.stages import STAGES

    return {stage.name: stage for stage in STAGES}[name]


@pytest.fixture(scope="module")
def phantom_state(phantom_factory):
    """A small phantom with 15% basal fibrosis after the lungs stage, with the
    true parenchyma and fibrotic region as the masks a later stage would leave."""
    from radscl.extract.params import load_parameters
    from radscl.extract.stages import CaseState
    from radscl.phantom.chest import FIBROSIS_LABELS

    phantom = phantom_factory("small", seed=3, fibrosis_pct=15)
    params = load_parameters()
    state = CaseState(scan=phantom.to_scan(), case_id="phantom_003")
    _stage("lungs").run(state, params.section("lungs"))

    labels = np.asarray(phantom.labels)
    lung = state.lungs.lung_mask
    state.masks["parenchyma"] = lung & np.isin(labels, (1, 5, 6, 7, 8))
    state.masks["fibrosis"] = lung & np.isin(labels, FIBROSIS_LABELS)
    return phantom, state, params


def _fresh(state):
    """A shallow copy of a state with no columns or findings yet."""
    import copy

    fresh = copy.copy(state)
    fresh.columns = {}
    fresh.findings = []
    fresh.masks = dict(state.masks)
    return fresh


def _run_stage(state, params, **changes):
    run_state = _fresh(state)
    settings = {**params.section("radiomics"), **changes}
    _stage("radiomics").run(run_state, settings)
    return run_state


@pytest.mark.slow
def test_stage_measures_phantom_regions(phantom_state):
    phantom, state, params = phantom_state
    features = rad.radiomics_feature_names()

    after = _run_stage(state, params, masks=STAGE_MASKS)

    columns = after.columns
    assert list(columns) == [
        f"rad_{mask}_{feature}" for mask in STAGE_MASKS for feature in features
    ]
    assert not any(math.isnan(v) for v in columns.values())

    # first-order means against the phantom's CT numbers in the same regions
    # (within the configuration's [-1024, 200] HU); 2 mm resampling and the
    # nearest-neighbour mask move them by partial volume only
    hounsfield = state.scan.hounsfield
    kept = hounsfield <= 200
    for mask, tolerance_hu in (("lung", 15), ("fibrosis", 30)):
        region = (state.lungs.lung_mask if mask == "lung" else state.masks[mask]) & kept
        assert columns[f"rad_{mask}_original_firstorder_Mean"] == pytest.approx(
            hounsfield[region].mean(), abs=tolerance_hu
        )

    # fibrosis is denser and coarser than the parenchyma, and basal
    mean = "original_firstorder_Mean"
    assert columns[f"rad_fibrosis_{mean}"] - columns[f"rad_parenchyma_{mean}"] > 150
    contrast = "original_glcm_Contrast"
    assert (
        columns[f"rad_zone_lower_{contrast}"]
        > 1.5 * columns[f"rad_zone_upper_{contrast}"]
    )
    assert after.findings == []


def test_stage_regions_no_stage_made_are_empty_with_a_finding(phantom_state):
    _, state, params = phantom_state
    without = _fresh(state)
    without.masks = {}

    after = _run_stage(without, params, masks=["parenchyma"])

    assert len(after.columns) == len(rad.radiomics_feature_names())
    assert all(k.startswith("rad_parenchyma_original_") for k in after.columns)
    assert all(math.isnan(v) for v in after.columns.values())
    ((stage, finding),) = after.findings
    assert (stage, finding.code) == ("radiomics", "radiomics_region_not_made")
    assert "parenchyma" in finding.message


def test_stage_empty_fibrotic_region_gives_empty_columns(phantom_state):
    _, state, params = phantom_state
    healthy = _fresh(state)
    healthy.masks["fibrosis"] = np.zeros_like(state.masks["fibrosis"])

    after = _run_stage(healthy, params, masks=["fibrosis"])

    assert len(after.columns) == len(rad.radiomics_feature_names())
    assert all(math.isnan(v) for v in after.columns.values())


def test_stage_gapped_scan_gives_empty_columns_with_the_reason(phantom_state):
    import dataclasses

    _, state, params = phantom_state
    gapped = _fresh(state)
    metadata = dataclasses.replace(state.scan.metadata, contiguous=False)
    gapped.scan = dataclasses.replace(state.scan, metadata=metadata)

    after = _run_stage(gapped, params, masks=["lung", "zone_lower"])

    assert len(after.columns) == 2 * len(rad.radiomics_feature_names())
    assert all(math.isnan(v) for v in after.columns.values())
    assert [f.code for _, f in after.findings] == ["radiomics_needs_contiguous_slices"]


def test_stage_is_off_by_default_and_checks_its_file_up_front(tmp_path):
    from radscl.extract.params import load_parameters
    from radscl.extract.stages import enabled_stages
    from radscl.extract.stages import stage_methods
    from radscl.extract.stages import stage_names

    assert stage_names()[-1] == "radiomics"
    assert _stage("radiomics").requires == ("lungs",)
    assert "radiomics" not in [s.name for s in enabled_stages(load_parameters())]

    pyradiomics_file = tmp_path / "lung_texture.yaml"
    pyradiomics_file.write_text("setting:\n  binWidht: 25\n")
    user = tmp_path / "extraction.yaml"
    user.write_text("radiomics:\n  enabled: true\n  params_file: lung_texture.yaml\n")
    with pytest.raises(ParameterError) as caught:
        enabled_stages(load_parameters(user))
    message = str(caught.value)
    assert "\n" not in message
    assert "radiomics.params_file" in message
    assert "lung_texture.yaml" in message
    assert "'binWidht'" in message and "binWidth" in message

    pyradiomics_file.write_text("setting:\n  binWidth: 10\n")
    methods = stage_methods(load_parameters(user))
    record = methods["radiomics"]
    assert record["method"].startswith("pyradiomics ")
    assert record["pyradiomics_parameters"] == {"setting": {"binWidth": 10}}
    assert record["masks"][0] == "lung"


def test_stage_zone_names_are_the_lung_zones():
    from radscl.extract.stage_radiomics import ZONE_MASKS
    from radscl.segmentation.zones import ZONE_NAMES

    assert ZONE_MASKS == tuple(f"zone_{zone}" for zone in ZONE_NAMES)
