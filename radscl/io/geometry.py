"""Slice geometry: shear from gantry tilt, slice regularity, canonical orientation.

All functions take a volume ``[k, j, i]`` whose slices are sorted along their
normal, with ``k`` the slice index, and return new arrays; none reads files.
"""

from __future__ import annotations

import math

import numpy as np

from radscl.io._common import identity_direction
from radscl.io._common import import_sitk
from radscl.io._common import snap_direction
from radscl.io.checks import GAPPED_RATIO
from radscl.io.scan import AIR_HU
from radscl.io.scan import ERROR
from radscl.io.scan import WARNING
from radscl.io.scan import QualityFinding

#: At most this many missing slices are filled by interpolation.
MAX_FILLED_SLICES = 3

#: A hole wider than this many consecutive missing slices is not filled quietly.
MAX_FILLED_HOLE = 2

#: Relative tolerance on slice intervals before they count as uneven.
INTERVAL_TOLERANCE = 0.02

#: Geometric tilt (degrees) between the slice normal and the stacking
#: direction above which the stack is reported as gantry-tilted.
TILT_TOLERANCE_DEG = 0.5


def remove_shear(
    volume: np.ndarray,
    positions: np.ndarray,
    row_cosine: np.ndarray,
    column_cosine: np.ndarray,
    normal: np.ndarray,
    column_mm: float,
    row_mm: float,
) -> tuple[np.ndarray, float, list[QualityFinding]]:
    """Undo a sheared stack (gantry tilt) by shifting slices in-plane.

    With a tilted gantry the slice planes are stacked along a direction that
    is not their normal, so the grid is sheared. Each slice is shifted within
    its own plane so that all slices share the first slice's in-plane origin;
    every pixel keeps its recorded patient position and the grid becomes
    orthogonal in the frame of the slice planes (as dcm2niix does). Pixels
    shifted in from outside the field of view are air.
    """
    if volume.shape[0] < 2:
        return volume, 0.0, []
    offsets = positions - positions[0]
    u = offsets @ row_cosine  # along a row: the column index, x for axial
    v = offsets @ column_cosine
    s = offsets @ normal
    largest_px = float(max(np.max(np.abs(u)) / column_mm, np.max(np.abs(v)) / row_mm))
    if largest_px < 0.1:
        return volume, 0.0, []

    span = s[-1] - s[0]
    drift = math.hypot(np.polyfit(s, u, 1)[0], np.polyfit(s, v, 1)[0]) if span else 0.0
    tilt_deg = math.degrees(math.atan(drift))

    from scipy import ndimage

    corrected = np.empty_like(volume)
    for k in range(volume.shape[0]):
        if abs(u[k]) / column_mm < 1e-3 and abs(v[k]) / row_mm < 1e-3:
            corrected[k] = volume[k]
            continue
        shifted = ndimage.shift(
            volume[k].astype(np.float32),
            (v[k] / row_mm, u[k] / column_mm),
            order=1,
            mode="constant",
            cval=AIR_HU,
        )
        corrected[k] = np.rint(shifted).astype(np.int16)

    largest_mm = float(np.max(np.hypot(u, v)))
    plane = orientation_name(normal)
    if tilt_deg >= TILT_TOLERANCE_DEG:
        finding = QualityFinding(
            "gantry_tilt",
            WARNING,
            f"gantry tilt of {tilt_deg:.1f} degrees: slice positions drift "
            f"{largest_mm:.1f} mm in-plane across the stack",
            f"each slice shifted in-plane to remove the shear; the grid is "
            f"orthogonal to the {plane} slice planes, which keep their recorded "
            "orientation",
        )
    else:
        finding = QualityFinding(
            "slice_offsets",
            WARNING,
            f"slices are displaced in-plane by up to {largest_mm:.2f} mm",
            "each slice shifted in-plane to line the stack up",
        )
    return corrected, tilt_deg, [finding]


