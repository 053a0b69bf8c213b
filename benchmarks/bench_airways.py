"""Airway segmentation of the full-size phantom: radscl beside plain region growing.

The full-size chest phantom (512 x 512 x 291 at 0.7 x 0.7 x 1 mm, seed 0) is
drawn once and saved; every measurement then runs in a fresh process that
loads it (untimed) and times only the airway step:

* ``radscl``: :func:`radscl.segmentation.airways.segment_airways` (seed,
  adaptive growing with leak detection, peripheral refinement, lumen edge,
  wall, tree analysis) followed by :func:`radscl.extractors.airway.airway_features`
  with the lung zones, given the phantom's lung map;
* the reference: SimpleITK's ``ConnectedThreshold`` from the same trachea seed
  at one fixed upper threshold, without leak detection, refinement or tree;
  once at -950 HU (near-pure air) and once at -700 HU (radscl's highest
  threshold), where fixed-threshold growing floods the lung.

The details give the lumen volume against the phantom's truth and the
false-positive volume (segmented voxels that are not truth lumen), the CPU
time of the step and the one-minute load average before it (the machine is
shared, so wall times under load overstate the cost). The lung zones are cut
in the parent process; the peak memory is measured from the start of the
timed step, so it covers the step and the inputs it holds (scan, lung map,
zones and truth lumen, about 0.8 GB), not their loading. Run from the
repository root::

    python -m benchmarks.bench_airways
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import measure
from benchmarks.harness import write_results

#: Phantom tissue label of airway lumen.
TRUTH_LUMEN = 2


def draw_phantom(path: Path) -> dict:
    """Draw the full-size phantom and save what the measurements need."""
    from radscl.extractors.airway import ZONES
    from radscl.phantom import make_phantom
    from radscl.segmentation.zones import lung_zones

    phantom = make_phantom("full", seed=0)
    zones = lung_zones(phantom.lungs, phantom.spacing_mm)
    np.savez(
        path,
        hounsfield=phantom.hounsfield,
        lungs=phantom.lungs,
        lumen=phantom.labels == TRUTH_LUMEN,
        spacing=np.asarray(phantom.spacing_mm),
        **{f"zone_{name}": zones[name] for name in ZONES},
    )
    return phantom.truth


def load(path: str, truth_ml: float):
    """Load the saved phantom: scan, lung segmentation, zones and truth lumen."""
    from radscl.extractors.airway import ZONES
    from radscl.io import scan_from_array
    from radscl.segmentation.lungs import LungSegmentation

    saved = np.load(path)
    spacing = tuple(float(s) for s in saved["spacing"])
    scan = scan_from_array(saved["hounsfield"], spacing, slice_thickness_mm=1.0)
    lungs = LungSegmentation(saved["lungs"], spacing)
    zones = {name: saved[f"zone_{name}"] for name in ZONES}
    return scan, lungs, zones, saved["lumen"], truth_ml


def _reset_peak_memory() -> None:
    """Start the process's resident-memory high-water mark afresh (Linux).

    The peak reported then covers the loaded inputs (held throughout) and the
    step itself, not the transient memory of loading them.
    """
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def _details(lumen, truth, voxel_ml, truth_ml, cpu_s, load_1min) -> dict:
    volume = float(np.count_nonzero(lumen)) * voxel_ml
    false_ml = float(np.count_nonzero(lumen & ~truth)) * voxel_ml
    return {
        "volume_ml": round(volume, 2),
        "truth_ml": round(truth_ml, 2),
        "volume_error_pct": round(100.0 * (volume - truth_ml) / truth_ml, 1),
        "false_positive_ml": round(false_ml, 2),
        "cpu_s": round(cpu_s, 2),
        "load_1min": round(load_1min, 2),
    }


def run_radscl(scan, lungs, zones, truth, truth_ml) -> dict:
    from radscl.extractors.airway import ZONES
    from radscl.extractors.airway import airway_features
    from radscl.segmentation.airways import segment_airways

    _reset_peak_memory()
    load_1min = os.getloadavg()[0]
    cpu = time.process_time()
    airways = segment_airways(scan, lungs)
    features = airway_features(
        scan, lungs, airways, {name: zones[name] for name in ZONES}
    )
    cpu_s = time.process_time() - cpu

    details = _details(
        airways.lumen, truth, scan.voxel_volume_ml, truth_ml, cpu_s, load_1min
    )
    details["intrapulmonary_ml"] = round(features["airway_intrapulmonary_volume_ml"], 2)
    details["max_generation"] = features["airway_max_generation"]
    details["branches"] = features["airway_branch_count"]
    return details


def _connected_threshold(scan, lungs, truth, truth_ml, upper_hu: float) -> dict:
    import SimpleITK as sitk

    from radscl.segmentation import TRACHEA

    _reset_peak_memory()
    load_1min = os.getloadavg()[0]
    cpu = time.process_time()
    trachea = (lungs.labels == TRACHEA) & (scan.hounsfield <= -900)
    top = np.flatnonzero(trachea.any(axis=(1, 2)))[-1]
    seeds = np.argwhere(trachea[top - 19 : top + 1]) + [top - 19, 0, 0]
    seeds = seeds[np.linspace(0, len(seeds) - 1, 400).astype(int)]
    image = sitk.GetImageFromArray(scan.hounsfield)
    grown = sitk.ConnectedThreshold(
        image,
        seedList=[(int(x), int(y), int(z)) for z, y, x in seeds],
        lower=-32768.0,
        upper=float(upper_hu),
    )
    lumen = sitk.GetArrayViewFromImage(grown).astype(bool)
    cpu_s = time.process_time() - cpu
    return _details(lumen, truth, scan.voxel_volume_ml, truth_ml, cpu_s, load_1min)


def run_reference_950(scan, lungs, zones, truth, truth_ml) -> dict:
    return _connected_threshold(scan, lungs, truth, truth_ml, -950.0)


def run_reference_700(scan, lungs, zones, truth, truth_ml) -> dict:
    return _connected_threshold(scan, lungs, truth, truth_ml, -700.0)


def main() -> None:
    stage = "airways, full phantom 512x512x291"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "phantom.npz"
        truth = draw_phantom(path)
        args = (str(path), truth["airway_volume_ml"])
        rows = [
            measure(stage, "radscl", run_radscl, setup=load, setup_args=args),
            measure(
                stage,
                "SimpleITK ConnectedThreshold -950 HU",
                run_reference_950,
                setup=load,
                setup_args=args,
            ),
            measure(
                stage,
                "SimpleITK ConnectedThreshold -700 HU",
                run_reference_700,
                setup=load,
                setup_args=args,
            ),
        ]
    table = write_results("airways", rows)
    sys.stdout.write(table.read_text())


if __name__ == "__main__":
    main()
