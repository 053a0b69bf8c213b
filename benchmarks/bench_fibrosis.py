"""Fibrosis extent and lung density on the full-size chest phantom.

Rows (each in a fresh process, see benchmarks/harness.py):

- loading the inputs alone, the floor under every peak-memory figure;
- radscl's :func:`~radscl.extractors.fibrosis.fibrosis_features` with the
  default rules: pattern classification of the parenchyma, pattern extents
  and density features, whole lung and five zones (what the fibrosis stage
  does per scan); the issue asks for <= 10 s and <= 3 GB on 2 cores;
- radscl's density features alone, whole lung and five zones;
- the reference for the density features: numpy and scipy on the same
  whole-lung voxels (``np.percentile``, ``scipy.stats.skew`` and
  ``kurtosis``, HAA and LAA fractions), whole lung only;
- pyradiomics' first-order class on the same whole-lung mask (native grid,
  bin width 25), the tool most studies use for histogram features.

The masks are the phantom's truth (lung, parenchyma = lung minus airways and
vessels, vessels), so segmentation time counts in nobody's row. radscl's rows
are the median of three runs. The one-minute load average says how busy the
shared machine was.

Usage, from the project root::

    python -m benchmarks.bench_fibrosis
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import numpy as np

from benchmarks.harness import measure
from benchmarks.harness import write_results

OUT = Path(__file__).resolve().parent / "out" / "fibrosis"
FIBROSIS_PCT = 25.0
ZONES = ("upper", "middle", "lower", "rind", "core")


def prepare() -> dict:
    """Draw the phantom once and save its image and masks for the children."""
    from radscl.phantom import make_phantom
    from radscl.segmentation.zones import lung_zones

    OUT.mkdir(parents=True, exist_ok=True)
    phantom = make_phantom("full", seed=0, fibrosis_pct=FIBROSIS_PCT)
    lung = (phantom.lungs == 1) | (phantom.lungs == 2)
    zones = lung_zones(
        phantom.lungs, phantom.spacing_mm, phantom.slice_positions_mm, contiguous=True
    )
    np.save(OUT / "hounsfield.npy", phantom.hounsfield)
    np.save(OUT / "lung.npy", lung)
    np.save(OUT / "parenchyma.npy", lung & np.isin(phantom.labels, (1, 5, 6, 7, 8)))
    np.save(OUT / "vessel.npy", lung & (phantom.labels == 4))
    np.save(OUT / "spacing.npy", np.asarray(phantom.spacing_mm))
    np.save(OUT / "positions.npy", np.asarray(phantom.slice_positions_mm))
    for zone in ZONES:
        np.save(OUT / f"zone_{zone}.npy", zones[zone])
    return {
        "shape": phantom.hounsfield.shape,
        "truth_extent_pct": phantom.truth["fibrosis_extent_pct"],
    }


def load_inputs():
    """Child-side setup: the scan and its masks."""
    from radscl.io import Scan
    from radscl.io import ScanMetadata

    logging.disable(logging.WARNING)
    hounsfield = np.load(OUT / "hounsfield.npy")
    spacing = tuple(float(v) for v in np.load(OUT / "spacing.npy"))
    metadata = ScanMetadata(
        source_format="phantom",
        shape=hounsfield.shape,
        spacing_mm=spacing,
        slice_thickness_mm=spacing[0],
        slice_interval_mm=spacing[0],
        contiguous=True,
        modality="CT",
        kernel="B30f",
    )
    scan = Scan(
        hounsfield=hounsfield,
        spacing_mm=spacing,
        origin_mm=(0.0, 0.0, 0.0),
        direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
        slice_positions_mm=np.load(OUT / "positions.npy"),
        metadata=metadata,
        quality=[],
        source="phantom",
    )
    masks = {
        name: np.load(OUT / f"{name}.npy") for name in ("lung", "parenchyma", "vessel")
    }
    masks["zones"] = {zone: np.load(OUT / f"zone_{zone}.npy") for zone in ZONES}
    return scan, masks


def _load() -> dict:
    return {"load_1min": round(os.getloadavg()[0], 2)}


def inputs_only(scan, masks) -> dict:
    return {"lung_voxels": int(masks["lung"].sum()), **_load()}


def radscl_fibrosis(scan, masks) -> dict:
    from radscl.extractors.fibrosis import fibrosis_features

    result = fibrosis_features(
        scan,
        masks["lung"],
        masks["parenchyma"],
        zones=masks["zones"],
        vessel_mask=masks["vessel"],
    )
    features = result.features
    return {
        "fibrosis_extent_pct": round(features["fibrosis_extent_pct"], 2),
        "haa_pct": round(features["haa_pct"], 3),
        "hist_kurtosis": round(features["hist_kurtosis"], 4),
        "columns": len(features),
        **_load(),
    }


def radscl_density(scan, masks) -> dict:
    from radscl.extractors.density import density_features

    features = density_features(scan.hounsfield, masks["lung"], zones=masks["zones"])
    return {
        "haa_pct": round(features["haa_pct"], 3),
        "hist_skewness": round(features["hist_skewness"], 4),
        "hist_kurtosis": round(features["hist_kurtosis"], 4),
        "hist_p50_hu": features["hist_p50_hu"],
        "columns": len(features),
        **_load(),
    }


def numpy_density(scan, masks) -> dict:
    from scipy import stats

    values = scan.hounsfield[masks["lung"]].astype(np.float64)
    haa = 100.0 * np.count_nonzero((values >= -600) & (values <= -250)) / values.size
    laa = 100.0 * np.count_nonzero(values < -950) / values.size
    mean = values.mean()
    percentiles = np.percentile(values, (10, 25, 40, 50, 75, 90))
    skewness = stats.skew(values)
    kurtosis = stats.kurtosis(values)
    return {
        "haa_pct": round(haa, 3),
        "laa950_pct": round(laa, 3),
        "mld_hu": round(float(mean), 2),
        "hist_skewness": round(float(skewness), 4),
        "hist_kurtosis": round(float(kurtosis), 4),
        "hist_p50_hu": float(percentiles[3]),
        **_load(),
    }


def pyradiomics_firstorder(scan, masks) -> dict:
    import SimpleITK as sitk
    from radiomics import featureextractor

    logging.getLogger("radiomics").setLevel(logging.ERROR)
    image = sitk.GetImageFromArray(scan.hounsfield)
    image.SetSpacing(scan.spacing_mm[::-1])
    mask = sitk.GetImageFromArray(masks["lung"].astype(np.uint8))
    mask.CopyInformation(image)
    extractor = featureextractor.RadiomicsFeatureExtractor(binWidth=25)
    extractor.disableAllFeatures()
    extractor.enableFeatureClassByName("firstorder")
    result = extractor.execute(image, mask)
    return {
        "mean_hu": round(float(result["original_firstorder_Mean"]), 2),
        "skewness": round(float(result["original_firstorder_Skewness"]), 4),
        "kurtosis_pearson": round(float(result["original_firstorder_Kurtosis"]), 4),
        **_load(),
    }


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    facts = prepare()
    rows = [
        measure("load inputs", "numpy", inputs_only, setup=load_inputs),
        measure(
            "patterns + extents + density, whole lung and 5 zones",
            "radscl fibrosis_features (default rules)",
            radscl_fibrosis,
            setup=load_inputs,
            repeat=3,
        ),
        measure(
            "density features, whole lung and 5 zones",
            "radscl density_features",
            radscl_density,
            setup=load_inputs,
            repeat=3,
        ),
        measure(
            "density features, whole lung",
            "numpy + scipy.stats",
            numpy_density,
            setup=load_inputs,
        ),
    ]
    try:
        import radiomics  # noqa: F401

        rows.append(
            measure(
                "first-order histogram, whole lung",
                "pyradiomics firstorder (native grid, bin width 25)",
                pyradiomics_firstorder,
                setup=load_inputs,
            )
        )
    except ImportError:
        logging.info("pyradiomics is not installed; its row is left out")
    path = write_results("fibrosis", rows)
    with path.open("a") as handle:
        handle.write(
            f"\nInputs: radscl.phantom.make_phantom('full', seed=0, "
            f"fibrosis_pct={FIBROSIS_PCT:g}), shape {facts['shape']}, truth masks; "
            f"true fibrosis extent {facts['truth_extent_pct']:.2f} %.\n"
            "pyradiomics' Kurtosis is Pearson's (normal = 3); radscl's "
            "hist_kurtosis is excess kurtosis (normal = 0).\n"
        )
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
