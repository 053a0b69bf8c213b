"""Branching airway and vessel trees, and rendering tubes with partial volume.

Trees are grown by a space-filling rule: a branch owns a cloud of points
sampled in the lung it supplies; it heads for their centroid and covers a fixed
fraction of the distance, then the cloud is split in two across its widest
direction (perpendicular to the branch) and each half grows a daughter branch.
Daughter radii follow Murray's law with flow proportional to the points each
half supplies, so a symmetric split shrinks the radius by ``2 ** (-1/3)``.
This gives trees that fill the lung evenly and taper by generation, like the
models of Kitaoka et al. (1999) and Tawhai et al. (2004); the code here is a
plain reading of that idea, not a port of either.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from radscl.phantom.geometry import Grid
from radscl.phantom.geometry import tube_occupancy


@dataclasses.dataclass
class TreeSegments:
    """A set of straight tube segments with a radius each.

    Attributes
    ----------
    start, end : numpy.ndarray
        ``(n, 3)`` end points, ``x, y, z`` in mm.
    radius : numpy.ndarray
        Lumen radius of each segment in mm.
    generation : numpy.ndarray
        Branching generation (0 for the trachea).
    parent : numpy.ndarray
        Index of the parent segment, -1 for a root.
    """

    start: np.ndarray
    end: np.ndarray
    radius: np.ndarray
    generation: np.ndarray
    parent: np.ndarray

    @classmethod
    def empty(cls) -> TreeSegments:
        """A tree with no segments."""
        return cls(
            np.zeros((0, 3)),
            np.zeros((0, 3)),
            np.zeros(0),
            np.zeros(0, int),
            np.zeros(0, int),
        )

    def __len__(self) -> int:
        return int(self.radius.size)

    @property
    def length_mm(self) -> np.ndarray:
        """Length of each segment."""
        return np.linalg.norm(self.end - self.start, axis=1)

    @property
    def midpoint(self) -> np.ndarray:
        """Midpoint of each segment."""
        return 0.5 * (self.start + self.end)

    def concatenate(self, other: TreeSegments, attach_to: int = -1) -> TreeSegments:
        """Join two segment sets, re-indexing the other's parents.

        The roots of ``other`` become daughters of segment ``attach_to`` of
        this set (or stay roots when it is -1).
        """
        offset = len(self)
        other_parent = np.where(other.parent >= 0, other.parent + offset, attach_to)
        return TreeSegments(
            np.concatenate([self.start, other.start]),
            np.concatenate([self.end, other.end]),
            np.concatenate([self.radius, other.radius]),
            np.concatenate([self.generation, other.generation]),
            np.concatenate([self.parent, other_parent]),
        )


@dataclasses.dataclass
class _Builder:
    start: list = dataclasses.field(default_factory=list)
    end: list = dataclasses.field(default_factory=list)
    radius: list = dataclasses.field(default_factory=list)
    generation: list = dataclasses.field(default_factory=list)
    parent: list = dataclasses.field(default_factory=list)

    def add(self, start, end, radius, generation, parent) -> int:
        self.start.append(np.asarray(start, float))
        self.end.append(np.asarray(end, float))
        self.radius.append(float(radius))
        self.generation.append(int(generation))
        self.parent.append(int(parent))
        return len(self.radius) - 1

    def build(self) -> TreeSegments:
        if not self.radius:
            return TreeSegments.empty()
        return TreeSegments(
            np.array(self.start),
            np.array(self.end),
            np.array(self.radius),
            np.array(self.generation),
            np.array(self.parent),
        )


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(vector)
    return vector / norm if norm > 0 else vector


def grow_space_filling(
    start: np.ndarray,
    direction: np.ndarray,
    radius_mm: float,
    points: np.ndarray,
    *,
    generation: int,
    min_radius_mm: float,
    inside: Callable[[np.ndarray], np.ndarray],
    length_fraction: float = 0.4,
    max_length_mm: float = 45.0,
    parent: int = -1,
    builder: _Builder | None = None,
    leaves: list | None = None,
    max_generation: int = 30,
) -> TreeSegments:
    """Grow a tree from ``start`` that fills the region sampled by ``points``.

    Parameters
    ----------
    start : numpy.ndarray
        Root position ``(x, y, z)`` in mm.
    direction : numpy.ndarray
        Direction of the parent branch, used to keep daughters from turning
        back on themselves.
    radius_mm : float
        Radius of the root branch.
    points : numpy.ndarray
        ``(n, 3)`` points the tree supplies.
    generation : int
        Generation number of the root branch.
    min_radius_mm : float
        Branches thinner than this are not grown.
    inside : callable
        Maps ``(n, 3)`` points to a signed distance (negative inside the lung);
        a branch that would end outside is shortened or not grown.
    length_fraction : float
        Share of the distance to the centroid that a branch covers.
    max_length_mm : float
        Upper limit of a branch's length.
    parent : int
        Index of the parent segment in ``builder``.
    builder : optional
        Accumulator shared by recursive calls.
    leaves : list, optional
        Receives ``(segment index, points)`` for every terminal branch.
    max_generation : int
        Hard limit on the generation number.

    Returns
    -------
    TreeSegments
        The grown segments (only when called without ``builder``).
    """
    own_builder = builder is None
    builder = builder if builder is not None else _Builder()
    stack = [
        (
            np.asarray(start, float),
            _unit(np.asarray(direction, float)),
            radius_mm,
            points,
            generation,
            parent,
        )
    ]

    while stack:
        origin, parent_direction, radius, cloud, gen, parent_index = stack.pop()
        centroid = cloud.mean(axis=0)
        heading = centroid - origin
        distance = np.linalg.norm(heading)
        if distance < 1e-6:
            continue
        heading = heading / distance

        # Daughters may not turn back by more than ~80 degrees from the parent.
        if np.dot(heading, parent_direction) < 0.17:
            heading = _unit(heading + 0.6 * parent_direction)
        length = float(np.clip(length_fraction * distance, 2.0 * radius, max_length_mm))
        end = origin + heading * length
        for _ in range(3):
            if inside(end[None, :])[0] < -radius:
                break
            length *= 0.5
            end = origin + heading * length
        else:
            continue

        index = builder.add(origin, end, radius, gen, parent_index)
        n_points = cloud.shape[0]
        daughter_radius = radius * 0.5 ** (1.0 / 3.0)
        if n_points < 2 or daughter_radius < min_radius_mm or gen >= max_generation:
            if leaves is not None:
                leaves.append((index, cloud))
            continue

        halves = _split_cloud(cloud, heading)
        for half in halves:
            share = half.shape[0] / n_points
            stack.append(
                (end, heading, radius * share ** (1.0 / 3.0), half, gen + 1, index)
            )

    return builder.build() if own_builder else TreeSegments.empty()


def _split_cloud(
    cloud: np.ndarray, heading: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Split points in two equal halves across their widest perpendicular axis."""
    centred = cloud - cloud.mean(axis=0)
    across = centred - np.outer(centred @ heading, heading)
    covariance = across.T @ across
    _, vectors = np.linalg.eigh(covariance)
    axis = vectors[:, -1]
    order = np.argsort(across @ axis)
    half = order.size // 2
    return cloud[order[:half]], cloud[order[half:]]


