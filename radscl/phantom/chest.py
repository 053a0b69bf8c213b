"""A synthetic chest CT with exact ground truth.

:func:`make_phantom` draws a supine adult chest: air, a CT table, the body wall
with subcutaneous fat and muscle, ribs and spine, the mediastinum with heart and
aorta, two lungs that meet at thin anterior and posterior junctions, a trachea
and a branching airway tree with walls, pulmonary arteries running beside the
airways and an independent venous tree, and optionally fibrosis (subpleural,
basal-predominant ground glass, reticulation and, when severe, honeycombing,
with traction dilation of the airways inside fibrotic lung) and emphysema.

Image formation blends every structure with partial volume, blurs with a
Gaussian point-spread function and adds correlated noise whose level and grain
mimic a soft or a sharp reconstruction kernel. Ground truth comes from the
same partial-volume fractions, so the volumes in :attr:`Phantom.truth` are the
volumes of the drawn anatomy, not of a thresholded image.

Label values of :attr:`Phantom.labels` are :data:`TISSUE_LABELS`; those of
:attr:`Phantom.lungs` are :data:`LUNG_LABELS`.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np
from scipy import ndimage

from radscl.errors import RadsclError
from radscl.phantom.geometry import Grid
from radscl.phantom.geometry import SmoothField
from radscl.phantom.geometry import blend
from radscl.phantom.geometry import ellipse_sdf
from radscl.phantom.geometry import ellipsoid_sdf
from radscl.phantom.geometry import occupancy
from radscl.phantom.geometry import regular_axis
from radscl.phantom.trees import TreeSegments
from radscl.phantom.trees import grow_space_filling
from radscl.phantom.trees import render_tubes

logger = logging.getLogger(__name__)

#: Tissue classes of the ground-truth label map.
TISSUE_LABELS: dict[int, str] = {
    0: "outside lung",
    1: "normal lung",
    2: "airway lumen",
    3: "airway wall",
    4: "vessel",
    5: "ground glass",
    6: "reticulation",
    7: "honeycombing",
    8: "emphysema",
}

#: Labels of the lung map: the two lungs and the extrapulmonary airway lumen.
LUNG_LABELS: dict[int, str] = {
    0: "background",
    1: "right lung",
    2: "left lung",
    3: "trachea and main bronchi",
}

FIBROSIS_LABELS = (5, 6, 7)

#: In-plane matrix, pixel size and slice interval of the two sizes.
SIZE_PRESETS: dict[str, dict[str, float]] = {
    "full": {"matrix": 512, "pixel_mm": 0.70, "slice_mm": 1.0, "min_radius_mm": 0.45},
    "small": {"matrix": 160, "pixel_mm": 2.25, "slice_mm": 2.5, "min_radius_mm": 0.9},
}

#: Cranio-caudal extent of every phantom volume, in mm.
Z_RANGE_MM = (-140.0, 150.0)
#: Gapped HRCT: 1 mm slices every 10 mm.
GAPPED_INTERVAL_MM = 10.0
GAPPED_THICKNESS_MM = 1.0

#: Point-spread function (Gaussian sigma, mm), edge enhancement and noise
#: (default level in HU and correlation length in mm) of the two kernels.
KERNELS: dict[str, dict[str, float]] = {
    "soft": {"psf_mm": 0.65, "enhance": 0.0, "noise_hu": 18.0, "noise_grain_mm": 0.75},
    "sharp": {"psf_mm": 0.40, "enhance": 0.6, "noise_hu": 45.0, "noise_grain_mm": 0.30},
}

HU_AIR = -1000.0
HU_FAT = -100.0
HU_MUSCLE = 45.0
HU_SOFT = 35.0
HU_BLOOD = 40.0
HU_LIVER = 58.0
HU_BONE = 420.0
HU_CORTEX = 850.0
HU_TABLE = 160.0
HU_AIRWAY_WALL = 30.0
HU_LUNG = -860.0

# The in-plane box that contains the thoracic cavity; lung work happens there.
_CAVITY_BOX_X = (-150.0, 150.0)
_CAVITY_BOX_Y = (-104.0, 100.0)


@dataclasses.dataclass(frozen=True)
class PhantomSpec:
    """What to draw.

    Attributes
    ----------
    size : str
        ``"small"`` (160x160, 2.25 mm pixels, 2.5 mm slices; fast, for tests) or
        ``"full"`` (512x512, 0.7 mm pixels, 1 mm slices).
    seed : int
        Anatomy and noise seed; the same seed draws the same patient.
    fibrosis_pct : float
        Requested fibrotic share of the lung, 0 to 60. Airways and vessels
        inside fibrotic lung stay airways and vessels, so the true extent in
        :attr:`Phantom.truth` is slightly lower than requested.
    emphysema_pct : float
        Requested emphysematous share of the lung (upper-zone predominant).
    airway_dilation : float
        Lumen radius factor for airways (generation 3 and beyond) inside
        fibrotic lung: traction dilation.
    vessel_scale : float
        Radius factor of every pulmonary vessel.
    kernel : str
        ``"soft"`` or ``"sharp"`` reconstruction.
    noise_hu : float, optional
        Noise standard deviation; the kernel's default when omitted.
    hu_offset : float
        Calibration offset added to every voxel (scanner drift).
    gapped : bool
        Sample 1 mm slices every 10 mm of the same anatomy (incremental HRCT).
    """

    size: str = "small"
    seed: int = 0
    fibrosis_pct: float = 0.0
    emphysema_pct: float = 0.0
    airway_dilation: float = 1.0
    vessel_scale: float = 1.0
    kernel: str = "soft"
    noise_hu: float | None = None
    hu_offset: float = 0.0
    gapped: bool = False

    def validate(self) -> None:
        """Raise :class:`RadsclError` naming the first out-of-range field."""
        if self.size not in SIZE_PRESETS:
            raise RadsclError(
                f"size must be one of {sorted(SIZE_PRESETS)}, but found {self.size!r}"
            )
        if self.kernel not in KERNELS:
            raise RadsclError(
                f"kernel must be one of {sorted(KERNELS)}, but found {self.kernel!r}"
            )
        if not 0.0 <= self.fibrosis_pct <= 60.0:
            raise RadsclError(
                f"fibrosis_pct must be in [0, 60], but found {self.fibrosis_pct}"
            )
        if not 0.0 <= self.emphysema_pct <= 30.0:
            raise RadsclError(
                f"emphysema_pct must be in [0, 30], but found {self.emphysema_pct}"
            )
        if self.fibrosis_pct + self.emphysema_pct > 70.0:
            raise RadsclError("fibrosis_pct + emphysema_pct must not exceed 70")
        if not 0.5 <= self.airway_dilation <= 3.0:
            raise RadsclError(
                f"airway_dilation must be in [0.5, 3], but found {self.airway_dilation}"
            )
        if not 0.5 <= self.vessel_scale <= 2.0:
            raise RadsclError(
                f"vessel_scale must be in [0.5, 2], but found {self.vessel_scale}"
            )
        if self.noise_hu is not None and not 0.0 <= self.noise_hu <= 200.0:
            raise RadsclError(
                f"noise_hu must be in [0, 200], but found {self.noise_hu}"
            )


@dataclasses.dataclass
class Phantom:
    """A synthetic chest CT and its ground truth.

    Attributes
    ----------
    hounsfield : numpy.ndarray
        ``int16 [z, y, x]`` image in HU, LPS orientation as in :mod:`radscl.io`.
    labels : numpy.ndarray
        ``uint8`` tissue classes (:data:`TISSUE_LABELS`).
    lungs : numpy.ndarray
        ``uint8`` lung map (:data:`LUNG_LABELS`).
    spacing_mm : tuple of float
        ``(z, y, x)``; ``z`` is the slice interval.
    origin_mm : tuple of float
        ``(x, y, z)`` of voxel ``[0, 0, 0]``.
    slice_positions_mm : numpy.ndarray
        ``z`` of every slice.
    slice_thickness_mm : float
        Nominal slice thickness.
    truth : dict
        Ground-truth measurements with the names of ``features.csv``.
    spec : PhantomSpec
        What was drawn.
    """

    hounsfield: np.ndarray
    labels: np.ndarray
    lungs: np.ndarray
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    slice_positions_mm: np.ndarray
    slice_thickness_mm: float
    truth: dict[str, Any]
    spec: PhantomSpec

    def to_scan(self):
        """Return the image as a :class:`radscl.io.Scan` without touching disk."""
        from radscl.io import QualityFinding
        from radscl.io import Scan
        from radscl.io import ScanMetadata

        contiguous = not self.spec.gapped
        metadata = ScanMetadata(
            source_format="phantom",
            shape=tuple(int(n) for n in self.hounsfield.shape),
            spacing_mm=self.spacing_mm,
            slice_thickness_mm=self.slice_thickness_mm,
            slice_interval_mm=self.spacing_mm[0],
            contiguous=contiguous,
            modality="CT",
            kernel=_kernel_name(self.spec.kernel),
            manufacturer="radscl",
            model="synthetic chest phantom",
            kvp=120.0,
            contrast=False,
        )
        quality = []
        if not contiguous:
            quality.append(
                QualityFinding(
                    "gapped",
                    logging.WARNING,
                    f"gapped HRCT: {self.slice_thickness_mm:g} mm slices every "
                    f"{self.spacing_mm[0]:g} mm",
                    "volumes use slice positions; tree measurements are left empty",
                )
            )
        return Scan(
            hounsfield=self.hounsfield,
            spacing_mm=self.spacing_mm,
            origin_mm=self.origin_mm,
            direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
            slice_positions_mm=self.slice_positions_mm,
            metadata=metadata,
            quality=quality,
            source=f"phantom(seed={self.spec.seed})",
        )


def _kernel_name(kernel: str) -> str:
    return {"soft": "SYNTH-SOFT", "sharp": "SYNTH-LUNG"}[kernel]


def phantom_grid(size: str = "small", gapped: bool = False) -> Grid:
    """The sampling grid of a phantom size, contiguous or gapped."""
    preset = SIZE_PRESETS[size]
    xs = regular_axis(int(preset["matrix"]), preset["pixel_mm"])
    ys = regular_axis(int(preset["matrix"]), preset["pixel_mm"])
    if gapped:
        zs = np.arange(Z_RANGE_MM[0] + 5.0, Z_RANGE_MM[1], GAPPED_INTERVAL_MM)
        return Grid(xs, ys, zs, GAPPED_THICKNESS_MM)
    n_slices = int(round((Z_RANGE_MM[1] - Z_RANGE_MM[0]) / preset["slice_mm"])) + 1
    zs = Z_RANGE_MM[0] + np.arange(n_slices) * preset["slice_mm"]
    return Grid(xs, ys, zs, preset["slice_mm"])


# --------------------------------------------------------------------------
# Anatomy


@dataclasses.dataclass
class _Anatomy:
    """Shape parameters of one patient, drawn from the seed."""

    lungs: dict[str, dict[str, Any]]
    body_semi_axes: tuple[float, float]
    cavity_semi_axes: tuple[float, float]
    cavity_centre: tuple[float, float]
    heart_centre: tuple[float, float, float]
    heart_semi_axes: tuple[float, float, float]
    carina: np.ndarray
    trachea_xy: tuple[float, float]
    hilum: dict[str, np.ndarray]
    venous_hilum: dict[str, np.ndarray]
    rib_levels: np.ndarray


def _draw_anatomy(rng: np.random.Generator) -> _Anatomy:
    size = rng.normal(1.0, 0.03)
    height = rng.normal(1.0, 0.03)
    lungs = {
        "right": {
            "centre": (-66.0, 2.0, -30.0),
            "semi_axes": (86.0 * size, 112.0 * size, 158.0 * height),
            "dome_base_z": -112.0 * height,
            "dome_height": 46.0,
            "side": -1.0,
        },
        "left": {
            "centre": (68.0, 4.0, -32.0),
            "semi_axes": (84.0 * size, 110.0 * size, 154.0 * height),
            "dome_base_z": -118.0 * height,
            "dome_height": 38.0,
            "side": 1.0,
        },
    }
    carina = np.array([0.0, -8.0, 14.0])
    return _Anatomy(
        lungs=lungs,
        body_semi_axes=(166.0 * size, 120.0 * size),
        cavity_semi_axes=(128.0 * size, 92.0 * size),
        cavity_centre=(0.0, -2.0),
        heart_centre=(16.0, -30.0, -62.0),
        heart_semi_axes=(64.0, 50.0, 54.0),
        carina=carina,
        trachea_xy=(0.0, -10.0),
        hilum={
            "right": np.array([-33.0, -3.0, 2.0]),
            "left": np.array([35.0, -1.0, -10.0]),
        },
        venous_hilum={
            "right": np.array([-33.0, 14.0, -34.0]),
            "left": np.array([35.0, 16.0, -40.0]),
        },
        rib_levels=np.arange(-125.0, 140.0, 24.0) + rng.uniform(-3, 3),
    )


def _mediastinum_sdf(anatomy: _Anatomy, z, y, x) -> np.ndarray:
    """Signed distance to everything between and behind the lungs."""
    # Central column (trachea, oesophagus, great vessels, hila), wider below
    # the aortic arch.
    half_width = 22.0 + 7.0 * np.clip((40.0 - z) / 40.0, 0.0, 1.0)
    column = np.sqrt((x / half_width) ** 2 + ((y + 6.0) / 52.0) ** 2) - 1.0
    column = column * np.minimum(half_width, 52.0)
    # Anterior junction: the lungs almost meet in front, above the heart.
    anterior = np.maximum(np.abs(x) - 1.2, y + 50.0)
    heart = ellipsoid_sdf(z, y, x, anatomy.heart_centre, anatomy.heart_semi_axes) - 4.0
    aorta = np.maximum(np.sqrt((x - 24.0) ** 2 + (y - 50.0) ** 2) - 16.0, z - 38.0)
    spine = np.sqrt(x * x + (y - 70.0) ** 2) - 29.0
    spine_back = np.maximum(np.abs(x) - 26.0, 70.0 - y)
    result = np.minimum(column, anterior)
    for part in (heart, aorta, spine, spine_back):
        result = np.minimum(result, part)
    return result


def _lung_sdf(anatomy: _Anatomy, side: str, z, y, x) -> np.ndarray:
    """Approximate signed distance to one lung's pleural surface (mm).

    A lung fills its half of the thoracic cavity down to the diaphragm, minus
    the mediastinum; an ellipsoid rounds off its apex.
    """
    lung = anatomy.lungs[side]
    cx, cy, _ = lung["centre"]
    ax, ay, _ = lung["semi_axes"]
    apex = ellipsoid_sdf(z, y, x, lung["centre"], lung["semi_axes"])
    cavity = ellipse_sdf(y, x, anatomy.cavity_centre, anatomy.cavity_semi_axes)
    radial = ((x - cx) / (ax * 0.95)) ** 2 + ((y - cy - 12.0) / (ay * 0.95)) ** 2
    dome_z = lung["dome_base_z"] + lung["dome_height"] * np.clip(1.0 - radial, 0.0, 1.0)
    diaphragm = (dome_z - z) * 0.85
    own_side = 1.2 - lung["side"] * x
    result = np.maximum(apex, cavity)
    result = np.maximum(result, diaphragm)
    result = np.maximum(result, own_side)
    return np.maximum(result, -_mediastinum_sdf(anatomy, z, y, x))


def _sample_lung_points(
    rng: np.random.Generator,
    anatomy: _Anatomy,
    side: str,
    n: int,
    margin_mm: float = 1.5,
) -> np.ndarray:
    """Uniform random points inside one lung, at least ``margin_mm`` from its surface."""
    lung = anatomy.lungs[side]
    centre = np.array(lung["centre"])
    semi = np.array(lung["semi_axes"])
    chosen: list[np.ndarray] = []
    count = 0
    while count < n:
        candidates = centre + rng.uniform(-1.0, 1.0, size=(4 * n, 3)) * semi
        sdf = _lung_sdf(
            anatomy, side, candidates[:, 2], candidates[:, 1], candidates[:, 0]
        )
        inside = candidates[sdf < -margin_mm]
        chosen.append(inside)
        count += inside.shape[0]
    return np.concatenate(chosen)[:n]


# --------------------------------------------------------------------------
# Trees


@dataclasses.dataclass
class _Trees:
    airway: TreeSegments
    airway_outer_radius: np.ndarray
    vessel: TreeSegments
    airway_lung_side: np.ndarray


def _wall_thickness_mm(lumen_radius: np.ndarray) -> np.ndarray:
    # Wall thickness grows with calibre; about 2 mm at the trachea.
    return 0.18 * lumen_radius + 0.35


def _grow_trees(
    rng: np.random.Generator,
    anatomy: _Anatomy,
    spec: PhantomSpec,
    min_radius_mm: float,
    fibrotic_at,
) -> _Trees:
    trachea_top = np.array([*anatomy.trachea_xy, Z_RANGE_MM[1] + 5.0])
    airways = TreeSegments(
        start=np.array([trachea_top]),
        end=np.array([anatomy.carina]),
        radius=np.array([8.5]),
        generation=np.array([0]),
        parent=np.array([-1]),
    )
    main_radius = {"right": 6.2, "left": 5.6}
    vessels = TreeSegments.empty()
    airway_side = [0]

    for side_index, side in enumerate(("right", "left"), start=1):
        lung_inside = _lung_point_sdf(anatomy, side)
        hilum = anatomy.hilum[side]
        bronchus = TreeSegments(
            start=np.array([anatomy.carina]),
            end=np.array([hilum]),
            radius=np.array([main_radius[side]]),
            generation=np.array([1]),
            parent=np.array([-1]),
        )
        airways = airways.concatenate(bronchus, attach_to=0)
        airway_side.append(side_index)
        main_index = len(airways) - 1

        airway_points = _sample_lung_points(rng, anatomy, side, 2048)
        lobar = grow_space_filling(
            hilum,
            hilum - anatomy.carina,
            main_radius[side] * 0.5 ** (1 / 3),
            airway_points,
            generation=2,
            min_radius_mm=min_radius_mm,
            inside=lung_inside,
        )
        airways = airways.concatenate(lobar, attach_to=main_index)
        airway_side.extend([side_index] * len(lobar))

        arteries = _arteries_beside(
            anatomy, side, bronchus, lobar, spec.airway_dilation, fibrotic_at
        )
        vessels = vessels.concatenate(arteries)

        vein_points = _sample_lung_points(rng, anatomy, side, 6144)
        venous_root = anatomy.venous_hilum[side]
        atrium = np.array([12.0, 10.0, -52.0])
        trunk = TreeSegments(
            start=np.array([atrium]),
            end=np.array([venous_root]),
            radius=np.array([6.0]),
            generation=np.array([0]),
            parent=np.array([-1]),
        )
        veins = grow_space_filling(
            venous_root,
            venous_root - atrium,
            5.2,
            vein_points,
            generation=1,
            min_radius_mm=min_radius_mm,
            inside=lung_inside,
            length_fraction=0.35,
        )
        vessels = vessels.concatenate(trunk.concatenate(veins, attach_to=0))

    # Traction dilation: airways from generation 3 on inside fibrotic lung.
    lumen = airways.radius.copy()
    if spec.airway_dilation != 1.0 and spec.fibrosis_pct > 0:
        dilated = (airways.generation >= 3) & fibrotic_at(airways.midpoint)
        lumen[dilated] *= spec.airway_dilation
    outer = lumen + _wall_thickness_mm(airways.radius)
    airways = dataclasses.replace(airways, radius=lumen)
    vessels = dataclasses.replace(vessels, radius=vessels.radius * spec.vessel_scale)
    return _Trees(airways, outer, vessels, np.array(airway_side))


def _lung_point_sdf(anatomy: _Anatomy, side: str):
    def inside(points: np.ndarray) -> np.ndarray:
        return _lung_sdf(anatomy, side, points[:, 2], points[:, 1], points[:, 0])

    return inside


def _arteries_beside(
    anatomy: _Anatomy,
    side: str,
    bronchus: TreeSegments,
    lobar: TreeSegments,
    dilation: float,
    fibrotic_at,
) -> TreeSegments:
    """Pulmonary arteries running beside every bronchus, in bronchovascular bundles.

    Each artery node sits beside the end of its bronchus, offset perpendicular
    to the bronchus by the bronchial outer radius plus the artery radius; the
    offset direction is carried from parent to daughter so that arteries stay
    on one side of their airways. Artery calibre follows the undilated airway
    (a normal broncho-arterial ratio of 0.85); dilated airways push their
    artery aside rather than swallowing it.
    """
    ratio = 0.85
    n = len(lobar)
    generation = lobar.generation
    dilated = (generation >= 3) & fibrotic_at(lobar.midpoint)
    lumen = np.where(dilated, lobar.radius * dilation, lobar.radius)
    outer = lumen + _wall_thickness_mm(lobar.radius)
    artery_radius = lobar.radius / ratio

    hilum = bronchus.end[0]
    bronchus_direction = hilum - bronchus.start[0]
    reference = np.array([0.0, -1.0, 0.6])
    root_offset = _perpendicular(reference, bronchus_direction)
    root_radius = bronchus.radius[0] / ratio
    root_outer = bronchus.radius[0] + _wall_thickness_mm(bronchus.radius[:1])[0]
    root_node = hilum + root_offset * (root_outer + root_radius + 0.8)
    trunk_start = np.array([2.0, -42.0, -8.0])

    offsets = np.zeros((n, 3))
    nodes = np.zeros((n, 3))
    for i in range(n):
        parent = lobar.parent[i]
        previous = root_offset if parent < 0 else offsets[parent]
        direction = lobar.end[i] - lobar.start[i]
        offsets[i] = _perpendicular(previous, direction)
        nodes[i] = lobar.end[i] + offsets[i] * (outer[i] + artery_radius[i] + 0.6)
    starts = np.array([root_node if p < 0 else nodes[p] for p in lobar.parent])

    trunk = TreeSegments(
        start=np.array([trunk_start]),
        end=np.array([root_node]),
        radius=np.array([root_radius]),
        generation=np.array([1]),
        parent=np.array([-1]),
    )
    branches = TreeSegments(
        start=starts,
        end=nodes,
        radius=artery_radius,
        generation=generation,
        parent=lobar.parent,
    )
    return trunk.concatenate(branches, attach_to=0)


def _perpendicular(vector: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Unit component of ``vector`` perpendicular to ``direction``."""
    direction = direction / np.linalg.norm(direction)
    across = vector - np.dot(vector, direction) * direction
    norm = np.linalg.norm(across)
    if norm < 1e-6:
        across = np.cross(direction, [1.0, 0.0, 0.0])
        norm = np.linalg.norm(across)
    return across / norm


