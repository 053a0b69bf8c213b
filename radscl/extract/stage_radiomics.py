"""The radiomics stage: pyradiomics features of lung regions.

Runs :func:`radscl.extractors.radiomics.extract_radiomics` on the regions named
in the ``radiomics.masks`` setting, with the pyradiomics parameter file of
``radiomics.params_file``. Columns are ``rad_<mask>_<pyradiomics name>``, for
example ``rad_parenchyma_original_glcm_Contrast`` or
``rad_zone_lower_original_firstorder_Mean``.

The regions:

- ``lung``: both lungs from the lungs stage, intrapulmonary airways and
  vessels included (the region of ``lung_volume_ml``);
- ``parenchyma`` (lung without airways and vessels), ``fibrosis``: the masks
  an earlier stage left in ``state.masks``;
- ``zone_<name>``: the lung zones of the lungs stage (upper, middle, lower,
  rind, core, dependent, nondependent).

A region no earlier stage made has empty (NaN) columns and an INFO finding,
so that features.csv has the same columns whichever stages ran. An empty
region (no fibrosis) or one pyradiomics rejects as too small has empty
columns with the reason logged.

Known shortcomings: on gapped HRCT (1 mm slices 10 mm apart) 3D texture and
resampling across the gaps mean nothing, so every column is empty with a
finding, unless the parameter file sets ``force2D``. The stage is slow
(seconds per region on a full-size scan, see docs/radiomics.md), so it is
switched off in the default parameters.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from radscl.errors import ParameterError
from radscl.extract.params import Setting
from radscl.extract.stages import CaseState
from radscl.extract.stages import Stage
from radscl.io import QualityFinding

logger = logging.getLogger(__name__)

#: Zones of :func:`radscl.segmentation.zones.lung_zones`, as region names.
ZONE_MASKS = tuple(
    f"zone_{zone}"
    for zone in (
        "upper",
        "middle",
        "lower",
        "rind",
        "core",
        "dependent",
        "nondependent",
    )
)

#: Regions earlier stages leave in ``state.masks``.
STAGE_MASKS = ("parenchyma", "fibrosis")

#: Every region the stage can measure.
MASK_NAMES = ("lung", *STAGE_MASKS, *ZONE_MASKS)

SETTINGS = {
    "params_file": Setting(
        "file",
        "pyradiomics parameter file (imageType, featureClass, setting)",
    ),
    "masks": Setting(
        "str_list",
        "regions to extract features from, each giving rad_<mask>_ columns",
        choices=MASK_NAMES,
    ),
}


def _validate(settings: dict[str, Any], source: str) -> None:
    from radscl.extractors.radiomics import load_params

    try:
        load_params(settings["params_file"])
    except ParameterError as error:
        raise ParameterError(f"{source}: radiomics.params_file: {error}") from None
    if not settings["masks"]:
        raise ParameterError(f"{source}: radiomics.masks: name at least one region")


def _run(state: CaseState, settings: dict[str, Any]) -> None:
    from radscl.extractors.radiomics import COLUMN_PREFIX
    from radscl.extractors.radiomics import extract_radiomics
    from radscl.extractors.radiomics import load_params
    from radscl.extractors.radiomics import radiomics_feature_names

    config = load_params(settings["params_file"])
    names = list(settings["masks"])

    skipped = not state.scan.contiguous and not config.get("setting", {}).get("force2D")
    if skipped:
        state.add_findings(
            "radiomics",
            [
                QualityFinding(
                    "radiomics_needs_contiguous_slices",
                    logging.WARNING,
                    "the scan has gaps between slices; 3D texture and resampling "
                    "across the gaps would be meaningless",
                    "radiomics columns are empty; a parameter file with force2D "
                    "computes in-plane texture instead",
                )
            ],
        )
        available: dict[str, np.ndarray] = {}
    else:
        available = _regions(state, names)

    missing = [name for name in names if name not in available]
    if missing and not skipped:
        state.add_findings("radiomics", [_missing_finding(missing)])

    values = extract_radiomics(state.scan, available, config, case_id=state.case_id)
    features = radiomics_feature_names(config) if missing else []
    columns: dict[str, float] = {}
    for name in names:
        prefix = f"{COLUMN_PREFIX}{name}_"
        if name in available:
            columns.update((k, v) for k, v in values.items() if k.startswith(prefix))
        else:
            columns.update((f"{prefix}{feature}", math.nan) for feature in features)
    state.add_columns("radiomics", columns)


def _regions(state: CaseState, names: list[str]) -> dict[str, np.ndarray]:
    """The requested regions that the earlier stages made, by name."""
    lungs = state.lungs
    if lungs is None:
        raise RuntimeError("the radiomics stage needs the lungs stage to run first")

    lung = lungs.lung_mask
    regions = {}
    for name in names:
        if name == "lung":
            regions[name] = lung
        elif name in STAGE_MASKS:
            if name in state.masks:
                regions[name] = np.asarray(state.masks[name], dtype=bool)
        else:
            zone = state.zones.get(name.removeprefix("zone_"))
            # no zones when no lung was found: the zone is then empty
            regions[name] = np.zeros_like(lung) if zone is None else zone
    return regions


def _missing_finding(missing: list[str]) -> QualityFinding:
    return QualityFinding(
        "radiomics_region_not_made",
        logging.INFO,
        f"no earlier stage made the region(s) {', '.join(missing)}",
        "their radiomics columns are empty; enable the stages that make them or "
        "leave them out of radiomics.masks",
    )


def _method(settings: dict[str, Any]) -> dict[str, Any]:
    import radiomics

    from radscl.extractors.radiomics import load_params

    return {
        "method": f"pyradiomics {radiomics.__version__}",
        "description": (
            "pyradiomics features per region, columns rad_<mask>_<feature>; "
            "regions cropped to their neighbourhood and resampled on "
            "pyradiomics' own grid; radscl sets label=1 and additionalInfo=false"
        ),
        "pyradiomics_parameters": load_params(settings["params_file"]),
        **settings,
    }


RADIOMICS = Stage(
    name="radiomics",
    summary="pyradiomics features of the lung, parenchyma, zones and fibrosis",
    requires=("lungs",),
    settings=SETTINGS,
    run=_run,
    method=_method,
    validate=_validate,
    modules=("radscl.extractors.radiomics",),
)
