"""Sampling grids, signed distances, smooth random fields and partial volume.

The phantom is defined in millimetres in the patient frame (LPS: ``x`` towards
the patient's left, ``y`` posterior, ``z`` towards the head) and then sampled on
a :class:`Grid`. Because shapes and random fields are functions of physical
position, the same anatomy can be sampled on a contiguous grid or on the few
slices of a gapped HRCT protocol.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage


@dataclasses.dataclass(frozen=True)
class Grid:
    """Voxel-centre coordinates of a volume, in mm, indexed ``[z, y, x]``.

    Attributes
    ----------
    xs, ys, zs : numpy.ndarray
        Ascending coordinates of voxel centres along each axis. ``zs`` may be
        irregular or gapped (one slice every 10 mm).
    slice_thickness_mm : float
        Nominal reconstructed slice thickness.
    """

    xs: np.ndarray
    ys: np.ndarray
    zs: np.ndarray
    slice_thickness_mm: float

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(nz, ny, nx)``."""
        return (self.zs.size, self.ys.size, self.xs.size)

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel spacing ``(z, y, x)``; ``z`` is the slice interval."""
        dz = (
            float(np.median(np.diff(self.zs)))
            if self.zs.size > 1
            else self.slice_thickness_mm
        )
        return (dz, float(self.ys[1] - self.ys[0]), float(self.xs[1] - self.xs[0]))

    @property
    def voxel_volume_ml(self) -> float:
        """Volume one voxel stands for (slice interval times pixel area)."""
        dz, dy, dx = self.spacing_mm
        return dz * dy * dx / 1000.0

    @property
    def partial_volume_width_mm(self) -> float:
        """Width of the partial-volume ramp across an edge.

        The geometric mean of the in-plane pixel size and the slice thickness:
        the extent of one voxel's footprint across an edge of any orientation.
        """
        _, dy, dx = self.spacing_mm
        return float((dy * dx * self.slice_thickness_mm) ** (1.0 / 3.0))

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable coordinate arrays ``(Z, Y, X)`` in float32."""
        z = self.zs.astype(np.float32)[:, None, None]
        y = self.ys.astype(np.float32)[None, :, None]
        x = self.xs.astype(np.float32)[None, None, :]
        return z, y, x

    def crop(
        self, x_range: tuple[float, float], y_range: tuple[float, float]
    ) -> tuple[Grid, tuple[slice, slice, slice]]:
        """Return the sub-grid inside an in-plane box and its index slices."""
        x0, x1 = np.searchsorted(self.xs, x_range)
        y0, y1 = np.searchsorted(self.ys, y_range)
        sub = Grid(self.xs[x0:x1], self.ys[y0:y1], self.zs, self.slice_thickness_mm)
        return sub, (slice(None), slice(y0, y1), slice(x0, x1))


def regular_axis(n: int, spacing_mm: float) -> np.ndarray:
    """Coordinates of ``n`` voxel centres spaced ``spacing_mm``, centred on 0."""
    return (np.arange(n) - (n - 1) / 2.0) * spacing_mm


def ellipsoid_sdf(
    z: np.ndarray,
    y: np.ndarray,
    x: np.ndarray,
    centre: tuple[float, float, float],
    semi_axes: tuple[float, float, float],
) -> np.ndarray:
    """Approximate signed distance (mm, negative inside) to an ellipsoid.

    ``centre`` and ``semi_axes`` are given as ``(x, y, z)``. The bound
    ``k0 (k0 - 1) / k1`` is exact on the surface and close to it nearby, which
    is where partial volume needs it.
    """
    cx, cy, cz = centre
    ax, ay, az = semi_axes
    u, v, w = (x - cx) / ax, (y - cy) / ay, (z - cz) / az
    k0 = np.sqrt(u * u + v * v + w * w)
    k1 = np.sqrt((u / ax) ** 2 + (v / ay) ** 2 + (w / az) ** 2)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-6)


def ellipse_sdf(
    y: np.ndarray,
    x: np.ndarray,
    centre: tuple[float, float],
    semi_axes: tuple[float, float],
) -> np.ndarray:
    """Approximate signed distance (mm) to an elliptic cylinder along ``z``.

    ``centre`` and ``semi_axes`` are ``(x, y)``.
    """
    cx, cy = centre
    ax, ay = semi_axes
    u, v = (x - cx) / ax, (y - cy) / ay
    k0 = np.sqrt(u * u + v * v)
    k1 = np.sqrt((u / ax) ** 2 + (v / ay) ** 2)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-6)


def occupancy(sdf: np.ndarray, width_mm: float) -> np.ndarray:
    """Partial-volume fraction from a signed distance: a linear ramp.

    The ramp is antisymmetric about the surface, so it conserves the volume of
    any shape whose curvature radius is large compared with ``width_mm``.
    """
    return np.clip(0.5 - sdf / width_mm, 0.0, 1.0).astype(np.float32, copy=False)


