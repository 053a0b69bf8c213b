"""Compare radscl's pyradiomics layer with the IBSI-1 reference values.

Runs IBSI configurations A-E (``params/ibsi/config_<X>.yaml``) through
:func:`radscl.extractors.radiomics.extract_radiomics` on the IBSI CT radiomics
phantom and checks every feature pyradiomics computes against the consensus
reference value and tolerance. Writes ``benchmarks/results/ibsi_check.md`` and
``.csv`` (one row per compared feature) and prints the summary.

Usage, from the project root::

    python -m benchmarks.ibsi_check [--data ../shared/data/ibsi] [--configs ABCDE]

``RADSCL_SHARED_DATA`` overrides the location of ``../shared/data``, as for the
tests.

The data (phantom and reference tables) are IBSI's, CC BY-NC 3.0, and are not
part of radscl; the script exits with a message when they are absent.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(
    os.environ.get("RADSCL_SHARED_DATA", ROOT.parent / "shared" / "data")
)
DEFAULT_DATA = SHARED_DATA / "ibsi"
RESULTS = ROOT / "benchmarks" / "results"

#: IBSI configurations whose texture is 2D in IBSI's sense; pyradiomics'
#: force2D matches IBSI's 2.5D aggregation for them.
TWO_D_CONFIGS = frozenset("AB")

# IBSI feature tag (without the aggregation suffix) -> pyradiomics feature
# name, and an offset added to pyradiomics' value (kurtosis: pyradiomics
# reports plain kurtosis, IBSI excess kurtosis). Only features pyradiomics
# computes are listed; IBSI features with no pyradiomics counterpart (local
# intensity, intensity-volume histogram, distance zones, most of the intensity
# histogram, several morphology features) are counted as "not computed".
_FIRST_ORDER = {
    "stat_mean": "firstorder_Mean",
    "stat_var": "firstorder_Variance",
    "stat_skew": "firstorder_Skewness",
    "stat_kurt": ("firstorder_Kurtosis", -3.0),
    "stat_median": "firstorder_Median",
    "stat_min": "firstorder_Minimum",
    "stat_p10": "firstorder_10Percentile",
    "stat_p90": "firstorder_90Percentile",
    "stat_max": "firstorder_Maximum",
    "stat_iqr": "firstorder_InterquartileRange",
    "stat_range": "firstorder_Range",
    "stat_mad": "firstorder_MeanAbsoluteDeviation",
    "stat_rmad": "firstorder_RobustMeanAbsoluteDeviation",
    "stat_energy": "firstorder_Energy",
    "stat_rms": "firstorder_RootMeanSquared",
    "ih_entropy": "firstorder_Entropy",
    "ih_uniformity": "firstorder_Uniformity",
}
_SHAPE = {
    "morph_volume": "shape_MeshVolume",
    "morph_vol_approx": "shape_VoxelVolume",
    "morph_area_mesh": "shape_SurfaceArea",
    "morph_av": "shape_SurfaceVolumeRatio",
    "morph_sphericity": "shape_Sphericity",
    "morph_diam": "shape_Maximum3DDiameter",
    "morph_pca_maj_axis": "shape_MajorAxisLength",
    "morph_pca_min_axis": "shape_MinorAxisLength",
    "morph_pca_least_axis": "shape_LeastAxisLength",
    "morph_pca_elongation": "shape_Elongation",
    "morph_pca_flatness": "shape_Flatness",
}
# IBSI defines sum variance as cluster tendency and dissimilarity as
# difference average; pyradiomics keeps one name for each pair.
_GLCM = {
    "joint_max": "MaximumProbability",
    "joint_avg": "JointAverage",
    "joint_var": "SumSquares",
    "joint_entr": "JointEntropy",
    "diff_avg": "DifferenceAverage",
    "diff_var": "DifferenceVariance",
    "diff_entr": "DifferenceEntropy",
    "sum_avg": "SumAverage",
    "sum_var": "ClusterTendency",
    "sum_entr": "SumEntropy",
    "energy": "JointEnergy",
    "contrast": "Contrast",
    "dissimilarity": "DifferenceAverage",
    "inv_diff": "Id",
    "inv_diff_norm": "Idn",
    "inv_diff_mom": "Idm",
    "inv_diff_mom_norm": "Idmn",
    "inv_var": "InverseVariance",
    "corr": "Correlation",
    "auto_corr": "Autocorrelation",
    "clust_tend": "ClusterTendency",
    "clust_shade": "ClusterShade",
    "clust_prom": "ClusterProminence",
    "info_corr1": "Imc1",
    "info_corr2": "Imc2",
}
_GLRLM = {
    "sre": "ShortRunEmphasis",
    "lre": "LongRunEmphasis",
    "lgre": "LowGrayLevelRunEmphasis",
    "hgre": "HighGrayLevelRunEmphasis",
    "srlge": "ShortRunLowGrayLevelEmphasis",
    "srhge": "ShortRunHighGrayLevelEmphasis",
    "lrlge": "LongRunLowGrayLevelEmphasis",
    "lrhge": "LongRunHighGrayLevelEmphasis",
    "glnu": "GrayLevelNonUniformity",
    "glnu_norm": "GrayLevelNonUniformityNormalized",
    "rlnu": "RunLengthNonUniformity",
    "rlnu_norm": "RunLengthNonUniformityNormalized",
    "r_perc": "RunPercentage",
    "gl_var": "GrayLevelVariance",
    "rl_var": "RunVariance",
    "rl_entr": "RunEntropy",
}
_GLSZM = {
    "sze": "SmallAreaEmphasis",
    "lze": "LargeAreaEmphasis",
    "lgze": "LowGrayLevelZoneEmphasis",
    "hgze": "HighGrayLevelZoneEmphasis",
    "szlge": "SmallAreaLowGrayLevelEmphasis",
    "szhge": "SmallAreaHighGrayLevelEmphasis",
    "lzlge": "LargeAreaLowGrayLevelEmphasis",
    "lzhge": "LargeAreaHighGrayLevelEmphasis",
    "glnu": "GrayLevelNonUniformity",
    "glnu_norm": "GrayLevelNonUniformityNormalized",
    "zsnu": "SizeZoneNonUniformity",
    "zsnu_norm": "SizeZoneNonUniformityNormalized",
    "z_perc": "ZonePercentage",
    "gl_var": "GrayLevelVariance",
    "zs_var": "ZoneVariance",
    "zs_entr": "ZoneEntropy",
}
_NGTDM = {
    "coarseness": "Coarseness",
    "contrast": "Contrast",
    "busyness": "Busyness",
    "complexity": "Complexity",
    "strength": "Strength",
}
# pyradiomics' GLDM with alpha 0 is IBSI's NGLDM with coarseness 0, distance 1
_GLDM = {
    "lde": "SmallDependenceEmphasis",
    "hde": "LargeDependenceEmphasis",
    "lgce": "LowGrayLevelEmphasis",
    "hgce": "HighGrayLevelEmphasis",
    "ldlge": "SmallDependenceLowGrayLevelEmphasis",
    "ldhge": "SmallDependenceHighGrayLevelEmphasis",
    "hdlge": "LargeDependenceLowGrayLevelEmphasis",
    "hdhge": "LargeDependenceHighGrayLevelEmphasis",
    "glnu": "GrayLevelNonUniformity",
    "dcnu": "DependenceNonUniformity",
    "dcnu_norm": "DependenceNonUniformityNormalized",
    "gl_var": "GrayLevelVariance",
    "dc_var": "DependenceVariance",
    "dc_entr": "DependenceEntropy",
}
_TEXTURE = {
    "cm": ("glcm", _GLCM, True),
    "rlm": ("glrlm", _GLRLM, True),
    "szm": ("glszm", _GLSZM, False),
    "ngt": ("ngtdm", _NGTDM, False),
    "ngl": ("gldm", _GLDM, False),
}


@dataclasses.dataclass(frozen=True)
class Mapping:
    """Where an IBSI feature is found in pyradiomics' output."""

    family: str
    pyradiomics: str
    offset: float = 0.0


