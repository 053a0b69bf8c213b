"""Whole-lung radiomics: radscl's default lung configuration against pyradiomics'
defaults, on the full-size chest phantom, in one run.

Rows (each in a fresh process, see benchmarks/harness.py):

- pyradiomics' defaults: ``RadiomicsFeatureExtractor()`` with its default
  classes except shape (first order and the five texture classes), native
  grid, bin width 25, on the whole-lung mask;
- radscl's default configuration (params/radiomics_lung.yaml) through
  :func:`radscl.extractors.radiomics.extract_radiomics`, same mask;
- the same configuration without its 2 mm resampling, to show what the
  resampling buys;
- radscl's configuration on all six regions of a scan (whole lung,
  parenchyma, three zones, fibrotic region), the cost per scan in practice;
- pyradiomics' shape class alone on the lower zone (a third of the lung),
  the reason radscl's default leaves shape out;
- loading the inputs alone, the floor under every peak-memory figure.

radscl's rows are the median of three runs; the slow rows run once. The
one-minute load average at the end of each row says how busy the shared
machine was.

The phantom is drawn once, saved under benchmarks/out/ and loaded by each
child, so that drawing it counts in nobody's time or memory.

Usage, from the project root::

    python -m benchmarks.bench_radiomics [--synthetic]

``--synthetic`` uses a textured 512 x 512 x 300 lung-like volume built here
instead of ``radscl.phantom.make_phantom`` (used automatically when the
phantom generator is not available).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import numpy as np

from benchmarks.harness import measure
from benchmarks.harness import write_results

OUT = Path(__file__).resolve().parent / "out" / "radiomics"


# --- inputs ----------------------------------------------------------------------


def _phantom_inputs() -> dict[str, np.ndarray]:
    from radscl.phantom import make_phantom

    phantom = make_phantom(size="full", seed=0, fibrosis_pct=10)
    scan = phantom.to_scan()
    lungs = np.asarray(phantom.lungs)
    labels = np.asarray(phantom.labels)
    whole_lung = np.isin(lungs, (1, 2))
    return {
        "hounsfield": scan.hounsfield,
        "spacing_mm": np.asarray(scan.spacing_mm, dtype=float),
        "origin_mm": np.asarray(scan.origin_mm, dtype=float),
        "direction": np.asarray(scan.direction, dtype=float),
        "whole_lung": whole_lung,
        "parenchyma": whole_lung & np.isin(labels, (1, 5, 6, 7, 8)),
        "fibrotic": whole_lung & np.isin(labels, (5, 6, 7)),
    }


def _synthetic_inputs(seed: int = 0) -> dict[str, np.ndarray]:
    """A chest-sized volume whose lungs span realistic grey levels."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    shape = (300, 512, 512)
    spacing_mm = np.array([1.0, 0.7, 0.7])
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]

    body = np.broadcast_to(
        ((y - 256) / 190.0) ** 2 + ((x - 256) / 240.0) ** 2 < 1, shape
    )
    lungs = np.zeros(shape, dtype=bool)
    for centre in (150.0, 362.0):
        lungs |= ((x - centre) / 85.0) ** 2 + ((y - 250) / 140.0) ** 2 + (
            (z - 150) / 145.0
        ) ** 2 < 1

    def smooth_noise(sigma: float) -> np.ndarray:
        field = ndimage.gaussian_filter(
            rng.standard_normal(shape, dtype=np.float32), sigma
        )
        return field / field.std()

    hounsfield = np.where(body, 40.0, -1000.0).astype(np.float32)
    hounsfield[lungs] = -860.0 + 35.0 * smooth_noise(1.5)[lungs]
    vessels = lungs & (smooth_noise(2.5) > 2.3)
    hounsfield[vessels] = 40.0
    patches = lungs & (smooth_noise(8.0) > 1.1) & (z < 150)
    reticulation = patches & (smooth_noise(1.0) > 0.3)
    hounsfield[patches] = -650.0
    hounsfield[reticulation] = -150.0
    hounsfield += rng.normal(0.0, 25.0, size=shape).astype(np.float32)
    return {
        "hounsfield": np.clip(hounsfield, -1024, 3071).astype(np.int16),
        "spacing_mm": spacing_mm,
        "origin_mm": np.array([-179.0, -179.0, -300.0]),
        "direction": np.eye(3).ravel(),
        "whole_lung": lungs,
        "parenchyma": lungs & ~vessels,
        "fibrotic": patches,
    }


