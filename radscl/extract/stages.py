"""The stages of an extraction and the registry of those this version has.

A stage takes what the earlier stages left in a :class:`CaseState` (the scan,
the lung segmentation, the airway and vessel masks...), adds its feature
columns, its masks and its quality findings, and may paint its labels into
the combined label map. :data:`STAGES` lists the implemented stages in the
order they run; the parameter file has one section per stage, and a stage
that is not in the registry cannot be asked for.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

import numpy as np

from radscl.errors import ParameterError
from radscl.extract.params import OUTPUT_SETTINGS
from radscl.extract.params import ExtractionParameters
from radscl.extract.params import Setting
from radscl.io import QualityFinding
from radscl.io import Scan


@dataclasses.dataclass
class CaseState:
    """What the stages know about one case while it is extracted.

    Attributes
    ----------
    scan : Scan
        The loaded scan.
    case_id : str
        The case's id in the output (pseudonymised when asked).
    columns : dict
        Feature columns so far, in output order.
    findings : list of (str, QualityFinding)
        Quality findings with the stage that made them.
    label_map : numpy.ndarray or None
        ``uint8 [z, y, x]`` combined label map
        (:data:`radscl.segmentation.LABELS`), once a segmentation stage ran.
    patterns : numpy.ndarray or None
        ``uint8 [z, y, x]`` parenchymal pattern map, once the fibrosis stage
        ran.
    lungs : LungSegmentation or None
        The lung segmentation, once the lungs stage ran.
    zones : dict of str to numpy.ndarray
        Lung zones (:data:`radscl.segmentation.zones.ZONE_NAMES`).
    masks : dict of str to numpy.ndarray
        Other ``bool [z, y, x]`` masks by name (``airway_lumen``,
        ``airway_wall``, ``vessel``, ``parenchyma``, ``fibrosis``...), for the
        stages that follow.
    results : dict
        Stage results kept for later stages (segmentation objects).
    """

    scan: Scan
    case_id: str
    columns: dict[str, Any] = dataclasses.field(default_factory=dict)
    findings: list[tuple[str, QualityFinding]] = dataclasses.field(default_factory=list)
    label_map: np.ndarray | None = None
    patterns: np.ndarray | None = None
    lungs: Any = None
    zones: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    masks: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    results: dict[str, Any] = dataclasses.field(default_factory=dict)

    def add_columns(self, stage: str, values: Mapping[str, Any]) -> None:
        """Add a stage's feature columns; a name given twice is a bug."""
        clash = sorted(set(values) & set(self.columns))
        if clash:
            raise RuntimeError(f"stage {stage} repeats the column {clash[0]}")
        self.columns.update(values)

    def add_findings(self, stage: str, findings: list[QualityFinding]) -> None:
        """Record quality findings of a stage."""
        self.findings.extend((stage, finding) for finding in findings)


@dataclasses.dataclass(frozen=True)
class Stage:
    """One step of the extraction.

    Attributes
    ----------
    name : str
        Section name in the parameter file and label in logs and failures.
    summary : str
        One line saying what the stage measures.
    requires : tuple of str
        Stages that must run before this one.
    settings : mapping of str to Setting
        The stage's parameters, besides ``enabled``.
    run : callable
        ``run(state, settings)``: adds columns, masks and findings to the
        :class:`CaseState`.
    method : callable, optional
        ``method(settings) -> dict``: the method name and constants recorded
        in provenance.
    validate : callable, optional
        ``validate(settings, source)``: deeper checks done once before any
        case runs (for example of a referenced pyradiomics file); raises
        :class:`~radscl.errors.ParameterError`.
    modules : tuple of str
        Modules holding the implementation, imported by :meth:`load`.
    """

    name: str
    summary: str
    requires: tuple[str, ...]
    settings: Mapping[str, Setting]
    run: Callable[[CaseState, dict[str, Any]], None]
    method: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    validate: Callable[[dict[str, Any], str], None] | None = None
    modules: tuple[str, ...] = ()

    def load(self) -> None:
        """Import the stage's implementation (heavy libraries included)."""
        for module in self.modules:
            importlib.import_module(module)


def _builtin_stages() -> tuple[Stage, ...]:
    """The stages radscl ships, each defined in its own module."""
    from radscl.extract.stage_airways import AIRWAYS
    from radscl.extract.stage_fibrosis import FIBROSIS
    from radscl.extract.stage_lungs import LUNGS
    from radscl.extract.stage_radiomics import RADIOMICS
    from radscl.extract.stage_vessels import VESSELS

    return (LUNGS, AIRWAYS, VESSELS, FIBROSIS, RADIOMICS)


#: The implemented stages, in the order they run.
STAGES: tuple[Stage, ...] = _builtin_stages()


def stage_names() -> list[str]:
    """Names of the implemented stages, in running order."""
    return [stage.name for stage in STAGES]


def parameter_schema() -> dict[str, dict[str, Setting]]:
    """Every section of the parameter file and its settings.

    Returns
    -------
    dict
        ``outputs`` and one section per implemented stage, each stage section
        with ``enabled`` first.
    """
    schema: dict[str, dict[str, Setting]] = {"outputs": dict(OUTPUT_SETTINGS)}
    for stage in STAGES:
        section = {"enabled": Setting("bool", f"run the {stage.name} stage")}
        section.update(stage.settings)
        schema[stage.name] = section
    return schema


def enabled_stages(params: ExtractionParameters) -> list[Stage]:
    """The stages switched on, checked for their requirements.

    Parameters
    ----------
    params : ExtractionParameters

    Returns
    -------
    list of Stage
        In running order.

    Raises
    ------
    ParameterError
        When an enabled stage needs one that is switched off, or a stage's own
        check of its settings fails.
    """
    chosen = [stage for stage in STAGES if params.enabled(stage.name)]
    names = {stage.name for stage in chosen}
    for stage in chosen:
        for needed in stage.requires:
            if needed not in names:
                raise ParameterError(
                    f"{params.source}: {stage.name}.enabled is true but it needs "
                    f"{needed}, which is switched off"
                )
        if stage.validate is not None:
            stage.validate(params.section(stage.name), params.source)
    return chosen


def stage_methods(params: ExtractionParameters) -> dict[str, dict[str, Any]]:
    """The method record of every enabled stage, for provenance."""
    methods = {}
    for stage in enabled_stages(params):
        record = stage.method(params.section(stage.name)) if stage.method else {}
        methods[stage.name] = {"summary": stage.summary, **record}
    return methods