def ibsi_to_pyradiomics(config: str) -> dict[str, Mapping]:
    """Map the IBSI tags of one configuration to pyradiomics feature names.

    Parameters
    ----------
    config : str
        ``"A"`` to ``"E"``.

    Returns
    -------
    dict
        IBSI tag (e.g. ``cm_contrast_3D_avg``) to :class:`Mapping`. Texture
        tags carry IBSI's aggregation: 2.5D direction-merged for A and B
        (pyradiomics' ``force2D``), 3D averaged for C to E.
    """
    mapping: dict[str, Mapping] = {}
    for tag, target in _FIRST_ORDER.items():
        name, offset = target if isinstance(target, tuple) else (target, 0.0)
        family = "statistics" if tag.startswith("stat_") else "intensity histogram"
        mapping[tag] = Mapping(family, f"original_{name}", offset)
    for tag, name in _SHAPE.items():
        mapping[tag] = Mapping("morphology", f"original_{name}")

    dimension = "2_5D" if config in TWO_D_CONFIGS else "3D"
    for prefix, (feature_class, names, averaged) in _TEXTURE.items():
        suffix = f"_{dimension}_avg" if averaged else f"_{dimension}"
        for ibsi_name, name in names.items():
            mapping[f"{prefix}_{ibsi_name}{suffix}"] = Mapping(
                feature_class, f"original_{feature_class}_{name}"
            )
    return mapping