def prepare(synthetic: bool) -> str:
    """Draw the inputs once and save them; return a description."""
    OUT.mkdir(parents=True, exist_ok=True)
    source = "synthetic lung-like volume"
    inputs = None
    if not synthetic:
        try:
            inputs = _phantom_inputs()
            source = "radscl.phantom.make_phantom(size='full', seed=0, fibrosis_pct=10)"
        except ImportError:
            inputs = None
    if inputs is None:
        inputs = _synthetic_inputs()
    for name, array in inputs.items():
        np.save(OUT / f"{name}.npy", array)
    (OUT / "source.txt").write_text(source)
    return source


def load_inputs():
    """Child-side setup: the scan and its regions, loaded from benchmarks/out."""
    from radscl.io import Scan
    from radscl.io import ScanMetadata

    arrays = {path.stem: np.load(path) for path in OUT.glob("*.npy")}
    hounsfield = arrays["hounsfield"]
    spacing = tuple(float(s) for s in arrays["spacing_mm"])
    origin = tuple(float(o) for o in arrays["origin_mm"])
    metadata = ScanMetadata(
        source_format="nifti",
        shape=hounsfield.shape,
        spacing_mm=spacing,
        slice_thickness_mm=spacing[0],
        slice_interval_mm=spacing[0],
        contiguous=True,
    )
    scan = Scan(
        hounsfield=hounsfield,
        spacing_mm=spacing,
        origin_mm=origin,
        direction=tuple(float(d) for d in arrays["direction"]),
        slice_positions_mm=origin[2] + spacing[0] * np.arange(hounsfield.shape[0]),
        metadata=metadata,
        quality=[],
        source="phantom",
    )
    whole_lung = arrays["whole_lung"]
    masks = {
        "whole_lung": whole_lung,
        "parenchyma": arrays["parenchyma"],
        "fibrotic": arrays["fibrotic"],
    }
    # zones: thirds of the lung's craniocaudal extent
    slices = np.flatnonzero(whole_lung.any(axis=(1, 2)))
    edges = np.linspace(slices[0], slices[-1] + 1, 4).round().astype(int)
    for name, low, high in zip(
        ("lower", "middle", "upper"), edges[:-1], edges[1:], strict=True
    ):
        zone = np.zeros_like(whole_lung)
        zone[low:high] = whole_lung[low:high]
        masks[f"zone_{name}"] = zone
    return scan, masks


# --- stages ------------------------------------------------------------------------


def _quiet() -> None:
    logging.getLogger("radiomics").setLevel(logging.ERROR)


def inputs_only(scan, masks) -> dict:
    return {"lung_voxels": int(masks["whole_lung"].sum()), **_load()}


def _load() -> dict:
    # the machine is shared; the load average says how contended a run was
    return {"load_1min": round(os.getloadavg()[0], 2)}


def pyradiomics_defaults(scan, masks) -> dict:
    import radiomics
    import SimpleITK as sitk
    from radiomics import featureextractor

    radiomics.setVerbosity(logging.ERROR)
    _quiet()
    image = sitk.GetImageFromArray(scan.hounsfield)
    image.SetSpacing(tuple(reversed(scan.spacing_mm)))
    image.SetOrigin(scan.origin_mm)
    image.SetDirection(scan.direction)
    mask = sitk.GetImageFromArray(masks["whole_lung"].astype(np.uint8))
    mask.CopyInformation(image)

    extractor = featureextractor.RadiomicsFeatureExtractor()
    extractor.enableFeatureClassByName("shape", enabled=False)
    result = extractor.execute(image, mask)
    features = [k for k in result if not k.startswith("diagnostics_")]
    return {"features": len(features), "grey_levels": _grey_levels(result), **_load()}


