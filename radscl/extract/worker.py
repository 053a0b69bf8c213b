"""Extracting one case: load, run the stages, write the case folder.

:func:`run_case` is what every executor (in-process, worker processes, Dask)
calls. It never raises for a bad scan: any error becomes a ``failure.json``
with the error type and a one-line message, and the outcome says so.

Privacy of error messages
-------------------------
radscl's own errors never quote DICOM identifiers. Errors from other libraries
while a scan is being read (pydicom, GDCM) may quote header values, so their
messages are replaced by the error type and the module it came from; after the
scan is loaded, stages see only pixel arrays and identifier-free metadata and
their messages are kept. Warnings are handled the same way and are recorded as
findings instead of being printed. When ids are pseudonymised, the input's
paths and the original id are also blanked out of messages, findings and log
records.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import resource
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from radscl import __version__
from radscl.errors import RadsclError
from radscl.extract import storage
from radscl.extract.cases import Case
from radscl.extract.params import ExtractionParameters
from radscl.extract.threads import available_cores
from radscl.extract.threads import thread_limit

logger = logging.getLogger(__name__)

#: Acquisition columns of every row, after the case id and manifest columns.
ACQUISITION_COLUMNS = (
    "slice_thickness_mm",
    "slice_interval_mm",
    "contiguous",
    "kernel",
    "kernel_class",
    "manufacturer",
    "model",
    "kvp",
    "contrast",
    "acquisition_year",
)

#: Column listing the codes of warning- and error-level quality findings.
QUALITY_COLUMN = "quality_flags"

#: Longest message kept in failures.csv.
MAX_MESSAGE_CHARS = 400

_BLANK = "<input>"


@dataclasses.dataclass(frozen=True)
class CaseTask:
    """Everything a worker needs to extract one case.

    Attributes
    ----------
    case : Case
    out_dir : str
        The extraction folder.
    params : ExtractionParameters
    stages : tuple of str
        Names of the enabled stages, in running order.
    threads : int or None
        ITK and BLAS threads for this case; None on a Dask worker, where the
        worker's share of its host's cores is looked up in
        ``threads_by_host``.
    threads_by_host : dict, optional
        Host name to threads per case, for Dask workers.
    """

    case: Case
    out_dir: str
    params: ExtractionParameters
    stages: tuple[str, ...]
    threads: int | None = None
    threads_by_host: dict[str, int] | None = None


@dataclasses.dataclass(frozen=True)
class CaseOutcome:
    """How one case ended.

    Attributes
    ----------
    case_id, folder : str
    finished : bool
        True when ``features.json`` was written.
    duration_s : float
    peak_memory_mb : float or None
        Peak resident memory of the process while the case ran.
    error_type, message : str or None
        For a failed case.
    """

    case_id: str
    folder: str
    finished: bool
    duration_s: float
    peak_memory_mb: float | None
    error_type: str | None = None
    message: str | None = None


class _Progress:
    """The stage a case is in, for the failure message."""

    def __init__(self) -> None:
        self.stage = "load"
        self.seconds: dict[str, float] = {}


def run_case(task: CaseTask) -> CaseOutcome:
    """Extract one case and write its folder.

    Parameters
    ----------
    task : CaseTask

    Returns
    -------
    CaseOutcome
        Finished, with ``features.json`` written last, or failed, with
        ``failure.json``.
    """
    case = task.case
    case_dir = Path(task.out_dir) / storage.CASES_DIR / case.folder
    case_dir.mkdir(parents=True, exist_ok=True)
    storage.remove_temporary_files(case_dir)
    threads = task.threads or _dask_threads(task.threads_by_host)
    exact_peak = reset_peak_memory()
    progress = _Progress()

    with (
        _blanking_logs(case.private),
        thread_limit(threads),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        # Import the stages before the clock starts, so that the first case
        # of a worker is not charged for it.
        _import_stages(task.stages)
        start = time.perf_counter()
        try:
            state = _extract(case, task, progress)
            files = _write_images(state, task.params, case_dir, progress)
        except Exception as error:  # any failure of a case is recorded, not raised
            duration = time.perf_counter() - start
            return _failed(case, case_dir, error, progress.stage, duration, exact_peak)

    findings = _findings(state, caught, case.private)
    row = _row(case, state, findings)
    duration = time.perf_counter() - start
    peak = peak_memory_mb()
    document = {
        "case_id": case.case_id,
        "row": row,
        "findings": findings,
        "stages": list(task.stages),
        "stage_seconds": progress.seconds,
        "files": files,
        "duration_s": round(duration, 3),
        "peak_memory_mb": None if peak is None else round(peak, 1),
        "peak_memory_scope": "case" if exact_peak else "process",
        "threads": threads,
        "params_hash": task.params.digest,
        "radscl_version": __version__,
        "finished_at": _now(),
    }
    if not case.private:
        document["input"] = case.image
    storage.write_json(case_dir / storage.FEATURES_JSON, document)
    (case_dir / storage.FAILURE_JSON).unlink(missing_ok=True)
    logger.info("%s: finished in %.1f s", case.case_id, duration)
    return CaseOutcome(case.case_id, case.folder, True, duration, peak)


def record_failure(
    case: Case,
    out_dir: str | Path,
    error_type: str,
    message: str,
    duration_s: float = 0.0,
) -> CaseOutcome:
    """Write ``failure.json`` for a case that could not report itself.

    Used by the executors when a worker process died (killed by the system
    for lack of memory, or crashed in native code).

    Parameters
    ----------
    case : Case
    out_dir : path
        The extraction folder.
    error_type, message : str
    duration_s : float

    Returns
    -------
    CaseOutcome
    """
    case_dir = Path(out_dir) / storage.CASES_DIR / case.folder
    case_dir.mkdir(parents=True, exist_ok=True)
    _write_failure(case, case_dir, error_type, message, duration_s, None)
    return CaseOutcome(
        case.case_id, case.folder, False, duration_s, None, error_type, message
    )


def reset_peak_memory() -> bool:
    """Reset this process's peak resident memory; False where Linux does not
    allow it (the peak then covers the process's whole life)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def peak_memory_mb() -> float | None:
    """Peak resident memory of this process since start or the last reset."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024.0 if peak else None


def _import_stages(names: tuple[str, ...]) -> None:
    import radscl.io  # noqa: F401
    from radscl.extract.stages import STAGES

    for stage in STAGES:
        if stage.name in names:
            stage.load()


def _extract(case: Case, task: CaseTask, progress: _Progress):
    from radscl.extract.stages import STAGES
    from radscl.extract.stages import CaseState
    from radscl.io import load_scan

    by_name = {stage.name: stage for stage in STAGES}
    started = time.perf_counter()
    scan = load_scan(case.image)
    state = CaseState(scan=scan, case_id=case.case_id)
    state.add_findings("load", scan.quality)
    progress.seconds["load"] = round(time.perf_counter() - started, 3)

    for name in task.stages:
        progress.stage = name
        started = time.perf_counter()
        by_name[name].run(state, task.params.section(name))
        progress.seconds[name] = round(time.perf_counter() - started, 3)
    return state


def _write_images(state, params: ExtractionParameters, case_dir: Path, progress):
    from radscl.io import write_image

    progress.stage = "write"
    outputs = params.section("outputs")
    files = []
    if state.label_map is not None and outputs["label_map"]:
        path = case_dir / storage.LABELS_FILE
        with storage.atomic_path(path) as temporary:
            write_image(state.label_map, state.scan, temporary)
        files.append(path.name)
    if state.patterns is not None and outputs["label_map"]:
        path = case_dir / storage.PATTERNS_FILE
        with storage.atomic_path(path) as temporary:
            write_image(state.patterns, state.scan, temporary)
        files.append(path.name)
    if state.label_map is not None and outputs["qc_picture"]:
        from radscl.report.qc import qc_picture

        patterns, pattern_names = _abnormal_patterns(state.patterns)
        path = case_dir / storage.QC_FILE
        with storage.atomic_path(path) as temporary:
            qc_picture(
                state.scan,
                state.label_map,
                temporary,
                patterns=patterns,
                pattern_names=pattern_names,
                title=f"radscl {state.case_id}",
            )
        files.append(path.name)
    return files


def _abnormal_patterns(patterns):
    """The pattern map with normal lung cleared, and the legend's names."""
    if patterns is None:
        return None, None
    import numpy as np

    from radscl.extractors.fibrosis import NORMAL
    from radscl.extractors.fibrosis import PATTERN_FEATURES

    names = {
        value: name.replace("ggo", "ground glass")
        for value, name in PATTERN_FEATURES.items()
    }
    return np.where(patterns == NORMAL, 0, patterns), names


def _row(case: Case, state, findings: list[dict[str, Any]]) -> dict[str, Any]:
    metadata = state.scan.metadata
    row: dict[str, Any] = {"case_id": case.case_id}
    row.update(case.extra)
    for column in ACQUISITION_COLUMNS:
        row[column] = getattr(metadata, column)
    row.update(state.columns)
    flagged = sorted(
        {f["code"] for f in findings if f["severity"] in ("warning", "error")}
    )
    row[QUALITY_COLUMN] = ";".join(flagged)
    return storage.json_ready(row)


def _findings(state, caught: list[warnings.WarningMessage], private: tuple[str, ...]):
    findings = []
    for stage, finding in state.findings:
        record = finding.to_dict()
        record["message"] = _blank(record["message"], private)
        record["fix"] = _blank(record["fix"], private)
        findings.append({"stage": stage, **record})
    findings.extend(_warning_findings(caught, private))
    return findings


def _warning_findings(
    caught: list[warnings.WarningMessage], private: tuple[str, ...]
) -> list[dict[str, Any]]:
    from radscl.errors import RadsclWarning

    counted: dict[tuple[str, str], int] = {}
    severity: dict[tuple[str, str], str] = {}
    for item in caught:
        category = item.category
        module = _module_of(item.filename)
        if issubclass(category, RadsclWarning) or module.startswith("radscl"):
            text = _one_line(str(item.message))
            level = "warning"
        else:
            # Library warnings (pydicom among them) may quote header values.
            text = f"{category.__name__} from {module}"
            level = "info"
        key = (category.__name__, _blank(text, private))
        counted[key] = counted.get(key, 0) + 1
        severity[key] = level
    findings = []
    for (name, text), count in counted.items():
        times = f" ({count} times)" if count > 1 else ""
        findings.append(
            {
                "stage": "warning",
                "code": f"warning:{name}",
                "severity": severity[(name, text)],
                "message": text + times,
                "fix": "",
            }
        )
    return findings


def _failed(
    case: Case,
    case_dir: Path,
    error: BaseException,
    stage: str,
    duration: float,
    exact_peak: bool,
) -> CaseOutcome:
    message = f"{stage}: {describe_error(error, stage, case.private)}"
    error_type = type(error).__name__
    peak = peak_memory_mb()
    _write_failure(case, case_dir, error_type, message, duration, peak)
    logger.debug("%s failed in %.1f s", case.case_id, duration)
    return CaseOutcome(
        case.case_id, case.folder, False, duration, peak, error_type, message
    )


def _write_failure(
    case: Case,
    case_dir: Path,
    error_type: str,
    message: str,
    duration: float,
    peak: float | None,
) -> None:
    storage.write_json(
        case_dir / storage.FAILURE_JSON,
        {
            "case_id": case.case_id,
            "input": case.input_label,
            "error_type": error_type,
            "message": message,
            "duration_s": round(duration, 3),
            "peak_memory_mb": None if peak is None else round(peak, 1),
            "radscl_version": __version__,
            "failed_at": _now(),
        },
    )


def describe_error(
    error: BaseException, stage: str, private: tuple[str, ...] = ()
) -> str:
    """A one-line, identifier-free description of why a case failed.

    Parameters
    ----------
    error : BaseException
    stage : str
        The stage that was running; messages of other libraries' errors
        raised while loading are withheld.
    private : tuple of str
        Text to blank out (paths and the original id when pseudonymised).

    Returns
    -------
    str
    """
    module, line = _raised_in(error)
    if isinstance(error, RadsclError):
        text = str(error)
    elif isinstance(error, MemoryError):
        text = "out of memory"
    elif stage == "load":
        text = (
            f"the scan could not be read ({type(error).__name__} in {module}; "
            "the library's message is withheld because it may quote DICOM values)"
        )
    else:
        text = f"{str(error) or 'no message'} (in {module} line {line})"
    text = _blank(_one_line(text), private)
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 3] + "..."
    return text