def load_phantom(data: Path):
    """Load the IBSI CT phantom as a radscl Scan and its tumour mask.

    Returns
    -------
    tuple of (radscl.io.Scan, numpy.ndarray)
    """
    from radscl.io import Scan
    from radscl.io import ScanMetadata

    image = sitk.ReadImage(str(data / "ct_phantom" / "image.nii.gz"))
    mask = sitk.ReadImage(str(data / "ct_phantom" / "mask.nii.gz"))
    hounsfield = np.rint(sitk.GetArrayFromImage(image)).astype(np.int16)
    spacing_zyx = tuple(float(s) for s in reversed(image.GetSpacing()))
    origin = tuple(float(o) for o in image.GetOrigin())
    slice_positions = origin[2] + spacing_zyx[0] * np.arange(hounsfield.shape[0])
    metadata = ScanMetadata(
        source_format="nifti",
        shape=hounsfield.shape,
        spacing_mm=spacing_zyx,
        slice_thickness_mm=spacing_zyx[0],
        slice_interval_mm=spacing_zyx[0],
        contiguous=True,
    )
    scan = Scan(
        hounsfield=hounsfield,
        spacing_mm=spacing_zyx,
        origin_mm=origin,
        direction=tuple(float(d) for d in image.GetDirection()),
        slice_positions_mm=slice_positions,
        metadata=metadata,
        quality=[],
        source="ibsi_ct_phantom",
    )
    return scan, sitk.GetArrayFromImage(mask) > 0


#: IBSI interpolation of each configuration: target spacing (x, y, z; None
#: keeps the axis) and the SimpleITK interpolator for the image.
_IBSI_INTERPOLATION = {
    "B": ((2.0, 2.0, None), sitk.sitkLinear),
    "C": ((2.0, 2.0, 2.0), sitk.sitkLinear),
    "D": ((2.0, 2.0, 2.0), sitk.sitkLinear),
    "E": ((2.0, 2.0, 2.0), sitk.sitkBSpline),
}


