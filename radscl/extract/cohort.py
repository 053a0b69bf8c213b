"""Running a cohort: resume, executors, the cohort tables and provenance.

Resume
------
A case is finished when ``cases/<folder>/features.json`` exists; finished
cases are never computed again. A case that failed is tried again on the next
run (its failure may have been a full disk, a file server or a fixed bug);
its ``failure.json`` stays until then. A run refuses to continue a folder
whose finished cases were extracted with other parameters or another
pseudonym key, since the rows would not be comparable.

The cohort tables (``features.csv``, ``features.parquet``, ``failures.csv``)
are rebuilt at the end of every run from the case folders, so they hold each
case of the folder exactly once, whatever runs were killed before; a folder
may hold several batches of one cohort. ``provenance.json`` is written when a
run starts and again when it ends, and lists every run.

Executors
---------
``jobs=1`` runs the cases in this process. ``jobs=N`` runs them in N spawned
worker processes, each limited to ``cores // N`` ITK and BLAS threads. A
worker that dies (killed by the system for lack of memory, or crashed in
native code) takes the cases it was running with it; those are then run one
at a time, and a case that kills its worker on its own is recorded as failed.
``scheduler=ADDRESS`` sends the cases to a Dask distributed cluster;
``"local:N"`` starts a local cluster of N single-threaded worker processes.
Dask workers must see the scans and the output folder at the same paths.
Every executor calls the same :func:`~radscl.extract.worker.run_case`, so the
features do not depend on where a case ran.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import logging
import multiprocessing
import os
import platform
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from typing import Protocol

from radscl import __version__
from radscl.errors import DataError
from radscl.errors import ParameterError
from radscl.extract import storage
from radscl.extract.cases import Case
from radscl.extract.cases import key_check
from radscl.extract.params import ExtractionParameters
from radscl.extract.params import load_parameters
from radscl.extract.params import parameter_differences
from radscl.extract.stages import enabled_stages
from radscl.extract.stages import stage_methods
from radscl.extract.threads import available_cores
from radscl.extract.threads import init_worker
from radscl.extract.threads import threads_per_worker
from radscl.extract.worker import CaseOutcome
from radscl.extract.worker import CaseTask
from radscl.extract.worker import record_failure
from radscl.extract.worker import run_case

logger = logging.getLogger(__name__)

#: Columns of failures.csv.
FAILURE_COLUMNS = ("case_id", "input", "error_type", "message")

#: Distributions whose versions provenance records.
LIBRARIES = (
    "numpy",
    "scipy",
    "pandas",
    "pyarrow",
    "SimpleITK",
    "pydicom",
    "scikit-image",
    "pyradiomics-bhklab",
    "scikit-learn",
    "PyYAML",
    "threadpoolctl",
    "dask",
    "distributed",
)


class Reporter(Protocol):
    """Receives progress: how much there is to do, then each case's end."""

    def started(self, pending: int, resumed: int) -> None: ...

    def case_done(self, outcome: CaseOutcome) -> None: ...


@dataclasses.dataclass
class ExtractionResult:
    """What a run did.

    Attributes
    ----------
    out_dir : pathlib.Path
    n_cases : int
        Cases given to this run.
    n_resumed : int
        Of those, finished by an earlier run and kept.
    n_finished : int
        Finished by this run.
    failed : list of CaseOutcome
        Cases of this run that failed.
    n_rows : int
        Rows of features.csv (every finished case in the folder).
    n_failures_listed : int
        Rows of failures.csv.
    """

    out_dir: Path
    n_cases: int
    n_resumed: int
    n_finished: int
    failed: list[CaseOutcome]
    n_rows: int
    n_failures_listed: int


