"""Fast binary morphology on ``[z, y, x]`` volumes with anisotropic voxels.

Distances come from SimpleITK's Maurer transform, which is exact and
multi-threaded; "in-plane" variants give the slice axis a huge spacing so that
every slice is treated on its own (gapped HRCT, single slices). Structuring
elements are balls in millimetres, not voxels, so a radius means the same on
a 0.6 mm and a 2.5 mm grid.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

#: Slice spacing that makes a distance transform work slice by slice.
_PLANAR_SPACING_MM = 1.0e5

_PLANE_CONNECTIVITY = np.zeros((3, 3, 3), dtype=bool)
_PLANE_CONNECTIVITY[1] = ndimage.generate_binary_structure(2, 1)


def distance_outside_mm(
    mask: np.ndarray, spacing_mm: tuple[float, float, float], planar: bool = False
) -> np.ndarray:
    """Euclidean distance (mm) from every voxel outside ``mask`` to the mask.

    Voxels inside the mask get zero or a negative value. With ``planar`` the
    distance is measured within each slice only. A mask without any voxel
    gives ``inf`` everywhere.
    """
    if not mask.any():
        return np.full(mask.shape, np.inf, dtype=np.float32)
    image = sitk.GetImageFromArray(mask.astype(np.uint8, copy=False))
    dz = _PLANAR_SPACING_MM if planar else spacing_mm[0]
    image.SetSpacing((float(spacing_mm[2]), float(spacing_mm[1]), float(dz)))
    distance = sitk.SignedMaurerDistanceMap(
        image, insideIsPositive=False, squaredDistance=False, useImageSpacing=True
    )
    return sitk.GetArrayFromImage(distance)


def depth_mm(
    mask: np.ndarray, spacing_mm: tuple[float, float, float], planar: bool = False
) -> np.ndarray:
    """Distance (mm) from every voxel of ``mask`` to the nearest voxel outside it.

    Zero outside the mask. The volume border does not count as outside, so
    callers pad masks that touch it.
    """
    distance = distance_outside_mm(~mask, spacing_mm, planar)
    distance = np.where(mask, distance, 0.0).astype(np.float32, copy=False)
    return distance


def dilate_mm(
    mask: np.ndarray,
    radius_mm: float,
    spacing_mm: tuple[float, float, float],
    planar: bool = False,
) -> np.ndarray:
    """Dilation by a ball (or a disc, with ``planar``) of ``radius_mm``."""
    return distance_outside_mm(mask, spacing_mm, planar) <= radius_mm


def erode_mm(
    mask: np.ndarray,
    radius_mm: float,
    spacing_mm: tuple[float, float, float],
    planar: bool = False,
) -> np.ndarray:
    """Erosion by a ball (or a disc, with ``planar``) of ``radius_mm``."""
    if mask.all():
        return mask.copy()
    return distance_outside_mm(~mask, spacing_mm, planar) > radius_mm


def close_mm(
    mask: np.ndarray,
    radius_mm: float,
    spacing_mm: tuple[float, float, float],
    planar: bool = False,
) -> np.ndarray:
    """Closing by a ball of ``radius_mm`` computed on the mask's bounding box.

    The box is padded by the radius so the volume border does not stop the
    dilation from coming back.
    """
    if radius_mm <= 0 or not mask.any():
        return mask.copy()
    steps = [int(np.ceil(radius_mm / s)) + 2 for s in spacing_mm]
    if planar:
        steps[0] = 0
    box = bounding_box(mask, steps)
    part = mask[box]
    pad = [(p, p) for p in steps]
    padded = np.pad(part, pad)
    dilated = dilate_mm(padded, radius_mm, spacing_mm, planar)
    closed = erode_mm(dilated, radius_mm, spacing_mm, planar)
    inner = tuple(slice(p, p + n) for p, n in zip(steps, part.shape, strict=True))
    result = mask.copy()
    result[box] |= closed[inner]
    return result


def bounding_box(
    mask: np.ndarray, margin: tuple[int, ...] | list[int] | int = 0
) -> tuple[slice, ...]:
    """Slices of the smallest box holding ``mask``, grown by ``margin`` voxels.

    An empty mask gives the whole volume.
    """
    if np.isscalar(margin):
        margin = [int(margin)] * mask.ndim
    if not mask.any():
        return tuple(slice(0, n) for n in mask.shape)
    box = []
    for axis, n in enumerate(mask.shape):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        present = np.flatnonzero(mask.any(axis=others))
        lo = max(int(present[0]) - int(margin[axis]), 0)
        hi = min(int(present[-1]) + 1 + int(margin[axis]), n)
        box.append(slice(lo, hi))
    return tuple(box)


def border_connected_2d(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` connected, within their slice, to the in-plane border."""
    labels, count = ndimage.label(mask, structure=_PLANE_CONNECTIVITY)
    if count == 0:
        return np.zeros(mask.shape, dtype=bool)
    edges = np.concatenate(
        [
            labels[:, 0, :].ravel(),
            labels[:, -1, :].ravel(),
            labels[:, :, 0].ravel(),
            labels[:, :, -1].ravel(),
        ]
    )
    touching = np.zeros(count + 1, dtype=bool)
    touching[edges] = True
    touching[0] = False
    return touching[labels]