def ibsi_interpolate(scan, mask: np.ndarray, config: str):
    """Interpolate the phantom as IBSI does, for configurations B to E.

    The new grid is centred on the old one, CT numbers are rounded to
    integers, and the mask is interpolated linearly and kept where it reaches
    0.5. pyradiomics instead anchors the grid at the image corner, keeps
    interpolated values as they are and interpolates the mask by nearest
    neighbour.

    Returns
    -------
    tuple of (radscl.io.Scan, numpy.ndarray)
    """
    spacing_xyz, interpolator = _IBSI_INTERPOLATION[config]
    image = sitk.GetImageFromArray(scan.hounsfield.astype(np.float32))
    image.SetSpacing(tuple(reversed(scan.spacing_mm)))
    image.SetOrigin(scan.origin_mm)
    old_spacing = np.asarray(image.GetSpacing())
    old_size = np.asarray(image.GetSize())
    new_spacing = np.asarray(
        [
            old if new is None else new
            for old, new in zip(old_spacing, spacing_xyz, strict=True)
        ]
    )
    new_size = np.ceil(old_size * old_spacing / new_spacing).astype(int)
    shift = (old_spacing * (old_size - 1) - new_spacing * (new_size - 1)) / 2.0
    new_origin = np.asarray(image.GetOrigin()) + shift

    def resample(source: sitk.Image, method: int) -> np.ndarray:
        resampled = sitk.Resample(
            source,
            [int(n) for n in new_size],
            sitk.Transform(),
            method,
            new_origin.tolist(),
            new_spacing.tolist(),
            image.GetDirection(),
            -1000.0,
            sitk.sitkFloat32,
        )
        return sitk.GetArrayFromImage(resampled)

    hounsfield = np.rint(resample(image, interpolator)).astype(np.int16)
    mask_image = sitk.GetImageFromArray(mask.astype(np.float32))
    mask_image.CopyInformation(image)
    mask_image.SetOrigin(image.GetOrigin())
    new_mask = resample(mask_image, sitk.sitkLinear) >= 0.5

    spacing_zyx = tuple(float(s) for s in reversed(new_spacing))
    resampled_scan = dataclasses.replace(
        scan,
        hounsfield=hounsfield,
        spacing_mm=spacing_zyx,
        origin_mm=tuple(float(o) for o in new_origin),
        slice_positions_mm=new_origin[2]
        + spacing_zyx[0] * np.arange(hounsfield.shape[0]),
    )
    return resampled_scan, new_mask


def reference(data: Path, config: str) -> pd.DataFrame:
    """IBSI reference values of one configuration, standardised features only."""
    table = pd.read_csv(
        data / f"ibsi_1_reference_values_config_{config}.csv", encoding="utf-8-sig"
    )
    table = table[~table["family"].str.startswith("Diagnostics")]
    table = table.dropna(subset=["reference value", "tolerance"])
    table = table.rename(columns={"reference value": "reference"})
    return table[["family", "feature", "consensus", "reference", "tolerance", "tag"]]


def extract(
    data: Path, config: str, ibsi_interpolation: bool = False
) -> dict[str, float]:
    """pyradiomics features of the IBSI phantom for one configuration.

    With ``ibsi_interpolation`` the phantom is first interpolated as IBSI
    prescribes (:func:`ibsi_interpolate`) and pyradiomics' own resampling is
    switched off, which separates differences of interpolation from
    differences of feature definitions.
    """
    from radscl.extractors.radiomics import extract_radiomics
    from radscl.extractors.radiomics import load_params

    scan, mask = load_phantom(data)
    params = load_params(ROOT / "params" / "ibsi" / f"config_{config}.yaml")
    if ibsi_interpolation and config in _IBSI_INTERPOLATION:
        scan, mask = ibsi_interpolate(scan, mask, config)
        params["setting"].pop("resampledPixelSpacing", None)
        params["setting"].pop("interpolator", None)
    features = extract_radiomics(scan, {"roi": mask}, params, case_id="ibsi_ct_phantom")
    prefix = "rad_roi_"
    return {name[len(prefix) :]: value for name, value in features.items()}


AS_CONFIGURED = "pyradiomics resampling"
IBSI_RESAMPLED = "IBSI interpolation first"


def compare(
    features: dict[str, float],
    table: pd.DataFrame,
    config: str,
    variant: str = AS_CONFIGURED,
) -> pd.DataFrame:
    """One row per IBSI feature: reference, tolerance, pyradiomics value, verdict.

    ``within`` is True or False for features pyradiomics computes and missing
    (NA) for the others.
    """
    mapping = ibsi_to_pyradiomics(config)
    rows = []
    for record in table.itertuples(index=False):
        target = mapping.get(record.tag)
        computed = target is not None and target.pyradiomics in features
        value = features[target.pyradiomics] + target.offset if computed else np.nan
        reference_value = float(record.reference)
        tolerance = float(record.tolerance)
        rows.append(
            {
                "config": config,
                "variant": variant,
                "tag": record.tag,
                "ibsi_family": record.family,
                "feature": record.feature,
                "family": target.family if computed else None,
                "pyradiomics": target.pyradiomics if computed else None,
                "reference": reference_value,
                "tolerance": tolerance,
                "value": value,
                "within": (
                    bool(abs(value - reference_value) <= tolerance)
                    if computed
                    else pd.NA
                ),
            }
        )
    return pd.DataFrame(rows)