def extract_cohort(
    cases: Sequence[Case],
    out_dir: str | os.PathLike[str],
    params: ExtractionParameters | None = None,
    *,
    jobs: int = 1,
    scheduler: str | None = None,
    pseudonym_key: str | None = None,
    reporter: Reporter | None = None,
) -> ExtractionResult:
    """Extract every case into ``out_dir``, resuming an earlier run.

    Parameters
    ----------
    cases : sequence of Case
        From :func:`radscl.extract.cases.collect_cases`.
    out_dir : path
        The extraction folder; created if needed.
    params : ExtractionParameters, optional
        The defaults when omitted.
    jobs : int
        Worker processes (1: in this process).
    scheduler : str, optional
        Dask scheduler address, or ``"local:N"``.
    pseudonym_key : str, optional
        The key the ids were pseudonymised with (checked against earlier
        runs, never stored).
    reporter : Reporter, optional
        Progress callbacks.

    Returns
    -------
    ExtractionResult

    Raises
    ------
    ParameterError
        Bad ``jobs`` or ``scheduler``, Dask missing, another run writing in
        the folder, or earlier results made with other parameters or key.
    DataError
        A case folder holding another case from an earlier run.
    """
    if jobs < 1:
        raise ParameterError(f"--jobs must be at least 1, not {jobs}")
    params = params if params is not None else load_parameters()
    stages = tuple(stage.name for stage in enabled_stages(params))
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ParameterError(f"{out}: --out must be a folder, but it is a file")
    local_workers = _local_workers(scheduler) if scheduler else None
    out.mkdir(parents=True, exist_ok=True)

    with _exclusive(out):
        earlier = storage.read_json(out / storage.PROVENANCE_JSON)
        check = None if pseudonym_key is None else key_check(pseudonym_key)
        finished = _finished_cases(out)
        _check_compatible(earlier, finished, params, check, out)
        resumed, pending = _split_finished(cases, finished, out)
        run = {
            "started": _now(),
            "ended": None,
            "status": "running",
            "executor": _executor_name(jobs, scheduler),
            "cases": len(cases),
            "resumed": len(resumed),
        }
        runs = _earlier_runs(earlier) + [run]
        _write_provenance(out, params, check, runs)
        if reporter is not None:
            reporter.started(len(pending), len(resumed))

        outcomes: list[CaseOutcome] = []

        def done(outcome: CaseOutcome) -> None:
            outcomes.append(outcome)
            if not outcome.finished:
                logger.warning(
                    "%s failed: %s: %s",
                    outcome.case_id,
                    outcome.error_type,
                    outcome.message,
                )
            if reporter is not None:
                reporter.case_done(outcome)

        if pending:
            if scheduler is not None:
                _run_dask(pending, out, params, stages, scheduler, local_workers, done)
            elif jobs == 1 or len(pending) == 1:
                _run_here(pending, out, params, stages, done)
            else:
                _run_processes(pending, out, params, stages, jobs, done)

        order = [case.folder for case in cases]
        n_rows, n_failures = rebuild_tables(out, order)
        failed = [o for o in outcomes if not o.finished]
        run.update(
            ended=_now(),
            status="finished",
            finished=sum(o.finished for o in outcomes),
            failed=len(failed),
        )
        _write_provenance(out, params, check, runs)

    return ExtractionResult(
        out_dir=out,
        n_cases=len(cases),
        n_resumed=len(resumed),
        n_finished=sum(o.finished for o in outcomes),
        failed=failed,
        n_rows=n_rows,
        n_failures_listed=n_failures,
    )


def rebuild_tables(
    out_dir: str | os.PathLike[str], order: Sequence[str] = ()
) -> tuple[int, int]:
    """Write features.csv, features.parquet and failures.csv from the case folders.

    Parameters
    ----------
    out_dir : path
        The extraction folder.
    order : sequence of str
        Case folders in the order their rows should come; other finished
        cases of the folder follow in name order.

    Returns
    -------
    (int, int)
        Rows of the features and of the failures table.
    """
    import pandas as pd

    out = Path(out_dir)
    cases_dir = out / storage.CASES_DIR
    folders = (
        sorted(p.name for p in cases_dir.iterdir() if p.is_dir())
        if cases_dir.is_dir()
        else []
    )
    rank = {name: i for i, name in enumerate(order)}
    folders.sort(key=lambda name: (rank.get(name, len(rank)), name))

    rows, failures = [], []
    for name in folders:
        document = storage.read_json(cases_dir / name / storage.FEATURES_JSON)
        if document is not None and isinstance(document.get("row"), dict):
            rows.append(document["row"])
            continue
        failure = storage.read_json(cases_dir / name / storage.FAILURE_JSON)
        if failure is not None:
            failures.append({column: failure.get(column) for column in FAILURE_COLUMNS})

    features = _table(rows)
    with storage.atomic_path(out / storage.FEATURES_CSV) as temporary:
        features.to_csv(temporary, index=False)
    with storage.atomic_path(out / storage.FEATURES_PARQUET) as temporary:
        _parquet_ready(features).to_parquet(temporary, index=False)
    failed = pd.DataFrame(failures, columns=list(FAILURE_COLUMNS))
    with storage.atomic_path(out / storage.FAILURES_CSV) as temporary:
        failed.to_csv(temporary, index=False)
    return len(features), len(failed)