# --------------------------------------------------------------------------
# Fibrosis and emphysema


@dataclasses.dataclass
class _Disease:
    """Propensity fields and their thresholds for each pattern."""

    fibrosis_field: SmoothField
    emphysema_field: SmoothField
    texture_field: SmoothField
    net_field: SmoothField
    lung_top_z: float
    lung_bottom_z: float
    fibrosis_threshold: float
    reticulation_threshold: float
    honeycomb_threshold: float
    emphysema_threshold: float
    cysts: tuple = ()


def _fibrosis_propensity(disease: _Disease, depth_mm, z, noise) -> np.ndarray:
    """Higher where fibrosis starts first: subpleural and basal."""
    span = disease.lung_top_z - disease.lung_bottom_z
    basal = np.clip((disease.lung_top_z - z) / span, 0.0, 1.0) ** 1.5
    subpleural = np.exp(-np.maximum(depth_mm, 0.0) / 14.0)
    return 0.55 * subpleural + 0.45 * basal + 0.16 * noise


def _emphysema_propensity(disease: _Disease, z, noise) -> np.ndarray:
    """Higher at the apices, patchy."""
    span = disease.lung_top_z - disease.lung_bottom_z
    apical = np.clip((z - disease.lung_bottom_z) / span, 0.0, 1.0) ** 2
    return 0.6 * apical + 0.35 * noise