def fill_holes_2d(mask: np.ndarray) -> np.ndarray:
    """Fill, slice by slice, the holes of ``mask`` not reaching the slice border."""
    return mask | ~border_connected_2d(~mask)


def label_components(
    mask: np.ndarray, fully_connected: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """3D connected components, largest first.

    Returns
    -------
    labels : numpy.ndarray
        ``int32``; 1 is the largest component, 0 background.
    sizes : numpy.ndarray
        Voxel count of each label, ``sizes[0]`` for the background.
    """
    image = sitk.GetImageFromArray(mask.astype(np.uint8, copy=False))
    components = sitk.ConnectedComponent(image, fully_connected)
    relabelled = sitk.RelabelComponent(components, sortByObjectSize=True)
    labels = sitk.GetArrayFromImage(relabelled).astype(np.int32, copy=False)
    sizes = np.bincount(labels.ravel())
    return labels, sizes


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 3D connected component of ``mask`` (empty if ``mask`` is)."""
    if not mask.any():
        return mask.copy()
    labels, _ = label_components(mask)
    return labels == 1


def watershed_from_markers(
    depth: np.ndarray, markers: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """Flood ``mask`` from ``markers`` along decreasing ``depth``.

    Regions meet where the mask is narrowest (the ridge of ``-depth``), which
    is where touching organs are best cut apart.
    """
    relief = sitk.GetImageFromArray((-depth).astype(np.float32, copy=False))
    seeds = sitk.GetImageFromArray(markers.astype(np.uint8, copy=False))
    flooded = sitk.MorphologicalWatershedFromMarkers(
        relief, seeds, markWatershedLine=False, fullyConnected=False
    )
    labels = sitk.GetArrayFromImage(flooded).astype(np.uint8, copy=False)
    labels[~mask] = 0
    return labels


class BlockGrid:
    """A coarser grid made of ``factors`` blocks of a fine ``[z, y, x]`` grid.

    Blocks that would run past the fine grid are cut short, so every fine
    voxel belongs to exactly one block.
    """

    def __init__(self, shape: tuple[int, int, int], factors: tuple[int, int, int]):
        self.shape = tuple(int(n) for n in shape)
        self.factors = tuple(int(f) for f in factors)
        self.coarse_shape = tuple(
            -(-n // f) for n, f in zip(self.shape, self.factors, strict=True)
        )

    def mean(self, fine: np.ndarray) -> np.ndarray:
        """Block means as ``float32``, one block row of slices at a time."""
        fz, fy, fx = self.factors
        nz, ny, nx = self.coarse_shape
        out = np.empty(self.coarse_shape, dtype=np.float32)
        rows_y = np.arange(0, self.shape[1], fy)
        rows_x = np.arange(0, self.shape[2], fx)
        counts_y = np.diff(np.append(rows_y, self.shape[1])).astype(np.float32)
        counts_x = np.diff(np.append(rows_x, self.shape[2])).astype(np.float32)
        for k in range(nz):
            chunk = fine[k * fz : (k + 1) * fz]
            plane = chunk.sum(axis=0, dtype=np.float32)
            plane = np.add.reduceat(plane, rows_y, axis=0)
            plane = np.add.reduceat(plane, rows_x, axis=1)
            plane /= counts_y[:, None] * counts_x[None, :] * chunk.shape[0]
            out[k] = plane
        return out

    def upsample(self, coarse: np.ndarray) -> np.ndarray:
        """Nearest-neighbour copy of a coarse array onto the fine grid."""
        result = coarse
        for axis, factor in enumerate(self.factors):
            if factor > 1:
                result = np.repeat(result, factor, axis=axis)
        return result[: self.shape[0], : self.shape[1], : self.shape[2]]

    def coarse_spacing(
        self, spacing_mm: tuple[float, float, float]
    ) -> tuple[float, float, float]:
        """Spacing of the coarse grid."""
        return tuple(
            float(s) * f for s, f in zip(spacing_mm, self.factors, strict=True)
        )