def _table(rows: list[dict[str, Any]]):
    """The features table, with whole numbers and flags kept as such where
    some rows lack them (pandas would turn them into floats and objects)."""
    import pandas as pd

    if not rows:
        return pd.DataFrame(columns=["case_id"])
    table = pd.DataFrame(rows)
    for column in table.columns:
        values = [row.get(column) for row in rows if row.get(column) is not None]
        if not values or table[column].notna().all():
            continue
        if all(isinstance(v, bool) for v in values):
            table[column] = table[column].astype("boolean")
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            table[column] = table[column].astype("Int64")
    return table


def _parquet_ready(table):
    """Give mixed-type text columns one type, which Parquet needs."""
    import pandas as pd

    table = table.copy()
    for column in table.columns:
        if table[column].dtype != object:
            continue
        kinds = {type(v) for v in table[column] if v is not None and not pd.isna(v)}
        if len(kinds) > 1 and not kinds <= {int, float}:
            table[column] = [
                None if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v)
                for v in table[column]
            ]
    return table


def _finished_cases(out: Path) -> dict[str, dict[str, Any]]:
    """``features.json`` of every finished case in the folder, by folder name."""
    cases_dir = out / storage.CASES_DIR
    if not cases_dir.is_dir():
        return {}
    finished = {}
    for folder in sorted(cases_dir.iterdir()):
        document = storage.read_json(folder / storage.FEATURES_JSON)
        if document is not None:
            finished[folder.name] = document
    return finished


def _split_finished(
    cases: Sequence[Case], finished: dict[str, dict[str, Any]], out: Path
) -> tuple[list[Case], list[Case]]:
    resumed, pending = [], []
    for case in cases:
        document = finished.get(case.folder)
        if document is None:
            pending.append(case)
            continue
        if document.get("case_id") != case.case_id:
            raise DataError(
                f"{out / storage.CASES_DIR / case.folder}: holds case "
                f"'{document.get('case_id')}' from an earlier run, not "
                f"'{case.case_id}'; use another --out"
            )
        resumed.append(case)
    return resumed, pending


def _check_compatible(
    earlier: dict[str, Any] | None,
    finished: dict[str, dict[str, Any]],
    params: ExtractionParameters,
    check: str | None,
    out: Path,
) -> None:
    """Refuse to add rows that would not be comparable with the folder's."""
    other = [d for d in finished.values() if d.get("params_hash") != params.digest]
    if other:
        earlier_values = (earlier or {}).get("parameters") or {}
        differences = parameter_differences(earlier_values, params.values)
        shown = "; ".join(differences[:3]) or "referenced files or defaults changed"
        if len(differences) > 3:
            shown += f"; and {len(differences) - 3} more"
        raise ParameterError(
            f"{out}: {len(other)} finished case(s) were extracted with other "
            f"parameters ({shown}); use another --out or the same parameters"
        )

    has_cases = (out / storage.CASES_DIR).is_dir() and any(
        (out / storage.CASES_DIR).iterdir()
    )
    earlier_check = (earlier or {}).get("pseudonym_key_check")
    if earlier is None or not has_cases or earlier_check == check:
        return
    if check is None:
        problem = "pseudonymised the case ids"
    elif earlier_check is None:
        problem = "did not pseudonymise the case ids"
    else:
        problem = "pseudonymised the case ids with another key"
    raise ParameterError(f"{out}: an earlier run {problem}; use another --out")


def _earlier_runs(earlier: dict[str, Any] | None) -> list[dict[str, Any]]:
    if earlier is None:
        return []
    runs = [dict(run) for run in earlier.get("runs", []) if isinstance(run, dict)]
    for run in runs:
        if run.get("status") == "running":
            run["status"] = "interrupted"
    return runs


