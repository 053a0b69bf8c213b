"""Writing a phantom to disk: image, DICOM series, label maps and truth.json."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from radscl.errors import RadsclError
from radscl.phantom.chest import LUNG_LABELS
from radscl.phantom.chest import TISSUE_LABELS
from radscl.phantom.chest import Phantom

logger = logging.getLogger(__name__)

#: Made-up identifiers written into every phantom DICOM file; no output of
#: radscl may ever contain them.
PHANTOM_PATIENT_NAME = "PHANTOM^SYNTHETIC^RADSCL"
PHANTOM_PATIENT_ID = "RADSCL-PHANTOM-0001"

FORMATS = ("nifti", "dicom")


def write_phantom(
    phantom: Phantom,
    out_dir: str | os.PathLike[str],
    formats: tuple[str, ...] = FORMATS,
) -> dict[str, Path]:
    """Write a phantom's image, label maps and ground truth.

    Files written in ``out_dir``:

    * ``ct.nii.gz`` with a ``ct.json`` sidecar (slice thickness, kernel) when
      ``"nifti"`` is among ``formats``;
    * ``dicom/`` with one CT Image Storage file per slice when ``"dicom"`` is;
    * ``truth_labels.nii.gz`` (:data:`~radscl.phantom.TISSUE_LABELS`) and
      ``truth_lungs.nii.gz`` (:data:`~radscl.phantom.LUNG_LABELS`);
    * ``truth.json``: the ground-truth measurements, the label names and the
      parameters that drew the phantom.

    Parameters
    ----------
    phantom : Phantom
        From :func:`radscl.phantom.make_phantom`.
    out_dir : str or path-like
        Created if needed.
    formats : tuple of str
        Any of ``"nifti"`` and ``"dicom"``.

    Returns
    -------
    dict
        Paths of what was written, by name.
    """
    from radscl.io import write_dicom_series
    from radscl.io import write_image

    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise RadsclError(
            f"unknown phantom format {unknown[0]!r}; expected one of {FORMATS}"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scan = phantom.to_scan()
    written: dict[str, Path] = {}

    if "nifti" in formats:
        written["nifti"] = write_image(
            phantom.hounsfield, scan, out / "ct.nii.gz", scan.metadata
        )
    if "dicom" in formats:
        files = write_dicom_series(
            phantom.hounsfield,
            phantom.spacing_mm,
            phantom.origin_mm,
            out / "dicom",
            slice_positions_mm=phantom.slice_positions_mm,
            slice_thickness_mm=phantom.slice_thickness_mm,
            kernel=scan.metadata.kernel,
            manufacturer=scan.metadata.manufacturer,
            model=scan.metadata.model,
            patient_name=PHANTOM_PATIENT_NAME,
            patient_id=PHANTOM_PATIENT_ID,
            series_description="radscl synthetic chest phantom",
        )
        written["dicom"] = files[0].parent
    written["truth_labels"] = write_image(
        phantom.labels, scan, out / "truth_labels.nii.gz"
    )
    written["truth_lungs"] = write_image(
        phantom.lungs, scan, out / "truth_lungs.nii.gz"
    )

    truth_path = out / "truth.json"
    document = {
        "truth": phantom.truth,
        "spec": dataclasses.asdict(phantom.spec),
        "tissue_labels": TISSUE_LABELS,
        "lung_labels": LUNG_LABELS,
        "geometry": {
            "shape": list(phantom.hounsfield.shape),
            "spacing_mm": list(phantom.spacing_mm),
            "origin_mm": list(phantom.origin_mm),
            "slice_thickness_mm": phantom.slice_thickness_mm,
        },
    }
    temporary = truth_path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(document, indent=2, default=_json_default) + "\n")
    temporary.replace(truth_path)
    written["truth"] = truth_path
    logger.info("phantom written to %s", out)
    return written


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