def _plan_disease(
    rng: np.random.Generator, anatomy: _Anatomy, spec: PhantomSpec
) -> _Disease:
    bounds = (_CAVITY_BOX_X, _CAVITY_BOX_Y, Z_RANGE_MM)
    fibrosis_field = SmoothField.draw(rng, bounds, 6.0, 1.2)
    emphysema_field = SmoothField.draw(rng, bounds, 5.0, 1.0)
    texture_field = SmoothField.draw(rng, bounds, 2.0, 1.0)
    net_field = SmoothField.draw(rng, bounds, 1.4, 1.3)

    # Calibrate thresholds on a grid-independent sample of the lung, so that
    # contiguous and gapped sampling see exactly the same anatomy.
    sample = np.concatenate(
        [
            _sample_lung_points(rng, anatomy, side, 60000, margin_mm=0.0)
            for side in ("right", "left")
        ]
    )
    tops = [lung["centre"][2] + lung["semi_axes"][2] for lung in anatomy.lungs.values()]
    bottoms = [lung["dome_base_z"] for lung in anatomy.lungs.values()]
    disease = _Disease(
        fibrosis_field,
        emphysema_field,
        texture_field,
        net_field,
        lung_top_z=float(max(tops)),
        lung_bottom_z=float(min(bottoms)),
        fibrosis_threshold=np.inf,
        reticulation_threshold=np.inf,
        honeycomb_threshold=np.inf,
        emphysema_threshold=np.inf,
    )
    disease.cysts = _draw_cyst_lattice(rng)
    depth = -np.minimum(
        _lung_sdf(anatomy, "right", sample[:, 2], sample[:, 1], sample[:, 0]),
        _lung_sdf(anatomy, "left", sample[:, 2], sample[:, 1], sample[:, 0]),
    )
    propensity = _fibrosis_propensity(
        disease, depth, sample[:, 2], fibrosis_field.at_points(sample)
    )

    extent = spec.fibrosis_pct / 100.0
    if extent > 0:
        honeycomb_share = np.clip((spec.fibrosis_pct - 12.0) / 28.0, 0.0, 1.0) * 0.30
        reticulation_share = 0.45
        disease.fibrosis_threshold = float(np.quantile(propensity, 1.0 - extent))
        disease.reticulation_threshold = float(
            np.quantile(
                propensity, 1.0 - extent * (honeycomb_share + reticulation_share)
            )
        )
        if honeycomb_share > 0:
            disease.honeycomb_threshold = float(
                np.quantile(propensity, 1.0 - extent * honeycomb_share)
            )

    if spec.emphysema_pct > 0:
        spared = propensity < disease.fibrosis_threshold
        emphysema = _emphysema_propensity(
            disease, sample[:, 2], emphysema_field.at_points(sample)
        )
        share = min(spec.emphysema_pct / 100.0 / max(spared.mean(), 1e-6), 1.0)
        disease.emphysema_threshold = float(np.quantile(emphysema[spared], 1.0 - share))
    return disease


