"""Small helpers shared by the loaders and writers."""

from __future__ import annotations

import math
from collections.abc import Iterable
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from radscl.errors import ParameterError
from radscl.errors import ScanError

IMAGE_SUFFIXES = {
    ".nii": "nifti",
    ".nii.gz": "nifti",
    ".nrrd": "nrrd",
    ".nhdr": "nrrd",
    ".mha": "mha",
    ".mhd": "mha",
}


def image_format(path: Path) -> str | None:
    """``"nifti"``, ``"nrrd"`` or ``"mha"`` from a file name, else None."""
    name = path.name.lower()
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return IMAGE_SUFFIXES[suffix]
    return None


def snap_direction(matrix: np.ndarray, tolerance: float = 1e-3) -> np.ndarray:
    """Round cosines within ``tolerance`` of a signed axis permutation to it."""
    matrix = np.asarray(matrix, dtype=float).reshape(3, 3)
    rounded = np.rint(matrix)
    if (
        np.all(np.abs(matrix - rounded) <= tolerance)
        and abs(np.linalg.det(rounded)) == 1
    ):
        return rounded + 0.0  # no negative zeros
    return matrix


def import_pydicom():
    """pydicom, imported on first use so that ``import radscl.io`` stays light."""
    import pydicom

    return pydicom


def import_sitk():
    """SimpleITK, imported on first use."""
    import SimpleITK

    return SimpleITK


def identity_direction() -> tuple[float, ...]:
    """The identity direction matrix, row-major."""
    return (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def as_hounsfield(array: np.ndarray, name: str) -> np.ndarray:
    """A fresh ``int16`` copy of a 3-D array, rounded and clipped."""
    array = np.asarray(array)
    if array.ndim != 3:
        raise ScanError(f"{name}: expected a 3-D [z, y, x] volume, got {array.ndim}-D")
    if array.dtype == np.int16:
        return np.array(array, copy=True)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ScanError(f"{name}: expected numbers, got {array.dtype}")
    values = np.rint(array) if np.issubdtype(array.dtype, np.floating) else array
    return np.clip(values, -32768, 32767).astype(np.int16)


def check_triple(values: Sequence[float], name: str, positive: bool = False) -> tuple:
    """Three finite floats (positive when asked) or a ParameterError."""
    triple = tuple(float(v) for v in values)
    if len(triple) != 3 or not all(math.isfinite(v) for v in triple):
        raise ParameterError(
            f'Argument "{name}" must have 3 finite values, got {values!r}'
        )
    if positive and min(triple) <= 0:
        raise ParameterError(f'Argument "{name}" must be positive, got {values!r}')
    return triple


def check_direction(direction: Sequence[float]) -> tuple[float, ...]:
    """Nine direction cosines forming a rotation (up to reflection)."""
    matrix = np.asarray(direction, dtype=float)
    if matrix.size != 9 or abs(abs(np.linalg.det(matrix.reshape(3, 3))) - 1) > 1e-3:
        raise ParameterError('Argument "direction" must be 9 direction cosines')
    return tuple(float(v) for v in matrix.ravel())


def positive_median(values: Iterable[float | None]) -> float | None:
    """Median of the positive values, ignoring missing ones; None if none."""
    present = [v for v in values if v is not None and v > 0]
    return float(np.median(present)) if present else None


def json_default(value: Any) -> Any:
    """Turn numpy scalars and arrays into JSON values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