def tube_occupancy(
    distance_mm: np.ndarray, radius_mm: np.ndarray, width_mm: float
) -> np.ndarray:
    """Partial-volume fraction of a tube, conserving its cross-sectional area.

    A plain ramp overstates thin tubes (by ``w^2 / 12r^2`` of their area). For a
    tube of radius ``r`` and ramp width ``w`` the ramp is centred on
    ``sqrt(r^2 - w^2/12)``, which makes the integral over a cross-section equal
    ``pi r^2`` exactly; tubes thinner than ``w / sqrt(3)`` use a cone profile of
    the same integral. Both profiles meet at ``r = w / sqrt(3)``.
    """
    r2 = radius_mm * radius_mm
    threshold = width_mm * width_mm / 3.0
    thick = r2 >= threshold
    shifted = np.sqrt(np.maximum(r2 - width_mm * width_mm / 12.0, 0.0))
    ramp = np.clip(0.5 - (distance_mm - shifted) / width_mm, 0.0, 1.0)
    cone = (3.0 * r2 / (width_mm * width_mm)) * np.clip(
        1.0 - distance_mm / width_mm, 0.0, 1.0
    )
    return np.where(thick, ramp, cone).astype(np.float32, copy=False)


@dataclasses.dataclass
class SmoothField:
    """A smooth Gaussian random field defined in physical space.

    White noise on a lattice of ``lattice_mm`` is smoothed and scaled to unit
    standard deviation, and sampled anywhere by separable linear
    interpolation, so two grids sampling the same field see the same values.
    """

    lattice: np.ndarray
    origin_mm: tuple[float, float, float]
    lattice_mm: float

    @classmethod
    def draw(
        cls,
        rng: np.random.Generator,
        bounds_mm: tuple[tuple[float, float], tuple[float, float], tuple[float, float]],
        lattice_mm: float,
        smoothing_cells: float = 1.0,
    ) -> SmoothField:
        """Draw a field over ``bounds_mm`` given as ``((x0, x1), (y0, y1), (z0, z1))``."""
        (x0, x1), (y0, y1), (z0, z1) = bounds_mm
        shape = tuple(
            int(np.ceil((hi - lo) / lattice_mm)) + 3
            for lo, hi in ((z0, z1), (y0, y1), (x0, x1))
        )
        noise = rng.standard_normal(shape, dtype=np.float32)
        if smoothing_cells > 0:
            noise = ndimage.gaussian_filter(noise, smoothing_cells, mode="wrap")
        noise -= noise.mean()
        noise /= noise.std()
        origin = (x0 - lattice_mm, y0 - lattice_mm, z0 - lattice_mm)
        return cls(noise, origin, lattice_mm)

    def on_grid(self, grid: Grid) -> np.ndarray:
        """Sample the field at every voxel centre of ``grid`` (float32).

        Linear interpolation is separable, so it is done one axis at a time
        with two taps per output sample.
        """
        field = self.lattice
        for axis, coords, origin in (
            (2, grid.xs, self.origin_mm[0]),
            (1, grid.ys, self.origin_mm[1]),
            (0, grid.zs, self.origin_mm[2]),
        ):
            lower, frac = _linear_taps(
                coords, origin, self.lattice_mm, field.shape[axis]
            )
            shape = [1, 1, 1]
            shape[axis] = -1
            weight = frac.reshape(shape)
            below = np.take(field, lower, axis=axis)
            above = np.take(field, lower + 1, axis=axis)
            above -= below
            above *= weight
            below += above
            field = below
        return field.astype(np.float32, copy=False)

    def at_points(self, points_xyz: np.ndarray) -> np.ndarray:
        """Sample the field at points given as an ``(n, 3)`` array of ``x, y, z``."""
        coords = np.stack(
            [
                (points_xyz[:, 2] - self.origin_mm[2]) / self.lattice_mm,
                (points_xyz[:, 1] - self.origin_mm[1]) / self.lattice_mm,
                (points_xyz[:, 0] - self.origin_mm[0]) / self.lattice_mm,
            ]
        )
        return ndimage.map_coordinates(self.lattice, coords, order=1, mode="nearest")


def _linear_taps(
    coords: np.ndarray, origin: float, step: float, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Lower lattice index and fractional weight of each coordinate."""
    position = np.clip((coords - origin) / step, 0.0, n - 1.000001)
    lower = np.floor(position).astype(np.intp)
    return lower, (position - lower).astype(np.float32)


def blend(image: np.ndarray, value: float | np.ndarray, fraction: np.ndarray) -> None:
    """Paint ``value`` over ``image`` in place with partial-volume ``fraction``."""
    image *= 1.0 - fraction
    image += fraction * value
