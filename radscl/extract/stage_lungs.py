"""The lungs stage: lung segmentation, lung volumes and zones."""

from __future__ import annotations

from typing import Any

from radscl.extract.params import Setting
from radscl.extract.stages import CaseState
from radscl.extract.stages import Stage

SETTINGS = {
    "air_threshold_hu": Setting(
        "float",
        "lung/tissue threshold; null chooses it from the histogram",
        minimum=-999.0,
        maximum=-1.0,
        nullable=True,
    ),
    "closing_radius_mm": Setting(
        "float",
        "radius of the ball closing each lung, bringing dense edge regions in",
        minimum=0.0,
        maximum=30.0,
    ),
    "rind_mm": Setting(
        "float", "depth of the peripheral rind zone below the pleura", minimum=1.0
    ),
}


def _run(state: CaseState, settings: dict[str, Any]) -> None:
    from radscl.segmentation.lungs import LungParams
    from radscl.segmentation.lungs import segment_lungs
    from radscl.segmentation.zones import lung_zones

    params = LungParams(
        air_threshold_hu=settings["air_threshold_hu"],
        closing_radius_mm=settings["closing_radius_mm"],
    )
    lungs = segment_lungs(state.scan, params)
    state.lungs = lungs
    state.label_map = lungs.labels.copy()
    state.add_columns("lungs", lungs.volumes_ml())
    state.add_findings("lungs", lungs.findings)

    if lungs.lung_mask.any():
        state.zones = lung_zones(
            lungs.labels,
            lungs.spacing_mm,
            state.scan.slice_positions_mm,
            contiguous=bool(state.scan.contiguous),
            rind_mm=settings["rind_mm"],
        )


def _method(settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "method": "radscl-classical-lungs-1",
        "description": (
            "body mask, histogram air threshold, trachea and main bronchi "
            "separated, left/right split at the junctions, each lung closed "
            "to include dense fibrosis at the pleura; volumes from slice "
            "positions; zones: thirds of each lung's height, rind within "
            "rind_mm of the lung boundary, dependent = posterior half (supine)"
        ),
        **settings,
    }


LUNGS = Stage(
    name="lungs",
    summary="lung segmentation, lung volumes and zones",
    requires=(),
    settings=SETTINGS,
    run=_run,
    method=_method,
    modules=("radscl.segmentation.lungs", "radscl.segmentation.zones"),
)
