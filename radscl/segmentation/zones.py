"""Lung zones shared by every extractor.

Zones are boolean masks on the scan grid, each a part of the lung mask:

``upper``, ``middle``, ``lower``
    Thirds of each lung's craniocaudal height, in mm from slice positions
    (so a gapped HRCT series is cut at the same heights as a volumetric scan
    of the same lung). Each lung is cut at its own apex and base.
``rind``, ``core``
    The peripheral rind is the lung within ``rind_mm`` (default 10 mm) of the
    lung's outer boundary; the core is the rest. Depth is measured in 3-D on
    contiguous scans and within each slice on gapped HRCT, whose slices are
    too far apart to say how deep a voxel lies from the boundary above or
    below it.
``dependent``, ``nondependent``
    The posterior and anterior halves of each lung on each slice, split at
    the midpoint of that lung's anteroposterior extent on that slice. The
    patient is assumed supine; prone scans swap the two (radscl does not read
    the patient position, since archive series often do not record it).

The thirds and halves partition each lung; rind and core partition it too.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from radscl.errors import DataError
from radscl.errors import ParameterError
from radscl.segmentation import LEFT_LUNG
from radscl.segmentation import RIGHT_LUNG

#: Zone names, in the order extractors report them.
ZONE_NAMES = ("upper", "middle", "lower", "rind", "core", "dependent", "nondependent")

#: Default depth of the peripheral rind, in mm.
RIND_MM = 10.0


def lung_zones(
    labels: np.ndarray,
    spacing_mm: tuple[float, float, float],
    slice_positions_mm: np.ndarray | None = None,
    *,
    contiguous: bool = True,
    rind_mm: float = RIND_MM,
    posterior_increasing_y: bool = True,
) -> dict[str, np.ndarray]:
    """Cut the lungs into craniocaudal thirds, rind and core, and halves.

    Parameters
    ----------
    labels : numpy.ndarray
        ``[z, y, x]`` label map with :data:`~radscl.segmentation.RIGHT_LUNG`
        and :data:`~radscl.segmentation.LEFT_LUNG`; other labels are ignored.
    spacing_mm : tuple of float
        ``(z, y, x)`` voxel spacing; ``z`` is the slice interval.
    slice_positions_mm : numpy.ndarray, optional
        Position of every slice along the slice normal, ascending (superior
        slices have larger positions); evenly spaced from ``spacing_mm[0]``
        when omitted.
    contiguous : bool
        False for gapped HRCT: rind depth is then measured within slices.
    rind_mm : float
        Depth of the peripheral rind.
    posterior_increasing_y : bool
        Whether the ``y`` index grows towards the patient's back (true for
        radscl's canonical LPS orientation).

    Returns
    -------
    dict of str to numpy.ndarray
        ``bool [z, y, x]`` masks keyed by :data:`ZONE_NAMES`.

    Raises
    ------
    DataError
        If there is no lung in the label map or the slice positions do not
        match it.
    ParameterError
        If ``rind_mm`` is not positive.
    """
    if not rind_mm > 0:
        raise ParameterError(f"rind_mm must be > 0, but found {rind_mm}")
    n_slices = labels.shape[0]
    if slice_positions_mm is None:
        positions = np.arange(n_slices, dtype=float) * float(spacing_mm[0])
    else:
        positions = np.asarray(slice_positions_mm, dtype=float)
        if positions.shape != (n_slices,):
            raise DataError(
                f"{positions.size} slice positions for a label map of {n_slices} slices"
            )

    lung = (labels == RIGHT_LUNG) | (labels == LEFT_LUNG)
    if not lung.any():
        raise DataError("the label map has no lung to cut into zones")

    zones = {name: np.zeros(labels.shape, dtype=bool) for name in ZONE_NAMES}
    for side in (RIGHT_LUNG, LEFT_LUNG):
        one_lung = labels == side
        if not one_lung.any():
            continue
        _add_thirds(zones, one_lung, positions)
        _add_halves(zones, one_lung, posterior_increasing_y)

    depth = _depth_mm(lung, spacing_mm, contiguous)
    zones["rind"] = lung & (depth <= rind_mm)
    zones["core"] = lung & (depth > rind_mm)
    return zones


def _add_thirds(
    zones: dict[str, np.ndarray], one_lung: np.ndarray, positions: np.ndarray
) -> None:
    """Cut one lung into thirds of its height, between apex and base."""
    slices = np.flatnonzero(one_lung.any(axis=(1, 2)))
    base, apex = positions[slices[0]], positions[slices[-1]]
    height = apex - base
    if height <= 0:
        zones["middle"] |= one_lung
        return

    relative = (positions - base) / height
    third = np.minimum((relative * 3.0).astype(int), 2)
    for index, name in enumerate(("lower", "middle", "upper")):
        in_third = (third == index)[:, None, None]
        zones[name] |= one_lung & in_third


def _add_halves(
    zones: dict[str, np.ndarray], one_lung: np.ndarray, posterior_increasing_y: bool
) -> None:
    """Split one lung on each slice at the midpoint of its AP extent."""
    present = one_lung.any(axis=2)
    rows = np.arange(one_lung.shape[1])
    has_lung = present.any(axis=1)
    front = np.where(has_lung, np.argmax(present, axis=1), 0)
    back = np.where(
        has_lung, one_lung.shape[1] - 1 - np.argmax(present[:, ::-1], axis=1), 0
    )
    midpoint = 0.5 * (front + back)
    posterior = rows[None, :] > midpoint[:, None]
    if not posterior_increasing_y:
        posterior = rows[None, :] < midpoint[:, None]
    posterior = posterior[:, :, None]
    zones["dependent"] |= one_lung & posterior
    zones["nondependent"] |= one_lung & ~posterior


def _depth_mm(
    lung: np.ndarray, spacing_mm: tuple[float, float, float], contiguous: bool
) -> np.ndarray:
    """Distance in mm from each lung voxel to the nearest voxel outside the lung.

    Only the lungs' bounding box is transformed, padded by one voxel of
    background: for a voxel inside the box, the padding plane is nearer than
    any voxel beyond it, so the distances are those of the whole volume.
    """
    if contiguous:
        box = ndimage.find_objects(lung.astype(np.uint8))[0]
        padded = np.pad(lung[box], 1)
        inner = ndimage.distance_transform_edt(padded, sampling=spacing_mm)
        depth = np.zeros(lung.shape)
        depth[box] = inner[1:-1, 1:-1, 1:-1]
        return depth

    depth = np.zeros(lung.shape, dtype=float)
    for index in np.flatnonzero(lung.any(axis=(1, 2))):
        plane = np.pad(lung[index], 1)
        depth[index] = ndimage.distance_transform_edt(plane, sampling=spacing_mm[1:])[
            1:-1, 1:-1
        ]
    return depth
