"""Lung segmentation of the full-size phantom: radscl against a classical pipeline.

The full-size synthetic chest (512 x 512 x 291 at 0.7 x 0.7 x 1 mm, 20 %
fibrosis) is drawn once and saved as a ``.npy`` file, so each measured
process only reads it (the drawing is not in the peak memory). Each tool then
runs three times in a fresh process limited to two threads:

* ``radscl segment_lungs``: the full method (body, trachea and main bronchi,
  two lungs split at the junctions, closing and hole filling that keep dense
  fibrosis, edge redrawn at full resolution).
* ``SimpleITK threshold + components``: the textbook reference, all in
  SimpleITK: air below -400 HU, outside air removed (components touching the
  border of each slice), the two largest 3D components kept, a 2 mm binary
  closing and slice-by-slice hole filling. No trachea removal and no
  left/right split.

Each row reports the Dice of the lung mask against the phantom's truth and
the share of truth fibrotic voxels inside the mask, so speed is seen beside
what it buys, and the CPU time of the call (user + system, all threads): on a
shared machine the wall time grows with the load, which is recorded too.

Run from the repository root::

    python -m benchmarks.bench_lungs
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.harness import measure
from benchmarks.harness import write_results

THREADS = 2
REPEAT = 3
FIBROSIS_PCT = 20.0
SEED = 0


def write_inputs(folder: Path) -> dict:
    """Draw the full-size phantom once; save its image, truth and geometry."""
    from radscl.phantom import make_phantom
    from radscl.phantom.chest import FIBROSIS_LABELS

    phantom = make_phantom("full", seed=SEED, fibrosis_pct=FIBROSIS_PCT)
    np.save(folder / "hounsfield.npy", phantom.hounsfield)
    np.save(folder / "lung.npy", phantom.lungs == 1)
    np.save(folder / "left.npy", phantom.lungs == 2)
    np.save(folder / "fibrosis.npy", np.isin(phantom.labels, FIBROSIS_LABELS))
    np.save(folder / "positions.npy", phantom.slice_positions_mm)
    return {
        "folder": str(folder),
        "spacing_mm": phantom.spacing_mm,
        "truth_ml": phantom.truth["lung_volume_ml"],
    }


def load_inputs(inputs: dict):
    folder = Path(inputs["folder"])
    hounsfield = np.load(folder / "hounsfield.npy")
    positions = np.load(folder / "positions.npy")
    return hounsfield, positions, inputs


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _scores(mask: np.ndarray, inputs: dict, volume_ml: float, cpu_s: float) -> dict:
    folder = Path(inputs["folder"])
    truth = np.load(folder / "lung.npy") | np.load(folder / "left.npy")
    fibrosis = np.load(folder / "fibrosis.npy")
    overlap = np.count_nonzero(mask & truth)
    return {
        "dice": 2.0 * overlap / (np.count_nonzero(mask) + np.count_nonzero(truth)),
        "volume_error_pct": 100.0
        * (volume_ml - inputs["truth_ml"])
        / inputs["truth_ml"],
        "fibrosis_inside_pct": 100.0
        * np.count_nonzero(mask & fibrosis)
        / fibrosis.sum(),
        "cpu_s": cpu_s,
        "load_1min": os.getloadavg()[0],
    }


def radscl_lungs(hounsfield: np.ndarray, positions: np.ndarray, inputs: dict) -> dict:
    from radscl.io import scan_from_array
    from radscl.segmentation.lungs import segment_lungs

    start = _cpu_s()
    scan = scan_from_array(
        hounsfield, inputs["spacing_mm"], slice_positions_mm=positions
    )
    result = segment_lungs(scan)
    volume = result.volumes_ml()["lung_volume_ml"]
    return _scores(result.lung_mask, inputs, volume, _cpu_s() - start)


def sitk_classical(hounsfield: np.ndarray, positions: np.ndarray, inputs: dict) -> dict:
    import SimpleITK as sitk

    start = _cpu_s()
    image = sitk.GetImageFromArray(hounsfield)
    dz, dy, dx = inputs["spacing_mm"]
    image.SetSpacing((dx, dy, dz))
    air = sitk.BinaryThreshold(image, -3000, -400, 1, 0)
    # Outside air: slice by slice, air touching the slice border.
    slices = []
    for k in range(air.GetSize()[2]):
        plane = air[:, :, k]
        components = sitk.ConnectedComponent(plane)
        array = sitk.GetArrayViewFromImage(components)
        border = np.unique(
            np.concatenate([array[0], array[-1], array[:, 0], array[:, -1]])
        )
        inside = ~np.isin(array, border) & (array > 0)
        slices.append(inside)
    inner = sitk.GetImageFromArray(np.stack(slices).astype(np.uint8))
    inner.CopyInformation(air)
    components = sitk.RelabelComponent(
        sitk.ConnectedComponent(inner), sortByObjectSize=True
    )
    lungs = sitk.BinaryThreshold(components, 1, 2, 1, 0)
    radius = [max(1, int(round(2.0 / s))) for s in (dx, dy, dz)]
    lungs = sitk.BinaryMorphologicalClosing(lungs, radius)
    filled = [
        sitk.GetArrayFromImage(sitk.BinaryFillhole(lungs[:, :, k]))
        for k in range(lungs.GetSize()[2])
    ]
    mask = np.stack(filled).astype(bool)
    volume = float(mask.sum() * dx * dy * dz / 1000.0)
    return _scores(mask, inputs, volume, _cpu_s() - start)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="radscl-bench-lungs-") as tmp:
        inputs = write_inputs(Path(tmp))
        stage = (
            f"lungs of the full-size phantom (512x512x291, {FIBROSIS_PCT:g} % fibrosis)"
        )
        common = {
            "repeat": REPEAT,
            "threads": THREADS,
            "setup": load_inputs,
            "setup_args": (inputs,),
        }
        rows = [
            measure(stage, "radscl segment_lungs", radscl_lungs, **common),
            measure(
                stage,
                "SimpleITK threshold + components + fill (reference)",
                sitk_classical,
                **common,
            ),
        ]
    path = write_results("lungs", rows)
    sys.stdout.write(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