def _draw_cyst_lattice(rng: np.random.Generator, spacing_mm: float = 5.5) -> tuple:
    """Jittered cyst centres and wall thicknesses over the whole cavity box."""
    axes = [
        np.arange(lo, hi, spacing_mm)
        for lo, hi in (_CAVITY_BOX_X, _CAVITY_BOX_Y, Z_RANGE_MM)
    ]
    lattice = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).astype(np.float32)
    centres = lattice + rng.uniform(-1.8, 1.8, lattice.shape).astype(np.float32)
    wall_mm = rng.uniform(0.9, 1.6, lattice.shape[:3]).astype(np.float32)
    origin = np.array([a[0] for a in axes], np.float32)
    return centres, wall_mm, origin, spacing_mm


def _fibrotic_points(anatomy: _Anatomy, disease: _Disease):
    """A function telling which points lie in fibrotic lung."""

    def fibrotic(points: np.ndarray) -> np.ndarray:
        if not np.isfinite(disease.fibrosis_threshold):
            return np.zeros(points.shape[0], dtype=bool)
        depth = -np.minimum(
            _lung_sdf(anatomy, "right", points[:, 2], points[:, 1], points[:, 0]),
            _lung_sdf(anatomy, "left", points[:, 2], points[:, 1], points[:, 0]),
        )
        value = _fibrosis_propensity(
            disease, depth, points[:, 2], disease.fibrosis_field.at_points(points)
        )
        return (value >= disease.fibrosis_threshold) & (depth > 0)

    return fibrotic