def _raised_in(error: BaseException) -> tuple[str, int]:
    traceback = error.__traceback__
    if traceback is None:
        return "unknown", 0
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    module = traceback.tb_frame.f_globals.get("__name__", "unknown")
    return str(module), traceback.tb_lineno


def _module_of(filename: str) -> str:
    parts = Path(filename).with_suffix("").parts
    for anchor in ("site-packages", "dist-packages"):
        if anchor in parts:
            return ".".join(parts[parts.index(anchor) + 1 :])
    if "radscl" in parts:
        return ".".join(parts[parts.index("radscl") :])
    return Path(filename).stem


def _dask_threads(threads_by_host: dict[str, int] | None) -> int:
    cores = available_cores()
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return cores
    host = worker.address.split("://")[-1].rsplit(":", 1)[0]
    if threads_by_host and host in threads_by_host:
        return threads_by_host[host]
    return max(1, cores // max(1, worker.state.nthreads))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _blank(text: str, private: tuple[str, ...]) -> str:
    for secret in private:
        text = text.replace(secret, _BLANK)
    return text


class _BlankingFilter(logging.Filter):
    """Blanks paths and the original id out of log records."""

    def __init__(self, private: tuple[str, ...]) -> None:
        super().__init__()
        self.private = private

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        blanked = _blank(message, self.private)
        if blanked != message:
            record.msg, record.args = blanked, None
        return True


@contextlib.contextmanager
def _blanking_logs(private: tuple[str, ...]) -> Iterator[None]:
    if not private:
        yield
        return
    blanking = _BlankingFilter(private)
    handlers = {
        *logging.getLogger().handlers,
        *logging.getLogger("radscl").handlers,
    }
    for handler in handlers:
        handler.addFilter(blanking)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(blanking)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