def regular_slices(
    volume: np.ndarray, along: np.ndarray, thickness: float | None
) -> tuple[np.ndarray, np.ndarray, float, bool, list[QualityFinding]]:
    """Check slice intervals; fill or resample contiguous scans to a regular grid.

    Returns the volume, slice positions, interval, contiguity and findings.
    """
    n = volume.shape[0]
    if n == 1:
        interval = thickness or 1.0
        return volume, along, float(interval), True, []

    gaps = np.diff(along)
    nominal = float(np.median(gaps))
    contiguous = thickness is None or nominal <= GAPPED_RATIO * thickness
    tolerance = max(INTERVAL_TOLERANCE * nominal, 0.01)
    if np.all(np.abs(gaps - nominal) <= tolerance):
        interval = float((along[-1] - along[0]) / (n - 1))
        return volume, along, interval, contiguous, []

    ratios = gaps / nominal
    multiples = np.rint(ratios)
    missing_case = bool(
        np.all(multiples >= 1) and np.all(np.abs(ratios - multiples) <= 0.1)
    )
    findings = []
    if missing_case:
        missing = int(np.sum(multiples - 1))
        widest = int(np.max(multiples - 1))
        holes = int(np.sum(multiples > 1))
        at = ", ".join(f"{z:.1f}" for z in along[:-1][multiples > 1][:5])
        message = (
            f"{_count(missing, 'missing slice')} in {_count(holes, 'hole')} "
            f"(widest {_count(widest, 'slice')}) after z = {at} mm; nominal "
            f"interval {nominal:.2f} mm"
        )
        if not contiguous:
            findings.append(
                QualityFinding(
                    "missing_slices",
                    WARNING,
                    message,
                    "not filled: in gapped HRCT each slice stands for itself; "
                    "slice_positions_mm records the gap",
                )
            )
            return volume, along, nominal, contiguous, findings
        few = missing <= MAX_FILLED_SLICES and widest <= MAX_FILLED_HOLE
        findings.append(
            QualityFinding(
                "missing_slices",
                WARNING if few else ERROR,
                message,
                "filled by linear interpolation between the neighbouring slices"
                if few
                else "interpolated across the holes to keep a regular grid; "
                "measurements across them are unreliable",
            )
        )
        step = nominal
    else:
        step = nominal
        message = (
            f"uneven slice intervals from {gaps.min():.2f} to {gaps.max():.2f} mm "
            f"(median {nominal:.2f} mm)"
        )
        if not contiguous:
            findings.append(
                QualityFinding(
                    "uneven_spacing",
                    WARNING,
                    message,
                    "kept as recorded (gapped HRCT); slice_positions_mm gives "
                    "each slice's position",
                )
            )
            return volume, along, nominal, contiguous, findings
        large = gaps.max() > 3 * nominal
        findings.append(
            QualityFinding(
                "uneven_spacing",
                ERROR if large else WARNING,
                message,
                f"resampled by linear interpolation to a regular {step:.2f} mm grid",
            )
        )

    count = int(round((along[-1] - along[0]) / step)) + 1
    grid = np.linspace(along[0], along[-1], count)
    interval = float((along[-1] - along[0]) / (count - 1))
    return regrid(volume, along, grid), grid, interval, contiguous, findings


def regrid(volume: np.ndarray, along: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Linear interpolation between slices onto new positions."""
    below = np.clip(np.searchsorted(along, grid, side="right") - 1, 0, len(along) - 2)
    weight = (grid - along[below]) / (along[below + 1] - along[below])
    out = np.empty((grid.size,) + volume.shape[1:], dtype=np.int16)
    for k, (j, w) in enumerate(zip(below, weight, strict=True)):
        if w < 1e-6:
            out[k] = volume[j]
        elif w > 1 - 1e-6:
            out[k] = volume[j + 1]
        else:
            mixed = (1 - w) * volume[j].astype(np.float32) + w * volume[j + 1]
            out[k] = np.rint(mixed).astype(np.int16)
    return out


def orient_lps(
    volume: np.ndarray,
    spacing: tuple[float, float, float],
    origin: tuple[float, float, float],
    matrix: np.ndarray,
    along: np.ndarray,
) -> tuple[np.ndarray, tuple, tuple, tuple, np.ndarray]:
    """Bring a ``[k, j, i]`` volume with direction columns ``matrix`` to LPS."""
    matrix = snap_direction(matrix)
    if np.array_equal(matrix, np.eye(3)):
        return volume, spacing, origin, identity_direction(), along

    sitk = import_sitk()
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing(tuple(float(v) for v in spacing[::-1]))
    image.SetOrigin(tuple(float(v) for v in origin))
    image.SetDirection(tuple(float(v) for v in matrix.ravel()))
    oriented = sitk.DICOMOrient(image, "LPS")

    new_matrix = snap_direction(np.array(oriented.GetDirection()).reshape(3, 3))
    new_normal = new_matrix[:, 2]
    old_normal = matrix[:, 2]
    new_origin = np.array(oriented.GetOrigin())
    along_dot = float(new_normal @ old_normal)
    if abs(along_dot) > 0.99:
        positions = along if along_dot > 0 else -along[::-1]
        # in-plane flips are exact; the normal component follows the slices
        new_origin = new_origin + (positions[0] - new_origin @ new_normal) * new_normal
    else:
        z_step = oriented.GetSpacing()[2]
        positions = new_origin @ new_normal + z_step * np.arange(oriented.GetSize()[2])
    return (
        sitk.GetArrayFromImage(oriented),
        tuple(float(v) for v in oriented.GetSpacing()[::-1]),
        tuple(float(v) for v in new_origin),
        tuple(float(v) for v in new_matrix.ravel()),
        np.asarray(positions, dtype=float),
    )


def orientation_name(normal: np.ndarray) -> str:
    axis = int(np.argmax(np.abs(normal)))
    if abs(normal[axis]) < 0.7:
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