# --------------------------------------------------------------------------
# Assembly


def make_phantom(
    size: str = "small",
    *,
    seed: int = 0,
    fibrosis_pct: float = 0.0,
    emphysema_pct: float = 0.0,
    airway_dilation: float = 1.0,
    vessel_scale: float = 1.0,
    kernel: str = "soft",
    noise_hu: float | None = None,
    hu_offset: float = 0.0,
    gapped: bool = False,
) -> Phantom:
    """Draw a synthetic chest CT with its ground truth.

    Parameters are those of :class:`PhantomSpec`.

    Returns
    -------
    Phantom
        Image, label maps, geometry and ground-truth measurements.

    Raises
    ------
    RadsclError
        If a parameter is out of range.
    """
    spec = PhantomSpec(
        size=size,
        seed=seed,
        fibrosis_pct=fibrosis_pct,
        emphysema_pct=emphysema_pct,
        airway_dilation=airway_dilation,
        vessel_scale=vessel_scale,
        kernel=kernel,
        noise_hu=noise_hu,
        hu_offset=hu_offset,
        gapped=gapped,
    )
    spec.validate()
    return _draw(spec)


def _draw(spec: PhantomSpec) -> Phantom:
    anatomy_rng = np.random.default_rng([spec.seed, 0])
    anatomy = _draw_anatomy(anatomy_rng)
    disease = _plan_disease(anatomy_rng, anatomy, spec)
    fibrotic_at = _fibrotic_points(anatomy, disease)
    min_radius = SIZE_PRESETS[spec.size]["min_radius_mm"]
    trees = _grow_trees(anatomy_rng, anatomy, spec, min_radius, fibrotic_at)
    logger.debug(
        "phantom trees: %d airway and %d vessel segments",
        len(trees.airway),
        len(trees.vessel),
    )

    grid = phantom_grid(spec.size, spec.gapped)
    lung_grid, crop = grid.crop(_CAVITY_BOX_X, _CAVITY_BOX_Y)
    fields = _lung_fields(anatomy, lung_grid, trees)
    parenchyma, tissue = _parenchyma(anatomy, disease, lung_grid, fields)

    image = _body(anatomy, grid)
    _paint_lungs(image[crop], fields, parenchyma)
    labels, lung_map = _label_maps(grid, crop, fields, tissue)
    truth = _truth(grid, crop, fields, tissue, labels, lung_map, trees, spec)

    hounsfield = _form_image(image, grid, spec)
    spacing = grid.spacing_mm
    origin = (float(grid.xs[0]), float(grid.ys[0]), float(grid.zs[0]))
    return Phantom(
        hounsfield=hounsfield,
        labels=labels,
        lungs=lung_map,
        spacing_mm=spacing,
        origin_mm=origin,
        slice_positions_mm=grid.zs.copy(),
        slice_thickness_mm=grid.slice_thickness_mm,
        truth=truth,
        spec=spec,
    )