def render_tubes(
    grid: Grid,
    start: np.ndarray,
    end: np.ndarray,
    radii: np.ndarray,
    outputs: list[np.ndarray],
    *,
    radius_map: np.ndarray | None = None,
    max_chunk_voxels: int = 3_000_000,
) -> None:
    """Render capsule-shaped tubes into occupancy arrays, keeping the maximum.

    Parameters
    ----------
    grid : Grid
        The sampling grid; ``outputs`` have its shape.
    start, end : numpy.ndarray
        ``(n, 3)`` segment end points, ``x, y, z`` in mm.
    radii : numpy.ndarray
        ``(n, m)`` radii; column ``j`` is rendered into ``outputs[j]``.
    outputs : list of numpy.ndarray
        float32 occupancy arrays updated in place with the element-wise maximum.
    radius_map : numpy.ndarray, optional
        float32 array receiving, at every voxel, column 0's radius of the segment
        with the largest occupancy there.
    max_chunk_voxels : int
        Bound on the temporary arrays of one vectorised batch.
    """
    if start.shape[0] == 0:
        return
    width = grid.partial_volume_width_mm
    radii = np.asarray(radii, float).reshape(start.shape[0], -1)
    reach = radii.max(axis=1) + width

    low = np.minimum(start, end) - reach[:, None]
    high = np.maximum(start, end) + reach[:, None]
    axes = (grid.xs, grid.ys, grid.zs)
    first = np.stack(
        [np.searchsorted(a, low[:, k]) for k, a in enumerate(axes)], axis=1
    )
    last = np.stack(
        [np.searchsorted(a, high[:, k], side="right") for k, a in enumerate(axes)],
        axis=1,
    )
    extent = last - first
    visible = np.all(extent > 0, axis=1)

    # Batch segments whose boxes have the same (rounded-up) size.
    rounded = np.where(extent < 4, extent, -(-extent // 4) * 4)
    keys = rounded[:, 2] * 1_000_000 + rounded[:, 1] * 1000 + rounded[:, 0]
    flat_outputs = [out.reshape(-1) for out in outputs]
    flat_radius = radius_map.reshape(-1) if radius_map is not None else None
    nz, ny, nx = grid.shape

    for key in np.unique(keys[visible]):
        members = np.flatnonzero(visible & (keys == key))
        box = rounded[members[0]][::-1]  # (z, y, x)
        per_segment = int(np.prod(box))
        batch = max(1, max_chunk_voxels // per_segment)
        for i in range(0, members.size, batch):
            chosen = members[i : i + batch]
            _render_batch(
                chosen,
                box,
                first,
                last,
                start,
                end,
                radii,
                width,
                axes,
                (nz, ny, nx),
                flat_outputs,
                flat_radius,
            )


def _render_batch(
    chosen,
    box,
    first,
    last,
    start,
    end,
    radii,
    width,
    axes,
    shape,
    flat_outputs,
    flat_radius,
) -> None:
    kz, ky, kx = box
    nz, ny, nx = shape
    iz = first[chosen, 2][:, None] + np.arange(kz)
    iy = first[chosen, 1][:, None] + np.arange(ky)
    ix = first[chosen, 0][:, None] + np.arange(kx)
    valid = (
        (iz < last[chosen, 2][:, None])[:, :, None, None]
        & (iy < last[chosen, 1][:, None])[:, None, :, None]
        & (ix < last[chosen, 0][:, None])[:, None, None, :]
    )
    iz = np.minimum(iz, nz - 1)
    iy = np.minimum(iy, ny - 1)
    ix = np.minimum(ix, nx - 1)

    xs, ys, zs = axes
    a = start[chosen]
    ab = end[chosen] - a
    ab_len2 = np.maximum((ab * ab).sum(axis=1), 1e-12)
    dx = (xs[ix] - a[:, 0:1])[:, None, None, :]
    dy = (ys[iy] - a[:, 1:2])[:, None, :, None]
    dz = (zs[iz] - a[:, 2:3])[:, :, None, None]
    abx = ab[:, 0, None, None, None]
    aby = ab[:, 1, None, None, None]
    abz = ab[:, 2, None, None, None]
    t = np.clip(
        (dx * abx + dy * aby + dz * abz) / ab_len2[:, None, None, None], 0.0, 1.0
    )
    distance = np.sqrt((dx - t * abx) ** 2 + (dy - t * aby) ** 2 + (dz - t * abz) ** 2)

    flat_index = (iz[:, :, None, None] * ny + iy[:, None, :, None]) * nx + ix[
        :, None, None, :
    ]
    flat_index = np.broadcast_to(flat_index, distance.shape)
    for column, flat_output in enumerate(flat_outputs):
        radius = radii[chosen, column][:, None, None, None]
        occupied = tube_occupancy(distance, radius, width)
        keep = valid & (occupied > 0)
        index = flat_index[keep]
        values = occupied[keep]
        np.maximum.at(flat_output, index, values)
        if column == 0 and flat_radius is not None:
            winner = values >= flat_output[index]
            radius_values = np.broadcast_to(radius, distance.shape)[keep]
            flat_radius[index[winner]] = radius_values[winner]