def summarise(comparison: pd.DataFrame) -> pd.DataFrame:
    """Share of computed features within tolerance, per configuration and family."""
    keys = ["config", "variant"]
    computed = comparison[comparison["pyradiomics"].notna()].copy()
    computed["within"] = computed["within"].astype(bool)
    by_family = (
        computed.groupby([*keys, "family"])["within"]
        .agg(within="sum", compared="count")
        .reset_index()
    )
    overall = computed.groupby(keys)["within"].agg(within="sum", compared="count")
    overall = overall.reset_index().assign(family="all computed")
    missing = (
        comparison["pyradiomics"].isna().groupby([comparison[k] for k in keys]).sum()
    )
    overall = overall.merge(missing.rename("not_computed").reset_index(), on=keys)
    summary = pd.concat([overall, by_family], ignore_index=True)
    summary["share_pct"] = 100.0 * summary["within"] / summary["compared"]
    return summary.sort_values(keys, kind="stable").reset_index(drop=True)


def _markdown(summary: pd.DataFrame, comparison: pd.DataFrame) -> str:
    lines = [
        "# IBSI-1 check: pyradiomics through radscl on the IBSI CT phantom",
        "",
        "Share of the IBSI reference features that pyradiomics computes and that lie",
        "within the IBSI tolerance, per configuration (params/ibsi/config_X.yaml).",
        f"'{AS_CONFIGURED}': the parameter file as it is. '{IBSI_RESAMPLED}': the",
        "phantom is interpolated as IBSI prescribes (centred grid, rounded CT numbers,",
        "linear mask interpolation kept at 0.5) and pyradiomics does not resample.",
        "Produced by `python -m benchmarks.ibsi_check`.",
        "",
        "| config | variant | family | within | compared | share (%) | not computed |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for row in summary.itertuples(index=False):
        missing = "" if pd.isna(row.not_computed) else str(int(row.not_computed))
        lines.append(
            f"| {row.config} | {row.variant} | {row.family} | {int(row.within)} | "
            f"{int(row.compared)} | {row.share_pct:.0f} | {missing} |"
        )
    outside = comparison[comparison["within"].eq(False)]
    lines += [
        "",
        "## Outside tolerance",
        "",
        "| config | variant | IBSI tag | reference | tolerance | pyradiomics |",
        "|---|---|---|---:|---:|---:|",
    ]
    for row in outside.itertuples(index=False):
        lines.append(
            f"| {row.config} | {row.variant} | {row.tag} | {row.reference:.4g} | "
            f"{row.tolerance:.3g} | {row.value:.4g} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the check and write the results; 0 on success, 2 without data."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--configs", default="ABCDE")
    args = parser.parse_args(argv)

    if not (args.data / "ct_phantom" / "image.nii.gz").is_file():
        print(f"{args.data}: IBSI phantom not found", file=sys.stderr)
        return 2

    comparisons = []
    for config in args.configs:
        table = reference(args.data, config)
        comparisons.append(compare(extract(args.data, config), table, config))
        if config in _IBSI_INTERPOLATION:
            features = extract(args.data, config, ibsi_interpolation=True)
            comparisons.append(compare(features, table, config, IBSI_RESAMPLED))
    comparison = pd.concat(comparisons, ignore_index=True)
    summary = summarise(comparison)

    RESULTS.mkdir(exist_ok=True)
    # IBSI's reference values stay in IBSI's tables; only ours are written
    ours = ["config", "variant", "tag", "pyradiomics", "value", "within"]
    comparison.loc[comparison["pyradiomics"].notna(), ours].to_csv(
        RESULTS / "ibsi_check.csv", index=False
    )
    markdown = _markdown(summary, comparison)
    (RESULTS / "ibsi_check.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