@dataclasses.dataclass
class _LungFields:
    right_sdf: np.ndarray
    left_sdf: np.ndarray
    right: np.ndarray
    left: np.ndarray
    lumen: np.ndarray
    outer: np.ndarray
    vessel: np.ndarray
    vessel_radius: np.ndarray

    @property
    def lung(self) -> np.ndarray:
        return self.right + self.left

    @property
    def vessel_only(self) -> np.ndarray:
        """Vessel fraction not taken by an airway (airways win where they cross)."""
        return self.vessel * (1.0 - self.outer)


def _lung_fields(anatomy: _Anatomy, grid: Grid, trees: _Trees) -> _LungFields:
    z, y, x = grid.axes()
    width = grid.partial_volume_width_mm
    right_sdf = _lung_sdf(anatomy, "right", z, y, x).astype(np.float32)
    left_sdf = _lung_sdf(anatomy, "left", z, y, x).astype(np.float32)

    lumen = np.zeros(grid.shape, np.float32)
    outer = np.zeros(grid.shape, np.float32)
    render_tubes(
        grid,
        trees.airway.start,
        trees.airway.end,
        np.stack([trees.airway.radius, trees.airway_outer_radius], axis=1),
        [lumen, outer],
    )
    vessel = np.zeros(grid.shape, np.float32)
    vessel_radius = np.zeros(grid.shape, np.float32)
    render_tubes(
        grid,
        trees.vessel.start,
        trees.vessel.end,
        trees.vessel.radius[:, None],
        [vessel],
        radius_map=vessel_radius,
    )
    return _LungFields(
        right_sdf,
        left_sdf,
        occupancy(right_sdf, width),
        occupancy(left_sdf, width),
        lumen,
        outer,
        vessel,
        vessel_radius,
    )


def _parenchyma(
    anatomy: _Anatomy,
    disease: _Disease,
    grid: Grid,
    fields: _LungFields,
) -> tuple[np.ndarray, np.ndarray]:
    """HU of lung tissue between airways and vessels, and its pattern class.

    Patterns are evaluated only on the lung voxels that carry them.
    """
    z, y, x = grid.axes()
    texture = disease.texture_field.on_grid(grid)

    # Normal lung: denser towards the dependent (posterior) side in a supine patient.
    gravity = np.clip((y + 100.0) / 200.0, 0.0, 1.0)
    parenchyma = HU_LUNG + 45.0 * gravity + 14.0 * texture
    tissue = np.zeros(grid.shape, np.uint8)
    in_lung = np.flatnonzero((fields.right >= 0.5) | (fields.left >= 0.5))
    tissue.ravel()[in_lung] = 1
    lung_voxels = np.flatnonzero((fields.right > 0) | (fields.left > 0))
    iz, iy, ix = np.unravel_index(lung_voxels, grid.shape)
    points = np.stack([grid.xs[ix], grid.ys[iy], grid.zs[iz]], axis=1)
    flat_parenchyma = parenchyma.ravel()
    flat_texture = texture.ravel()[lung_voxels]
    flat_tissue = tissue.ravel()
    inside = flat_tissue[lung_voxels] > 0

    if np.isfinite(disease.fibrosis_threshold):
        depth = -np.minimum(
            fields.right_sdf.ravel()[lung_voxels], fields.left_sdf.ravel()[lung_voxels]
        )
        propensity = _fibrosis_propensity(
            disease, depth, points[:, 2], disease.fibrosis_field.at_points(points)
        )
        fibrotic = propensity >= disease.fibrosis_threshold
        reticular = propensity >= disease.reticulation_threshold
        honeycomb = propensity >= disease.honeycomb_threshold

        flat_parenchyma[lung_voxels[fibrotic]] = -640.0 + 30.0 * flat_texture[fibrotic]
        net = disease.net_field.at_points(points[reticular])
        lines = np.clip(1.0 - np.abs(net) / 0.32, 0.0, 1.0) ** 1.5
        flat_parenchyma[lung_voxels[reticular]] = (
            -700.0 + 30.0 * flat_texture[reticular] + 640.0 * lines
        )
        if honeycomb.any():
            air = _honeycomb_air(disease, grid, points[honeycomb])
            flat_parenchyma[lung_voxels[honeycomb]] = -60.0 + (-950.0 + 60.0) * air

        for label, selected in ((5, fibrotic), (6, reticular), (7, honeycomb)):
            flat_tissue[lung_voxels[selected & inside]] = label

    if np.isfinite(disease.emphysema_threshold):
        emphysema = (
            _emphysema_propensity(
                disease, points[:, 2], disease.emphysema_field.at_points(points)
            )
            >= disease.emphysema_threshold
        )
        emphysema &= flat_tissue[lung_voxels] <= 1
        flat_parenchyma[lung_voxels[emphysema]] = (
            -965.0 + 12.0 * flat_texture[emphysema]
        )
        flat_tissue[lung_voxels[emphysema & inside]] = 8

    return parenchyma, tissue


def _honeycomb_air(disease: _Disease, grid: Grid, points: np.ndarray) -> np.ndarray:
    """Air fraction at ``points`` of clustered cysts with shared thin walls.

    Cyst centres are a jittered lattice; every honeycomb voxel belongs to the
    cyst of its nearest centre, and a wall runs where the nearest and the
    second-nearest centres are about equally far (the faces of their Voronoi
    cells), which gives cysts 3 to 8 mm across.
    """
    centres, wall_mm, origin, spacing = disease.cysts
    lattice_shape = wall_mm.shape
    points = points.astype(np.float32)
    cell = np.rint((points - origin) / spacing).astype(np.intp)

    # The jitter is under half the spacing, so the two nearest centres lie in
    # the 3 x 3 x 3 block of cells around a point's own cell.
    nearest = np.full(points.shape[0], np.inf, np.float32)
    second = np.full(points.shape[0], np.inf, np.float32)
    owner_wall = np.zeros(points.shape[0], np.float32)
    for offset in np.ndindex(3, 3, 3):
        index = tuple(
            np.clip(cell[:, k] + offset[k] - 1, 0, lattice_shape[k] - 1)
            for k in range(3)
        )
        distance = np.sqrt(((points - centres[index]) ** 2).sum(axis=1))
        closer = distance < nearest
        second = np.where(closer, nearest, np.minimum(second, distance))
        owner_wall = np.where(closer, wall_mm[index], owner_wall)
        nearest = np.where(closer, distance, nearest)
    gap = second - nearest
    width = grid.partial_volume_width_mm
    return np.clip((gap - owner_wall) / width + 0.5, 0.0, 1.0)