def _write_provenance(
    out: Path,
    params: ExtractionParameters,
    check: str | None,
    runs: list[dict[str, Any]],
) -> None:
    cases = {}
    cases_dir = out / storage.CASES_DIR
    for folder in sorted(cases_dir.iterdir()) if cases_dir.is_dir() else []:
        document = storage.read_json(folder / storage.FEATURES_JSON)
        status = "finished"
        if document is None:
            document = storage.read_json(folder / storage.FAILURE_JSON)
            status = "failed"
        if document is None:
            continue
        cases[str(document.get("case_id"))] = {
            "status": status,
            "duration_s": document.get("duration_s"),
            "peak_memory_mb": document.get("peak_memory_mb"),
            **(
                {"stage_seconds": document["stage_seconds"]}
                if "stage_seconds" in document
                else {}
            ),
        }
    latest = runs[-1]
    storage.write_json(
        out / storage.PROVENANCE_JSON,
        {
            "radscl_version": __version__,
            "python": platform.python_version(),
            "platform": f"{platform.system()} {platform.machine()}",
            "libraries": library_versions(),
            "parameters_file": params.source,
            "parameters_hash": params.digest,
            "parameters": params.values,
            "stages": stage_methods(params),
            "pseudonymized": check is not None,
            "pseudonym_key_check": check,
            "started": latest["started"],
            "ended": latest["ended"],
            "runs": runs,
            "cases": cases,
        },
    )


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries the features depend on."""
    from importlib import metadata

    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


@contextlib.contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """Hold a lock on the folder so that two runs never write in it at once.

    The operating system drops the lock when the process ends, even by
    ``kill -9``, so a killed run never blocks the next one.
    """
    try:
        import fcntl
    except (
        ImportError
    ):  # Windows: no advisory locks, one run at a time is the user's part
        yield
        return
    handle = open(out / storage.LOCK_FILE, "a")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ParameterError(
                f"{out}: another radscl extract is writing in this folder"
            ) from None
        yield
    finally:
        handle.close()


def _run_here(
    pending: list[Case],
    out: Path,
    params: ExtractionParameters,
    stages: tuple[str, ...],
    done: Callable[[CaseOutcome], None],
) -> None:
    threads = available_cores()
    for case in pending:
        done(run_case(CaseTask(case, str(out), params, stages, threads)))


def _run_processes(
    pending: list[Case],
    out: Path,
    params: ExtractionParameters,
    stages: tuple[str, ...],
    jobs: int,
    done: Callable[[CaseOutcome], None],
) -> None:
    workers = min(jobs, len(pending))
    threads = threads_per_worker(workers)
    level = logging.getLogger("radscl").getEffectiveLevel()
    context = multiprocessing.get_context("spawn")
    queue = collections.deque(pending)
    suspects: collections.deque[Case] = collections.deque()
    logger.info("%d worker processes with %d threads each", workers, threads)

    while queue or suspects:
        pool = concurrent.futures.ProcessPoolExecutor(
            workers,
            mp_context=context,
            initializer=init_worker,
            initargs=(threads, level),
        )
        running: dict[concurrent.futures.Future, Case] = {}
        alone = False
        try:
            while queue or suspects or running:
                # After a worker died, the cases it may have taken down run
                # one at a time, so that the one to blame is found.
                if suspects and not running:
                    case = suspects.popleft()
                    running[
                        pool.submit(run_case, _task(case, out, params, stages, threads))
                    ] = case
                    alone = True
                while queue and not suspects and len(running) < workers:
                    case = queue.popleft()
                    running[
                        pool.submit(run_case, _task(case, out, params, stages, threads))
                    ] = case
                    alone = False
                finished, _ = concurrent.futures.wait(
                    running, return_when=concurrent.futures.FIRST_COMPLETED
                )
                for future in finished:
                    case = running.pop(future)
                    error = future.exception()
                    if isinstance(error, concurrent.futures.process.BrokenProcessPool):
                        running[future] = case
                        raise error
                    if error is not None:
                        done(
                            record_failure(
                                case, out, type(error).__name__, _worker_error(error)
                            )
                        )
                    else:
                        done(future.result())
        except concurrent.futures.process.BrokenProcessPool:
            lost = list(running.values())
            if alone:
                done(
                    record_failure(
                        lost[0],
                        out,
                        "WorkerDied",
                        "the worker process died while extracting this case "
                        "alone (killed by the system for lack of memory, or a "
                        "crash in native code)",
                    )
                )
            else:
                logger.warning(
                    "a worker process died; %d case(s) it may have taken down "
                    "run again one at a time",
                    len(lost),
                )
                suspects.extend(lost)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _task(
    case: Case, out: Path, params, stages, threads: int | None, by_host=None
) -> CaseTask:
    return CaseTask(case, str(out), params, stages, threads, by_host)


def _worker_error(error: BaseException) -> str:
    # run_case catches every error of a case, so this is the task transport
    # itself failing (pickling, a lost connection); its text names no scan.
    return " ".join(str(error).split())[:400] or type(error).__name__


def _local_workers(scheduler: str) -> int | None:
    if not scheduler.startswith("local"):
        return None
    _, _, count = scheduler.partition(":")
    try:
        workers = int(count)
    except ValueError:
        workers = 0
    if workers < 1:
        raise ParameterError(
            f"--scheduler {scheduler}: expected local:N with N worker processes "
            "(e.g. local:4), or a scheduler address (tcp://host:8786)"
        )
    return workers


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise ParameterError(
            "--scheduler needs Dask: install radscl[dask] (pip install 'radscl[dask]')"
        ) from None
    return distributed


def _run_dask(
    pending: list[Case],
    out: Path,
    params: ExtractionParameters,
    stages: tuple[str, ...],
    scheduler: str,
    local_workers: int | None,
    done: Callable[[CaseOutcome], None],
) -> None:
    distributed = _import_distributed()
    run_token = uuid.uuid4().hex[:8]

    with contextlib.ExitStack() as stack:
        if local_workers is not None:
            cluster = stack.enter_context(
                distributed.LocalCluster(
                    n_workers=local_workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                )
            )
            client = stack.enter_context(distributed.Client(cluster))
        else:
            try:
                client = stack.enter_context(
                    distributed.Client(scheduler, timeout="30s")
                )
            except (OSError, TimeoutError) as error:
                raise ParameterError(
                    f"--scheduler {scheduler}: cannot reach the Dask scheduler "
                    f"({error})"
                ) from None
        by_host = _threads_by_host(client)
        logger.info("Dask cluster: %s", by_host)

        futures = {
            client.submit(
                run_case,
                _task(case, out, params, stages, None, by_host),
                key=f"radscl-extract-{run_token}-{case.folder}",
                pure=False,
            ): case
            for case in pending
        }
        for future in distributed.as_completed(futures):
            case = futures[future]
            try:
                outcome = future.result()
            except distributed.KilledWorker:
                outcome = record_failure(
                    case,
                    out,
                    "WorkerDied",
                    "Dask workers died each time they ran this case (lack of "
                    "memory, or a crash in native code)",
                )
            except Exception as error:  # transport failures of one task
                outcome = record_failure(
                    case, out, type(error).__name__, _worker_error(error)
                )
            done(outcome)


def _threads_by_host(client) -> dict[str, int]:
    """Threads per case on each host: its cores shared among all the worker
    threads that host runs."""
    try:
        info = client.scheduler_info(n_workers=-1)
    except TypeError:  # distributed before 2025 lists every worker by default
        info = client.scheduler_info()
    workers = info["workers"]
    cores = client.run(available_cores)
    worker_threads: dict[str, int] = collections.Counter()
    host_cores: dict[str, int] = {}
    for address, info in workers.items():
        host = info.get("host") or address.split("://")[-1].rsplit(":", 1)[0]
        worker_threads[host] += int(info.get("nthreads", 1))
        host_cores[host] = int(cores.get(address, 1))
    return {
        host: max(1, host_cores[host] // worker_threads[host]) for host in host_cores
    }


def _executor_name(jobs: int, scheduler: str | None) -> str:
    if scheduler is not None:
        return f"dask {scheduler}"
    return "this process" if jobs == 1 else f"{jobs} worker processes"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
