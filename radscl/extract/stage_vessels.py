"""The vessels stage: intrapulmonary vessels, their volume by calibre and zone."""

from __future__ import annotations

from typing import Any

from radscl.extract.params import Setting
from radscl.extract.stages import CaseState
from radscl.extract.stages import Stage

SETTINGS = {
    "scales_mm": Setting(
        "float_list",
        "Gaussian scales of the Hessian (best response at radius ~1.4 x scale)",
        minimum=0.1,
        maximum=10.0,
    ),
    "low_hu": Setting(
        "float", "lower hysteresis threshold on the tubularity", minimum=0.0
    ),
    "high_hu": Setting(
        "float", "upper (seed) hysteresis threshold on the tubularity", minimum=0.0
    ),
    "min_contrast_hu": Setting(
        "float", "least contrast above the local lung a vessel voxel needs", minimum=0.0
    ),
    "mesh_density_max": Setting(
        "float",
        "largest share of nearby lung that may be small-scale tubular (fibrotic mesh)",
        minimum=0.0,
        maximum=1.0,
    ),
    "middle_scale_fill": Setting(
        "float",
        "share of the lung-to-blood contrast a tube best seen at 0.8-2 mm must reach",
        minimum=0.0,
        maximum=1.0,
    ),
    "seed_length_mm": Setting(
        "float", "least extent of a connected group of seed voxels", minimum=0.0
    ),
    "airway_wall_mm": Setting(
        "float",
        "wall thickness assumed around an airway lumen given without a wall",
        minimum=0.0,
    ),
}


def _params(settings: dict[str, Any]):
    from radscl.segmentation.vessels import VesselParams

    values = dict(settings)
    values.pop("enabled", None)
    return VesselParams.from_mapping(values)


def _run(state: CaseState, settings: dict[str, Any]) -> None:
    from radscl.extractors.vessel import ZONES
    from radscl.extractors.vessel import vessel_features
    from radscl.segmentation.vessels import label_vessels
    from radscl.segmentation.vessels import segment_vessels

    vessels = segment_vessels(
        state.scan,
        state.lungs,
        airway_lumen=state.masks.get("airway_lumen"),
        airway_wall=state.masks.get("airway_wall"),
        params=_params(settings),
    )
    state.results["vessels"] = vessels
    state.masks["vessel"] = vessels.mask
    if state.label_map is not None:
        label_vessels(state.label_map, vessels)
    zones = {name: mask for name, mask in state.zones.items() if name in ZONES}
    state.add_columns(
        "vessels", vessel_features(state.scan, state.lungs, vessels, zones)
    )
    state.add_findings("vessels", vessels.findings)


def _method(settings: dict[str, Any]) -> dict[str, Any]:
    from radscl.segmentation.vessels import vessel_method

    return {
        "description": (
            "multi-scale Hessian tubularity (Sato's -l2 damped by Frangi's plate "
            "and blob terms) inside the lungs minus airway lumen and wall, dense "
            "tubular meshes (fibrosis) rejected, hysteresis from long seeds, "
            "area-preserving local threshold for the extent; cross-sectional "
            "area per voxel from vessel volume per centreline length; volumes "
            "from slice positions; gapped HRCT not measured"
        ),
        **vessel_method(_params(settings)),
    }


VESSELS = Stage(
    name="vessels",
    summary="intrapulmonary vessel volume, by cross-sectional area and zone",
    requires=("lungs",),
    settings=SETTINGS,
    run=_run,
    method=_method,
    modules=("radscl.segmentation.vessels", "radscl.extractors.vessel"),
)