def _grey_levels(result) -> int:
    # bins of width 25 between the region's extremes
    low = float(result["original_firstorder_Minimum"])
    high = float(result["original_firstorder_Maximum"])
    return int(np.floor(high / 25) - np.floor(low / 25) + 1)


def pyradiomics_shape_lower_zone(scan, masks) -> dict:
    import radiomics
    import SimpleITK as sitk
    from radiomics import featureextractor

    radiomics.setVerbosity(logging.ERROR)
    _quiet()
    image = sitk.GetImageFromArray(scan.hounsfield)
    image.SetSpacing(tuple(reversed(scan.spacing_mm)))
    image.SetOrigin(scan.origin_mm)
    mask = sitk.GetImageFromArray(masks["zone_lower"].astype(np.uint8))
    mask.CopyInformation(image)

    extractor = featureextractor.RadiomicsFeatureExtractor(additionalInfo=False)
    extractor.disableAllFeatures()
    extractor.enableFeatureClassByName("shape")
    result = extractor.execute(image, mask)
    return {
        "zone_voxels": int(masks["zone_lower"].sum()),
        "features": len(result),
        **_load(),
    }


def radscl_default(scan, masks) -> dict:
    from radscl.extractors.radiomics import extract_radiomics

    _quiet()
    features = extract_radiomics(scan, {"whole_lung": masks["whole_lung"]})
    return {"features": len(features), **_load()}


def radscl_native_grid(scan, masks) -> dict:
    from radscl.extractors.radiomics import extract_radiomics
    from radscl.extractors.radiomics import load_params

    _quiet()
    params = load_params()
    params["setting"].pop("resampledPixelSpacing")
    params["setting"].pop("interpolator")
    features = extract_radiomics(scan, {"whole_lung": masks["whole_lung"]}, params)
    return {"features": len(features), **_load()}


def radscl_all_regions(scan, masks) -> dict:
    from radscl.extractors.radiomics import extract_radiomics

    _quiet()
    features = extract_radiomics(scan, masks)
    empty = sum(1 for v in features.values() if v != v)
    return {"regions": len(masks), "features": len(features), "nan": empty, **_load()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", action="store_true")
    parser.add_argument(
        "--skip-native", action="store_true", help="leave out the native-grid ablation"
    )
    args = parser.parse_args(argv)

    source = prepare(args.synthetic)
    print(f"inputs: {source}", flush=True)

    stage = "whole-lung radiomics"
    rows = [measure("load inputs", "numpy", inputs_only, setup=load_inputs)]
    print(rows[-1], flush=True)
    rows.append(
        measure(
            stage,
            "pyradiomics defaults (first order + texture, native grid)",
            pyradiomics_defaults,
            setup=load_inputs,
            timeout_s=3600,
        )
    )
    print(rows[-1], flush=True)
    rows.append(
        measure(
            stage,
            "radscl default lung configuration",
            radscl_default,
            setup=load_inputs,
            repeat=3,
        )
    )
    print(rows[-1], flush=True)
    if not args.skip_native:
        rows.append(
            measure(
                stage,
                "radscl configuration without resampling",
                radscl_native_grid,
                setup=load_inputs,
                timeout_s=3600,
            )
        )
        print(rows[-1], flush=True)
    rows.append(
        measure(
            "six regions of one scan",
            "radscl default lung configuration",
            radscl_all_regions,
            setup=load_inputs,
            repeat=3,
        )
    )
    print(rows[-1], flush=True)

    rows.append(
        measure(
            "shape features of the lower zone",
            "pyradiomics shape class, native grid",
            pyradiomics_shape_lower_zone,
            setup=load_inputs,
            timeout_s=3600,
        )
    )
    print(rows[-1], flush=True)

    baseline, ours = rows[1], rows[2]
    speedup = baseline.wall_s / ours.wall_s
    ours.details["speedup_vs_pyradiomics_defaults"] = round(speedup, 1)
    path = write_results("radiomics", rows)
    with path.open("a") as handle:
        handle.write(f"\nInputs: {source}.\n")
        handle.write(
            f"\nradscl's default lung configuration is {speedup:.1f}x faster than "
            "pyradiomics' defaults on the same whole-lung mask.\n"
        )
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