def _paint_lungs(
    image: np.ndarray, fields: _LungFields, parenchyma: np.ndarray
) -> None:
    """Paint lung tissue, vessels and airways over the cavity region of ``image``."""
    lung = np.minimum(fields.lung, 1.0)
    blend(image, parenchyma, lung)
    blend(image, HU_BLOOD, fields.vessel)
    blend(image, HU_AIRWAY_WALL, fields.outer)
    blend(image, HU_AIR, fields.lumen)


def _body(anatomy: _Anatomy, grid: Grid) -> np.ndarray:
    """Everything but the lungs: air, table, body wall, bones, mediastinum."""
    width = grid.partial_volume_width_mm
    y2 = grid.ys.astype(np.float32)[:, None]
    x2 = grid.xs.astype(np.float32)[None, :]

    # The body cross-section does not change along z: compose it once in 2D.
    section = np.full((grid.ys.size, grid.xs.size), HU_AIR, np.float32)
    a, b = anatomy.body_semi_axes
    table_y = b + 8.0 + 0.0006 * x2**2
    table = np.maximum(np.abs(y2 - table_y) - 3.0, np.abs(x2) - 190.0)
    blend(section, HU_TABLE, occupancy(table, width))
    blend(section, HU_FAT, occupancy(ellipse_sdf(y2, x2, (0.0, 0.0), (a, b)), width))
    muscle = ellipse_sdf(y2, x2, (0.0, 0.0), (a - 16.0, b - 13.0))
    blend(section, HU_MUSCLE, occupancy(muscle, width))
    ca, cb = anatomy.cavity_semi_axes
    cavity = ellipse_sdf(y2, x2, anatomy.cavity_centre, (ca, cb))
    blend(section, HU_SOFT, occupancy(cavity, width))
    posterior = np.maximum(np.abs(x2) - 24.0, np.maximum(92.0 - y2, y2 - 112.0))
    blend(section, HU_BONE, occupancy(posterior, width))
    canal = np.sqrt(x2 * x2 + (y2 - 99.0) ** 2) - 8.0
    blend(section, 15.0, occupancy(canal, width))
    sternum = np.maximum(np.abs(x2) - 14.0, np.abs(y2 + cb + 6.0) - 5.0)
    blend(section, HU_BONE, occupancy(sternum, width))

    # Vertebral bodies alternate with discs along z.
    vertebra = np.sqrt(x2 * x2 + (y2 - 70.0) ** 2) - 22.0
    with_bone = section.copy()
    with_disc = section.copy()
    for target, core in ((with_bone, HU_BONE), (with_disc, 80.0)):
        blend(target, HU_CORTEX, occupancy(vertebra, width))
        blend(target, core, occupancy(vertebra + 2.0, width))
    disc = np.abs(((grid.zs - 6.0) % 28.0) - 14.0) > 11.5
    image = np.empty(grid.shape, np.float32)
    image[disc] = with_disc
    image[~disc] = with_bone

    _paint_mediastinum(anatomy, grid, image)

    # Ribs: bands just outside the cavity, sloping down towards the front.
    ring = (
        np.abs(ellipse_sdf(y2, x2, anatomy.cavity_centre, (ca + 5.0, cb + 5.0))) - 3.5
    )
    ring = np.maximum(ring, 22.0 - np.abs(x2))
    rows, cols = np.nonzero(ring < width)
    slope = 0.18 * (y2[rows, 0] + 100.0)
    for level in anatomy.rib_levels:
        band = np.flatnonzero(
            (grid.zs > level - 6.0 - width)
            & (grid.zs < level + slope.max() + 6.0 + width)
        )
        if band.size == 0:
            continue
        z = grid.zs[band].astype(np.float32)[:, None]
        rib = np.maximum(ring[rows, cols][None], np.abs(z - level - slope[None]) - 4.5)
        values = image[band[:, None], rows[None], cols[None]]
        blend(values, HU_BONE, occupancy(rib, width))
        image[band[:, None], rows[None], cols[None]] = values
    return image


def _paint_mediastinum(anatomy: _Anatomy, grid: Grid, image: np.ndarray) -> None:
    """Liver under the right dome, heart with its fat, descending aorta."""
    sub, crop = grid.crop(_CAVITY_BOX_X, _CAVITY_BOX_Y)
    z, y, x = sub.axes()
    width = grid.partial_volume_width_mm
    region = image[crop]

    right = anatomy.lungs["right"]
    liver_top = right["dome_base_z"] + right["dome_height"] * 0.9
    liver = np.maximum(z - liver_top, ellipse_sdf(y, x, (-30.0, 0.0), (110.0, 85.0)))
    blend(region, HU_LIVER, occupancy(liver, width))
    heart = ellipsoid_sdf(z, y, x, anatomy.heart_centre, anatomy.heart_semi_axes)
    blend(region, HU_FAT, occupancy(heart - 3.0, width))
    blend(region, HU_BLOOD, occupancy(heart, width))
    aorta = np.maximum(np.sqrt((x - 24.0) ** 2 + (y - 50.0) ** 2) - 12.0, z - 34.0)
    blend(region, HU_BLOOD, occupancy(aorta, width))


