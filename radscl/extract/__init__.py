"""Cohort extraction: every stage on every scan, one row per scan.

``radscl extract`` (and :func:`extract_cohort`) loads each scan, runs the
enabled stages (:data:`~radscl.extract.stages.STAGES`) and writes one folder
per case plus the cohort tables::

    OUT/features.csv, OUT/features.parquet   one row per finished case
    OUT/failures.csv                         case_id, input, error_type, message
    OUT/provenance.json                      versions, parameters and their hash,
                                             stage methods, runs, per-case time
                                             and peak memory
    OUT/cases/<case_id>/features.json        the row, quality findings, timing
    OUT/cases/<case_id>/labels.nii.gz        combined label map (when segmented)
    OUT/cases/<case_id>/failure.json         why the case failed, until it succeeds

Modules: :mod:`~radscl.extract.params` (the parameter file),
:mod:`~radscl.extract.stages` (the stage registry),
:mod:`~radscl.extract.cases` (case ids, manifests, pseudonyms),
:mod:`~radscl.extract.worker` (one case), :mod:`~radscl.extract.cohort`
(resume, executors, tables, provenance), :mod:`~radscl.extract.storage`
(atomic files) and :mod:`~radscl.extract.threads` (threads per worker).
"""

import importlib
from typing import Any

# Names are imported on first use: worker processes import
# radscl.extract.threads first and must set their thread limits before NumPy
# and ITK load.
_EXPORTS = {
    "STAGES": "radscl.extract.stages",
    "Case": "radscl.extract.cases",
    "CaseOutcome": "radscl.extract.worker",
    "ExtractionParameters": "radscl.extract.params",
    "ExtractionResult": "radscl.extract.cohort",
    "collect_cases": "radscl.extract.cases",
    "extract_cohort": "radscl.extract.cohort",
    "load_parameters": "radscl.extract.params",
    "pseudonym": "radscl.extract.cases",
    "rebuild_tables": "radscl.extract.cohort",
    "run_case": "radscl.extract.worker",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'radscl.extract' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
