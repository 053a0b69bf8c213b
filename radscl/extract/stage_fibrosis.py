"""The fibrosis stage: parenchymal patterns, fibrosis extent and lung density."""

from __future__ import annotations

import dataclasses
import functools
import logging
from pathlib import Path
from typing import Any

import numpy as np

from radscl.extract.params import Setting
from radscl.extract.stages import CaseState
from radscl.extract.stages import Stage
from radscl.io import QualityFinding

logger = logging.getLogger(__name__)

#: Zones that get their own fibrosis and density columns.
FIBROSIS_ZONES = (
    "upper",
    "middle",
    "lower",
    "rind",
    "core",
    "dependent",
    "nondependent",
)

SETTINGS = {
    "model": Setting(
        "file",
        "classifier saved by `radscl fibrosis train`; null uses the default rules",
        nullable=True,
    ),
    "reclaim_vessels": Setting(
        "bool",
        "vessel voxels in mostly fibrotic lung take their surroundings' pattern",
    ),
    "zones": Setting(
        "str_list",
        "lung zones with their own columns",
        choices=FIBROSIS_ZONES,
    ),
}


@functools.lru_cache(maxsize=4)
def _cached_model(path: str, modified_ns: int):
    from radscl.extractors.fibrosis import load_pattern_model

    return load_pattern_model(path)


def _classifier(settings: dict[str, Any]):
    from radscl.extractors.fibrosis import PatternRules

    if settings["model"] is None:
        return PatternRules()
    path = Path(settings["model"])
    stat = path.stat() if path.is_file() else None
    return _cached_model(str(path), stat.st_mtime_ns if stat else 0)


def _run(state: CaseState, settings: dict[str, Any]) -> None:
    from radscl.extractors.fibrosis import FIBROTIC_PATTERNS
    from radscl.extractors.fibrosis import fibrosis_features

    lungs = state.lungs
    lung = lungs.lung_mask
    if not lung.any():
        # The lungs stage has reported the empty segmentation; leave the
        # columns out rather than report zeros.
        logger.debug("no lung: fibrosis stage skipped")
        return

    removed = [
        state.masks[name]
        for name in ("airway_lumen", "airway_wall", "vessel")
        if state.masks.get(name) is not None
    ]
    parenchyma = lung.copy()
    for mask in removed:
        parenchyma &= ~mask
    vessel = state.masks.get("vessel") if settings["reclaim_vessels"] else None
    if state.masks.get("vessel") is None:
        state.add_findings(
            "fibrosis",
            [
                QualityFinding(
                    "fibrosis_vessels_kept",
                    logging.INFO,
                    "no vessel mask: pulmonary vessels stay in the parenchyma and "
                    "part of them is counted as ground glass or reticulation",
                    "run the vessel stage (not possible on gapped HRCT); compare "
                    "extents only between scans measured the same way",
                )
            ],
        )

    zones = {
        name: state.zones[name] for name in settings["zones"] if name in state.zones
    }
    result = fibrosis_features(
        state.scan,
        lung,
        parenchyma,
        zones=zones,
        model=_classifier(settings),
        vessel_mask=vessel,
    )
    state.patterns = result.patterns
    state.masks["parenchyma"] = parenchyma
    state.masks["fibrosis"] = np.isin(result.patterns, FIBROTIC_PATTERNS)
    state.results["fibrosis"] = result.provenance
    state.add_columns("fibrosis", result.features)


def _method(settings: dict[str, Any]) -> dict[str, Any]:
    from radscl.extractors.fibrosis import PatternModel

    classifier = _classifier(settings)
    if isinstance(classifier, PatternModel):
        description = f"{classifier.description} from {classifier.source}"
        constants: dict[str, Any] = {"training": classifier.training}
    else:
        description = classifier.description
        rules = dataclasses.asdict(classifier)
        rules.pop("settings")
        constants = {"rules": rules}
    return {
        "method": "radscl-fibrosis-patterns-1",
        "description": (
            "parenchyma = lung - airway lumen - airway wall - vessels (those the "
            "earlier stages found); five patterns from 2 mm neighbourhood "
            "intensity and texture, sharp kernels pre-smoothed; extents as % of "
            "the whole lung; density (HAA -600..-250 HU, LAA < -950 HU, mean, "
            "percentiles, skewness, excess kurtosis) on the whole lung; gapped "
            "scans weighted by slice positions"
        ),
        "classifier": description,
        "feature_settings": dataclasses.asdict(classifier.settings),
        **constants,
        **settings,
    }


def _validate(settings: dict[str, Any], source: str) -> None:
    from radscl.errors import ParameterError

    try:
        _classifier(settings)
    except ParameterError as error:
        raise ParameterError(f"{source}: fibrosis.model: {error}") from None


FIBROSIS = Stage(
    name="fibrosis",
    summary="parenchymal pattern classification, fibrosis extent and lung density",
    requires=("lungs",),
    settings=SETTINGS,
    run=_run,
    method=_method,
    validate=_validate,
    modules=("radscl.extractors.fibrosis", "radscl.extractors.density"),
)