def _label_maps(
    grid: Grid, crop, fields: _LungFields, tissue: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    labels = np.zeros(grid.shape, np.uint8)
    lung_map = np.zeros(grid.shape, np.uint8)

    in_lung = (fields.right >= 0.5) | (fields.left >= 0.5)
    crop_labels = np.where(in_lung, tissue, 0).astype(np.uint8)
    crop_labels[in_lung & (fields.vessel_only >= 0.5)] = 4
    crop_labels[in_lung & (fields.outer >= 0.5) & (fields.lumen < 0.5)] = 3
    crop_labels[fields.lumen >= 0.5] = 2
    labels[crop] = crop_labels

    crop_lungs = np.zeros(fields.right.shape, np.uint8)
    crop_lungs[fields.right >= 0.5] = 1
    crop_lungs[fields.left >= 0.5] = 2
    crop_lungs[(fields.lumen >= 0.5) & ~in_lung] = 3
    lung_map[crop] = crop_lungs
    return labels, lung_map


def _truth(
    grid: Grid,
    crop,
    fields: _LungFields,
    tissue: np.ndarray,
    labels: np.ndarray,
    lung_map: np.ndarray,
    trees: _Trees,
    spec: PhantomSpec,
) -> dict[str, Any]:
    """Ground-truth measurements from partial-volume fractions and label counts."""
    voxel_ml = grid.voxel_volume_ml
    lung = np.minimum(fields.lung, 1.0)
    lung_ml = float(lung.sum(dtype=np.float64) * voxel_ml)
    right_ml = float(fields.right.sum(dtype=np.float64) * voxel_ml)
    left_ml = float(fields.left.sum(dtype=np.float64) * voxel_ml)

    airway_ml = float(fields.lumen.sum(dtype=np.float64) * voxel_ml)
    airway_intra_ml = float((fields.lumen * lung).sum(dtype=np.float64) * voxel_ml)
    vessel_voxels = np.flatnonzero(fields.vessel)
    vessel = (
        fields.vessel.ravel()[vessel_voxels]
        * (1.0 - fields.outer.ravel()[vessel_voxels])
        * lung.ravel()[vessel_voxels]
    )
    vessel_ml = float(vessel.sum(dtype=np.float64) * voxel_ml)
    csa = np.pi * fields.vessel_radius.ravel()[vessel_voxels] ** 2
    bins = {
        "vessel_volume_csa_lt5_ml": csa < 5.0,
        "vessel_volume_csa_5to10_ml": (csa >= 5.0) & (csa <= 10.0),
        "vessel_volume_csa_gt10_ml": csa > 10.0,
    }

    lung_voxels = int(
        np.count_nonzero(lung_map[crop] == 1) + np.count_nonzero(lung_map[crop] == 2)
    )
    counts = np.bincount(labels[crop][lung_map[crop] > 0].ravel(), minlength=9)
    in_lung_counts = np.bincount(
        labels[crop][(lung_map[crop] == 1) | (lung_map[crop] == 2)].ravel(), minlength=9
    )

    def percent(*classes: int) -> float:
        return float(
            100.0 * sum(in_lung_counts[c] for c in classes) / max(lung_voxels, 1)
        )

    airway = trees.airway
    in_lungs = trees.airway_lung_side > 0
    generations = airway.generation
    by_generation = {
        int(g): int(np.count_nonzero(generations == g)) for g in np.unique(generations)
    }
    radius_by_generation = {
        int(g): float(airway.radius[generations == g].mean())
        for g in np.unique(generations)
    }
    truth: dict[str, Any] = {
        "slice_thickness_mm": grid.slice_thickness_mm,
        "slice_interval_mm": grid.spacing_mm[0],
        "contiguous": not spec.gapped,
        "lung_volume_ml": lung_ml,
        "lung_right_volume_ml": right_ml,
        "lung_left_volume_ml": left_ml,
        "airway_volume_ml": airway_ml,
        "airway_intrapulmonary_volume_ml": airway_intra_ml,
        "airway_lung_ratio_pct": 100.0 * airway_intra_ml / lung_ml,
        "airway_branch_count": int(np.count_nonzero(in_lungs)),
        "airway_max_generation": int(generations.max()),
        "airway_branch_count_by_generation": by_generation,
        "airway_lumen_radius_mm_by_generation": radius_by_generation,
        "vessel_volume_ml": vessel_ml,
        "vessel_lung_ratio_pct": 100.0 * vessel_ml / lung_ml,
        "fibrosis_extent_pct": percent(*FIBROSIS_LABELS),
        "ggo_pct": percent(5),
        "reticulation_pct": percent(6),
        "honeycombing_pct": percent(7),
        "emphysema_pct": percent(8),
        "label_voxel_counts": {TISSUE_LABELS[i]: int(c) for i, c in enumerate(counts)},
        "lung_label_volume_ml": lung_voxels * voxel_ml,
    }
    for name, selected in bins.items():
        truth[name] = float(vessel[selected].sum(dtype=np.float64) * voxel_ml)
    truth["vessel_small_share_pct"] = (
        100.0 * truth["vessel_volume_csa_lt5_ml"] / max(vessel_ml, 1e-9)
    )
    return truth


def _form_image(image: np.ndarray, grid: Grid, spec: PhantomSpec) -> np.ndarray:
    """Blur with the kernel's point-spread function, add noise, quantise to int16.

    White noise is added before the blur for a soft kernel, which gives it the
    point-spread function's grain; a sharp kernel adds it after the blur and
    then enhances edges, which sharpens the noise as a real sharp kernel does.
    """
    kernel = KERNELS[spec.kernel]
    dz, dy, dx = grid.spacing_mm
    along_z = 0.0 if spec.gapped else 1.0
    psf = (
        along_z * kernel["psf_mm"] / dz,
        kernel["psf_mm"] / dy,
        kernel["psf_mm"] / dx,
    )
    noise_hu = kernel["noise_hu"] if spec.noise_hu is None else spec.noise_hu
    noise_rng = np.random.default_rng([spec.seed, 1, int(spec.gapped)])
    sharp = kernel["enhance"] > 0

    # Uniform noise of unit variance; the blur makes it Gaussian in practice.
    noise = noise_rng.random(grid.shape, dtype=np.float32)
    noise -= 0.5
    noise *= np.float32(np.sqrt(12.0))
    if sharp:
        blurred = ndimage.gaussian_filter(image, psf, mode="nearest")
        noise *= noise_hu / (1.0 + kernel["enhance"])
        blurred += noise
        del noise
        smooth = ndimage.gaussian_filter(
            blurred, (along_z * 1.2 / dz, 1.2 / dy, 1.2 / dx), mode="nearest"
        )
        blurred += kernel["enhance"] * (blurred - smooth)
        del smooth
    else:
        noise *= noise_hu / _blurred_noise_sd(psf)
        image += noise
        del noise
        blurred = ndimage.gaussian_filter(image, psf, mode="nearest")

    blurred += spec.hu_offset
    np.clip(blurred, -1024.0, 3071.0, out=blurred)
    return np.rint(blurred).astype(np.int16)


def _blurred_noise_sd(sigmas: tuple[float, float, float]) -> float:
    """Standard deviation of unit white noise after a Gaussian blur."""
    impulse = np.zeros((17, 17, 17), np.float64)
    impulse[8, 8, 8] = 1.0
    response = ndimage.gaussian_filter(impulse, sigmas, mode="constant")
    return float(np.sqrt((response**2).sum()))
