"""Loading a 400-slice 512x512 chest CT: radscl against SimpleITK's readers.

A chest-like volume (air, body wall, two lungs, spine, noise) is written once
as a DICOM series with :func:`radscl.io.write_dicom_series` and as NIfTI
(``.nii.gz``), then each reader runs three times in a fresh process limited to
two threads. The files sit in the page cache after the first run, so the
figures are warm-cache reads. The one-minute load average at the end of each
stage is recorded beside it, because the machine may be shared. SimpleITK's
``ImageSeriesReader`` with GDCM's series file names is the reference for
DICOM; it does no series choice, no quality checks and no padding handling.

Run from the repository root::

    python -m benchmarks.bench_io
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.harness import measure
from benchmarks.harness import write_results

N_SLICES = 400
SIZE = 512
SPACING_MM = (0.8, 0.7, 0.7)
ORIGIN_MM = (-179.0, -179.0, -320.0)
THREADS = 2
REPEAT = 3


def chest_volume(
    n_slices: int = N_SLICES, size: int = SIZE, seed: int = 0
) -> np.ndarray:
    """A chest-like Hounsfield volume, built slice by slice to keep memory low."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    centre = size / 2
    outside = (y - centre) ** 2 + (x - centre) ** 2 > (0.49 * size) ** 2
    body = ((y - centre) / (0.33 * size)) ** 2 + ((x - centre) / (0.44 * size)) ** 2 < 1
    fat = ((y - centre) / (0.30 * size)) ** 2 + ((x - centre) / (0.41 * size)) ** 2 >= 1
    spine = (y - centre - 0.22 * size) ** 2 + (x - centre) ** 2 < (0.05 * size) ** 2

    volume = np.empty((n_slices, size, size), dtype=np.int16)
    for k in range(n_slices):
        scale = 1.0 - 0.6 * abs(k / n_slices - 0.45)
        hounsfield = np.full((size, size), -1000.0, dtype=np.float32)
        hounsfield[body] = 40.0
        hounsfield[body & fat] = -100.0
        for side in (-1, 1):
            lung = ((y - centre + 10) / (0.24 * size * scale)) ** 2 + (
                (x - centre - side * 0.19 * size) / (0.15 * size * scale)
            ) ** 2 < 1
            hounsfield[lung] = -860.0
        hounsfield[spine] = 650.0
        hounsfield += rng.normal(0.0, 18.0, (size, size)).astype(np.float32)
        hounsfield[outside] = -3024.0  # padding outside the reconstruction circle
        volume[k] = np.clip(np.rint(hounsfield), -3024, 3071)
    return volume


def write_inputs(folder: Path) -> tuple[Path, Path]:
    """Write the DICOM series and the NIfTI once; return their paths."""
    from radscl.io import scan_from_array
    from radscl.io import write_dicom_series
    from radscl.io import write_image

    volume = chest_volume()
    dicom_dir = folder / "dicom"
    write_dicom_series(
        volume,
        SPACING_MM,
        ORIGIN_MM,
        dicom_dir,
        slice_thickness_mm=1.0,
        kernel="B60f",
        manufacturer="SIEMENS",
        rescale_intercept=-1024.0,
        pixel_padding_value=-2000,
    )
    scan = scan_from_array(volume, SPACING_MM, ORIGIN_MM, slice_thickness_mm=1.0)
    nifti = write_image(scan.hounsfield, scan, folder / "chest.nii.gz")
    return dicom_dir, nifti


def _details(shape) -> dict:
    # the machine is shared; the load average says how contended a run was
    return {"shape": "x".join(map(str, shape)), "load_1min": os.getloadavg()[0]}


def passthrough(*args):
    return args


def make_volume() -> np.ndarray:
    return chest_volume()


def radscl_write_dicom(volume: np.ndarray) -> dict:
    from radscl.io import write_dicom_series

    with tempfile.TemporaryDirectory() as folder:
        paths = write_dicom_series(volume, SPACING_MM, ORIGIN_MM, folder)
    return {"files": len(paths), "load_1min": os.getloadavg()[0]}


def radscl_load(path: str) -> dict:
    from radscl.io import load_scan

    scan = load_scan(path)
    return _details(scan.hounsfield.shape)


def sitk_series_reader(path: str) -> dict:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(path))
    image = reader.Execute()
    return _details(image.GetSize()[::-1])


def sitk_read_image(path: str) -> dict:
    import SimpleITK as sitk

    image = sitk.ReadImage(path)
    return _details(image.GetSize()[::-1])


def pydicom_stack(path: str) -> dict:
    import pydicom

    slices = [pydicom.dcmread(p) for p in sorted(Path(path).iterdir())]
    slices.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    volume = np.stack([ds.pixel_array for ds in slices])
    return _details(volume.shape)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="radscl-bench-io-") as tmp:
        dicom_dir, nifti = write_inputs(Path(tmp))
        dicom, nii = (str(dicom_dir),), (str(nifti),)
        common = {"repeat": REPEAT, "threads": THREADS, "setup": passthrough}
        stage_dicom = f"load {N_SLICES}-slice DICOM series ({SIZE}x{SIZE})"
        stage_nifti = f"load {N_SLICES}-slice NIfTI (.nii.gz)"
        rows = [
            measure(
                stage_dicom, "radscl load_scan", radscl_load, setup_args=dicom, **common
            ),
            measure(
                stage_dicom,
                "SimpleITK ImageSeriesReader (GDCM)",
                sitk_series_reader,
                setup_args=dicom,
                **common,
            ),
            measure(
                stage_dicom,
                "pydicom dcmread + stack (no checks)",
                pydicom_stack,
                setup_args=dicom,
                **common,
            ),
            measure(
                stage_nifti, "radscl load_scan", radscl_load, setup_args=nii, **common
            ),
            measure(
                stage_nifti,
                "SimpleITK ReadImage",
                sitk_read_image,
                setup_args=nii,
                **common,
            ),
            measure(
                f"write {N_SLICES}-slice DICOM series",
                "radscl write_dicom_series",
                radscl_write_dicom,
                setup=make_volume,
                repeat=1,
                threads=THREADS,
            ),
        ]
    path = write_results("io", rows)
    sys.stdout.write(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
