"""Vessel segmentation on the full-size phantom: radscl against SimpleITK.

The full-size chest phantom (291 x 512 x 512, 1 x 0.7 x 0.7 mm) is drawn once;
its image, lung map and airway lumen and wall are saved to a temporary folder
and loaded by each measured process before the clock starts. Two runs, each in
a fresh process limited to two threads:

* ``radscl``: :func:`radscl.segmentation.vessels.segment_vessels` with the
  default parameters, calibre included;
* ``SimpleITK``: the reference multi-scale objectness filter alone
  (``SmoothingRecursiveGaussian`` then ``ObjectnessMeasure``, whose Hessian
  is taken by finite differences, for bright tubes, at the same five scales, maximum over scales) on the same
  lung bounding box, then a fixed threshold inside the lungs. It gives no
  calibre, no fibrosis rejection and no extent, so it is a floor on the time
  any Hessian method needs, not an equal competitor.

Run from the repository root::

    python -m benchmarks.bench_vessels
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.harness import measure
from benchmarks.harness import write_results

THREADS = 2
SEED = 0


def save_phantom(folder: Path) -> dict[str, float]:
    """Draw the full-size phantom and save what the runs need."""
    from radscl.phantom import make_phantom

    phantom = make_phantom("full", seed=SEED)
    np.save(folder / "hounsfield.npy", phantom.hounsfield)
    np.save(folder / "lungs.npy", phantom.lungs)
    np.save(folder / "lumen.npy", phantom.labels == 2)
    np.save(folder / "wall.npy", phantom.labels == 3)
    np.save(folder / "positions.npy", np.asarray(phantom.slice_positions_mm))
    np.save(folder / "spacing.npy", np.asarray(phantom.spacing_mm))
    return phantom.truth


def load_inputs(folder: str):
    """Scan, lungs and airway masks from the saved phantom (not timed)."""
    from radscl.io import scan_from_array
    from radscl.segmentation.lungs import LungSegmentation

    path = Path(folder)
    spacing = tuple(float(s) for s in np.load(path / "spacing.npy"))
    positions = np.load(path / "positions.npy")
    scan = scan_from_array(
        np.load(path / "hounsfield.npy"), spacing, slice_positions_mm=positions
    )
    lungs = LungSegmentation(
        np.load(path / "lungs.npy"), spacing, slice_positions_mm=positions
    )
    return scan, lungs, np.load(path / "lumen.npy"), np.load(path / "wall.npy")


def run_radscl(scan, lungs, lumen, wall) -> dict:
    from radscl.extractors.vessel import vessel_features
    from radscl.segmentation.vessels import segment_vessels

    vessels = segment_vessels(scan, lungs, lumen, wall)
    features = vessel_features(scan, lungs, vessels)
    return {k: round(float(v), 2) for k, v in features.items() if k.endswith("_ml")}


def run_simpleitk(scan, lungs, lumen, wall) -> dict:
    import SimpleITK as sitk

    from radscl.segmentation.vessels import VesselParams

    mask = lungs.lung_mask & ~lumen & ~wall
    index = [
        np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != k)))
        for k in range(3)
    ]
    box = tuple(slice(max(i[0] - 3, 0), i[-1] + 4) for i in index)
    image = sitk.GetImageFromArray(scan.hounsfield[box].astype(np.float32))
    image.SetSpacing(tuple(float(s) for s in scan.spacing_mm[::-1]))
    best = None
    for sigma in VesselParams().scales_mm:
        smoothed = sitk.SmoothingRecursiveGaussian(image, sigma)
        objectness = sitk.ObjectnessMeasure(
            smoothed,
            alpha=0.5,
            beta=0.5,
            gamma=50.0,
            scaleObjectnessMeasure=True,
            objectDimension=1,
            brightObject=True,
        )
        best = objectness if best is None else sitk.Maximum(best, objectness)
    response = sitk.GetArrayFromImage(best)
    vessel = (response > 0.1) & mask[box]
    voxel_ml = float(np.prod(scan.spacing_mm)) / 1000.0
    return {"vessel_volume_ml": round(float(vessel.sum()) * voxel_ml, 2)}


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="radscl-bench-vessels-") as folder:
        truth = save_phantom(Path(folder))
        rows = [
            measure(
                "vessels full phantom",
                "radscl",
                run_radscl,
                setup=load_inputs,
                setup_args=(folder,),
                threads=THREADS,
            ),
            measure(
                "vessels full phantom",
                "SimpleITK objectness",
                run_simpleitk,
                setup=load_inputs,
                setup_args=(folder,),
                threads=THREADS,
            ),
        ]
    for row in rows:
        row.details["truth_vessel_volume_ml"] = round(truth["vessel_volume_ml"], 2)
    path = write_results("vessels", rows)
    print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
