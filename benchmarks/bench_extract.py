"""Cohort extraction of 8 small phantom scans: 1 worker, 2 workers and Dask.

Four small chest phantoms (160 x 160 x 117 at 2.25 x 2.25 x 2.5 mm, two with
fibrosis) are drawn once and written as DICOM and as NIfTI, giving eight scans.
``radscl extract`` then runs the cohort with ``--jobs 1`` (the reference:
one process, ITK and BLAS using every core), ``--jobs 2`` (two worker
processes with cores // 2 threads each) and ``--scheduler local:2`` (a local
Dask cluster of two single-threaded workers), each into a fresh folder and in
a fresh process. The wall time covers the whole command, start-up of the
workers included; the peak memory in the table is the command's own process,
and the details give the per-case median time and the largest per-case peak
memory from provenance.json (each worker's resident memory while it ran the
case). The one-minute load average before each run is recorded, because the
machine is shared.

Run from the repository root::

    python -m benchmarks.bench_extract
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks.harness import measure
from benchmarks.harness import write_results

PHANTOMS = (
    {"seed": 11},
    {"seed": 12},
    {"seed": 13, "fibrosis_pct": 15},
    {"seed": 14, "fibrosis_pct": 30},
)


def write_cohort(folder: Path) -> list[str]:
    """Draw the phantoms and write each as DICOM and as NIfTI."""
    from radscl.phantom import make_phantom
    from radscl.phantom.output import write_phantom

    inputs = []
    for index, params in enumerate(PHANTOMS):
        written = write_phantom(make_phantom("small", **params), folder / f"p{index}")
        dicom = folder / f"case{index}d"
        written["dicom"].rename(dicom)
        nifti = folder / f"case{index}n.nii.gz"
        written["nifti"].rename(nifti)
        (folder / f"p{index}" / "ct.json").rename(folder / f"case{index}n.json")
        inputs += [str(dicom), str(nifti)]
    return inputs


def prepare(inputs: list[str], out: str, options: list[str]):
    shutil.rmtree(out, ignore_errors=True)
    return inputs, out, options


def run_extract(inputs: list[str], out: str, options: list[str]) -> dict:
    from radscl.cli import main

    load = os.getloadavg()[0]
    code = main(["extract", *inputs, "--out", out, "--quiet", *options])
    if code != 0:
        raise RuntimeError(f"radscl extract exited with {code}")
    provenance = json.loads((Path(out) / "provenance.json").read_text())
    cases = provenance["cases"].values()
    return {
        "cases": len(cases),
        "case_median_s": statistics.median(c["duration_s"] for c in cases),
        "case_peak_mb": max(c["peak_memory_mb"] for c in cases),
        "stages": ",".join(provenance["stages"]) or "load only",
        "load_1min_before": load,
    }


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="radscl-bench-extract-") as tmp:
        root = Path(tmp)
        inputs = write_cohort(root / "scans")
        runs = [
            ("radscl extract --jobs 1", []),
            ("radscl extract --jobs 2", ["--jobs", "2"]),
            ("radscl extract --scheduler local:2", ["--scheduler", "local:2"]),
        ]
        measurements = []
        for tool, options in runs:
            out = str(root / tool.split()[-1].replace(":", ""))
            measurements.append(
                measure(
                    "extract 8 small phantoms",
                    tool,
                    run_extract,
                    setup=prepare,
                    setup_args=(inputs, out, options),
                )
            )

    reference = measurements[0].wall_s
    for m in measurements:
        m.details["speedup"] = reference / m.wall_s
    path = write_results("extract", measurements)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
