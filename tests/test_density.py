"""Density features against hand-computed values and scipy's moments."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from radscl.errors import ParameterError
from radscl.extractors.density import density_features
from radscl.extractors.density import slice_weights
from radscl.extractors.density import zone_feature_name


def _volume(values: np.ndarray, shape=(4, 6, 7), seed: int = 0):
    """Place ``values`` at random voxels of an otherwise soft-tissue volume."""
    rng = np.random.default_rng(seed)
    hounsfield = np.full(shape, 40, np.int16)
    flat = rng.choice(hounsfield.size, values.size, replace=False)
    hounsfield.ravel()[flat] = values
    mask = np.zeros(shape, bool)
    mask.ravel()[flat] = True
    return hounsfield, mask


def test_band_edges_counted_as_published():
    # HAA is [-600, -250] inclusive; LAA counts voxels strictly below -950.
    values = np.array([-1000, -951, -950, -601, -600, -400, -250, -249, -850, -860])
    hounsfield, mask = _volume(values)

    features = density_features(hounsfield, mask)

    assert features["haa_pct"] == pytest.approx(30.0)  # -600, -400, -250
    assert features["laa950_pct"] == pytest.approx(20.0)  # -1000, -951
    assert features["mld_hu"] == pytest.approx(values.mean())


def test_histogram_moments_match_scipy_and_numpy():
    rng = np.random.default_rng(3)
    values = np.concatenate(
        [
            rng.normal(-850, 40, 3000),
            rng.normal(-650, 80, 600),
            rng.normal(-300, 60, 90),
        ]
    ).round()
    hounsfield, mask = _volume(values.astype(np.int16), shape=(10, 30, 30), seed=1)

    features = density_features(hounsfield, mask)

    assert features["hist_skewness"] == pytest.approx(stats.skew(values), rel=1e-9)
    # Excess (Fisher) kurtosis with population moments: scipy's defaults.
    assert features["hist_kurtosis"] == pytest.approx(
        stats.kurtosis(values, fisher=True, bias=True), rel=1e-9
    )
    for q in (10, 25, 40, 50, 75, 90):
        assert features[f"hist_p{q}_hu"] == pytest.approx(np.percentile(values, q))
    assert features["mld_hu"] == pytest.approx(values.mean())


def test_normal_sample_has_zero_excess_kurtosis():
    values = stats.norm.ppf(
        np.linspace(0.0005, 0.9995, 4000), loc=-800, scale=60
    ).round()
    hounsfield, mask = _volume(values.astype(np.int16), shape=(10, 30, 30))

    features = density_features(hounsfield, mask)

    assert abs(features["hist_kurtosis"]) < 0.1
    assert abs(features["hist_skewness"]) < 0.01


def test_slice_weights_from_positions():
    assert slice_weights(np.array([0.0, 2.0, 12.0, 14.0]), 4).tolist() == [2, 6, 6, 2]
    assert slice_weights(np.array([0.0, 10.0, 20.0]), 3).tolist() == [10, 10, 10]
    assert slice_weights(None, 3).tolist() == [1, 1, 1]
    with pytest.raises(ParameterError, match="one position per slice"):
        slice_weights(np.array([0.0, 1.0]), 3)


def test_gapped_slices_weigh_by_the_lung_they_stand_for():
    # Slices at 0, 2, 12, 14 mm stand for 2, 6, 6 and 2 mm of lung: the result
    # must equal plain statistics of the voxels repeated 2, 6, 6 and 2 times.
    rng = np.random.default_rng(7)
    hounsfield = rng.normal(-820, 120, (4, 20, 20)).round().astype(np.int16)
    hounsfield[1] += 150  # the heavy slices are denser
    mask = rng.random((4, 20, 20)) < 0.7
    positions = np.array([0.0, 2.0, 12.0, 14.0])
    repeated = np.concatenate(
        [np.repeat(hounsfield[z][mask[z]], n) for z, n in enumerate((2, 6, 6, 2))]
    ).astype(np.float64)

    weighted = density_features(hounsfield, mask, slice_positions_mm=positions)
    plain = density_features(hounsfield, mask)

    assert weighted["mld_hu"] == pytest.approx(repeated.mean())
    in_band = (repeated >= -600) & (repeated <= -250)
    assert weighted["haa_pct"] == pytest.approx(100 * in_band.mean())
    assert weighted["laa950_pct"] == pytest.approx(100 * (repeated < -950).mean())
    assert weighted["hist_skewness"] == pytest.approx(stats.skew(repeated))
    assert weighted["hist_kurtosis"] == pytest.approx(stats.kurtosis(repeated))
    for q in (10, 50, 90):
        expected = np.percentile(repeated, q, method="inverted_cdf")
        assert weighted[f"hist_p{q}_hu"] == pytest.approx(expected)
    # Unweighted counts would give the dense slice less say.
    assert weighted["mld_hu"] - plain["mld_hu"] > 10


def test_zones_named_before_the_unit_and_measured_on_the_zone():
    rng = np.random.default_rng(2)
    hounsfield = rng.normal(-800, 150, (6, 20, 20)).round().astype(np.int16)
    lung = np.ones(hounsfield.shape, bool)
    lower = np.zeros(hounsfield.shape, bool)
    lower[4:] = True

    features = density_features(hounsfield, lung, zones={"lower": lower})

    values = hounsfield[4:].astype(float).ravel()
    in_band = (values >= -600) & (values <= -250)
    assert features["haa_lower_pct"] == pytest.approx(100 * in_band.mean())
    assert features["mld_lower_hu"] == pytest.approx(values.mean())
    assert features["hist_kurtosis_lower"] == pytest.approx(stats.kurtosis(values))
    assert features["hist_p25_lower_hu"] == pytest.approx(np.percentile(values, 25))
    assert zone_feature_name("laa950_pct", "rind") == "laa950_rind_pct"


def test_empty_mask_gives_nan_and_bad_input_is_refused():
    hounsfield = np.zeros((2, 3, 3), np.int16)
    features = density_features(hounsfield, np.zeros((2, 3, 3), bool))
    assert np.isnan(features["haa_pct"]) and np.isnan(features["hist_kurtosis"])

    with pytest.raises(ParameterError, match="lung_mask has shape"):
        density_features(hounsfield, np.zeros((2, 3), bool))
    with pytest.raises(ParameterError, match="zone names"):
        density_features(
            hounsfield, hounsfield < 1, zones={"Lower Zone": hounsfield < 1}
        )


def test_phantom_density_rises_with_fibrosis(phantom_factory):
    values = {}
    for fibrosis in (0.0, 40.0):
        phantom = phantom_factory("small", seed=0, fibrosis_pct=fibrosis)
        lung = (phantom.lungs == 1) | (phantom.lungs == 2)
        values[fibrosis] = density_features(phantom.hounsfield, lung)
        expected = phantom.hounsfield[lung].astype(float)
        assert values[fibrosis]["mld_hu"] == pytest.approx(expected.mean())

    # Normal phantom lung is drawn at -860 HU; the healthy HAA reference of
    # Easthausen et al. is a few percent (vessel partial volume).
    assert -880 < values[0.0]["mld_hu"] < -780
    assert 1.0 < values[0.0]["haa_pct"] < 8.0
    assert values[40.0]["haa_pct"] > values[0.0]["haa_pct"] + 4.0
    assert values[40.0]["mld_hu"] > values[0.0]["mld_hu"] + 50.0
    # Healthy lung is a narrow peak with a long right tail (vessels); fibrosis
    # fills that tail into a second mode, so skewness and kurtosis fall.
    assert values[40.0]["hist_skewness"] < values[0.0]["hist_skewness"]
    assert values[40.0]["hist_kurtosis"] < values[0.0]["hist_kurtosis"]
