"""The airways stage: airway lumen and wall, airway volumes and the airway tree."""

from __future__ import annotations

import dataclasses
from typing import Any

from radscl.extract.params import Setting
from radscl.extract.stages import CaseState
from radscl.extract.stages import Stage

SETTINGS = {
    "start_threshold_hu": Setting(
        "float",
        "first upper threshold of the region growing from the trachea",
        minimum=-1100.0,
        maximum=-400.0,
    ),
    "threshold_step_hu": Setting(
        "float", "finest step by which the growing threshold is raised", minimum=1.0
    ),
    "max_threshold_hu": Setting(
        "float",
        "highest growing threshold, leak or not",
        minimum=-1100.0,
        maximum=-400.0,
    ),
    "leak_growth_ratio": Setting(
        "float",
        "a threshold step that multiplies the lumen volume by more is a leak",
        minimum=1.01,
    ),
    "leak_volume_ml": Setting(
        "float", "a threshold step that adds more volume at once is a leak", minimum=1.0
    ),
    "boundary_band_mm": Setting(
        "float",
        "furthest the lumen edge is moved out to the half-way level",
        minimum=0.0,
        maximum=5.0,
    ),
    "refine_rounds": Setting(
        "int", "rounds of local growing at the tree's end points (0: none)", minimum=0
    ),
    "refine_step_hu": Setting(
        "float", "threshold step of the local growing at end points", minimum=1.0
    ),
    "refine_max_rise_hu": Setting(
        "float",
        "highest local threshold above the global one",
        minimum=0.0,
        maximum=500.0,
    ),
    "smooth_noise_hu": Setting(
        "float",
        "tracheal air noise (HU) above which the image is smoothed first",
        minimum=0.0,
    ),
}


def _params(settings: dict[str, Any]):
    from radscl.segmentation.airways import AirwayParams

    return AirwayParams.from_mapping(
        {key: settings[key] for key in SETTINGS if key in settings}
    )


def _run(state: CaseState, settings: dict[str, Any]) -> None:
    from radscl.extractors.airway import ZONES
    from radscl.extractors.airway import airway_features
    from radscl.segmentation.airways import airway_labels
    from radscl.segmentation.airways import segment_airways

    airways = segment_airways(state.scan, state.lungs, _params(settings))
    state.results["airways"] = airways
    state.add_findings("airways", airways.findings)

    zones = {name: state.zones[name] for name in ZONES if name in state.zones}
    features = airway_features(state.scan, state.lungs, airways, zones)
    state.add_columns("airways", features)

    base = state.label_map if state.label_map is not None else state.lungs.labels
    state.label_map = airway_labels(state.lungs, airways, base)
    state.masks["airway_lumen"] = airways.lumen
    state.masks["airway_wall"] = airways.wall


def _method(settings: dict[str, Any]) -> dict[str, Any]:
    params = _params(settings)
    return {
        "method": "radscl-classical-airways-1",
        "description": (
            "trachea seed from the lung segmentation or found as a round air "
            "tube; connected-threshold growing with the threshold raised until "
            "a step multiplies the volume (a leak); local growing at the tree's "
            "end points; lumen edge moved out to half-way between lumen and "
            "wall; wall as the bright shell around the lumen; centreline by "
            "3-D thinning, generations from the trachea (0); volumes from slice "
            "positions; gapped scans: trachea only and no tree"
        ),
        **dataclasses.asdict(params),
    }


def _validate(settings: dict[str, Any], source: str) -> None:
    from radscl.errors import ParameterError

    try:
        _params(settings)
    except ParameterError as error:
        raise ParameterError(f"{source}: airways: {error}") from None


AIRWAYS = Stage(
    name="airways",
    summary="airway lumen and wall, airway volumes and the airway tree",
    requires=("lungs",),
    settings=SETTINGS,
    run=_run,
    method=_method,
    validate=_validate,
    modules=(
        "radscl.segmentation.airways",
        "radscl.segmentation.airway_tree",
        "radscl.extractors.airway",
    ),
)
