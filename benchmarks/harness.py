"""A small harness that times one stage and records its peak memory.

Each measurement runs in a freshly spawned Python process, so the peak resident
set size covers native allocations (ITK, BLAS) as well as Python's, and one
stage cannot inherit another's memory. The stage's own wall time is measured in
the child around the call alone; building its inputs is done first, in the same
child, by an optional ``setup`` function and is included in the peak memory but
not in the time.

Usage from a benchmark script::

    from benchmarks.harness import measure, write_results

    rows = [
        measure("load DICOM", "radscl", load_dicom, setup=make_series),
        measure("load DICOM", "SimpleITK", sitk_read, setup=make_series),
    ]
    write_results("io", rows)

Functions passed to :func:`measure` must be importable module-level functions,
because the child process is spawned, not forked.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import multiprocessing as mp
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclasses.dataclass
class Measurement:
    """Wall time and peak memory of one stage run by one tool."""

    stage: str
    tool: str
    wall_s: float
    wall_s_all: list[float]
    peak_rss_mb: float
    details: dict[str, Any]


def _child(
    queue: mp.Queue,
    run: Callable[..., Any],
    setup: Callable[..., Any] | None,
    setup_args: tuple,
    repeat: int,
    threads: int | None,
) -> None:
    try:
        if threads is not None:
            _limit_threads(threads)
        args = setup(*setup_args) if setup is not None else ()
        if not isinstance(args, tuple):
            args = (args,)
        times = []
        details: Any = None
        for _ in range(repeat):
            start = time.perf_counter()
            details = run(*args)
            times.append(time.perf_counter() - start)
        queue.put(("ok", times, _peak_rss_mb(), details if isinstance(details, dict) else {}))
    except BaseException as error:  # report any failure to the parent
        queue.put(("error", f"{type(error).__name__}: {error}", 0.0, {}))


def _peak_rss_mb() -> float:
    """Peak resident memory of this process since it started.

    On Linux ``ru_maxrss`` survives ``exec`` and so includes the parent's
    resident size at the moment it spawned the child; the high-water mark in
    /proc/self/status belongs to the fresh process alone.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _limit_threads(threads: int) -> None:
    try:
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    except ImportError:
        pass
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    except ImportError:
        pass


def measure(
    stage: str,
    tool: str,
    run: Callable[..., Any],
    *,
    setup: Callable[..., Any] | None = None,
    setup_args: tuple = (),
    repeat: int = 1,
    threads: int | None = None,
    timeout_s: float = 1800.0,
) -> Measurement:
    """Run ``run(*setup(*setup_args))`` in a fresh process and measure it.

    Parameters
    ----------
    stage : str
        What is measured, e.g. ``"load 400-slice DICOM"``.
    tool : str
        Who does it, e.g. ``"radscl"`` or ``"SimpleITK ImageSeriesReader"``.
    run : callable
        The stage; may return a dict of numbers reported with the timing.
    setup : callable, optional
        Builds the stage's arguments in the child, untimed.
    setup_args : tuple
        Arguments of ``setup``.
    repeat : int
        Number of timed runs; the median is reported.
    threads : int, optional
        Limit ITK and BLAS threads in the child.
    timeout_s : float
        Give up after this many seconds.

    Returns
    -------
    Measurement
        Median wall time, all wall times, peak resident memory of the child.
    """
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(
        target=_child, args=(queue, run, setup, setup_args, repeat, threads)
    )
    process.start()
    status, times, peak_mb, details = queue.get(timeout=timeout_s)
    process.join()
    if status != "ok":
        raise RuntimeError(f"benchmark stage {stage!r} ({tool}) failed: {times}")
    return Measurement(
        stage=stage,
        tool=tool,
        wall_s=statistics.median(times),
        wall_s_all=list(times),
        peak_rss_mb=peak_mb,
        details=details,
    )


def machine_summary() -> dict[str, str]:
    """Describe the machine and the libraries that matter for the timings."""
    summary = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "cpus": str(os.cpu_count()),
        "machine": platform.machine(),
    }
    for module in ("numpy", "scipy", "SimpleITK", "pydicom", "radiomics", "sklearn"):
        try:
            imported = __import__(module)
            summary[module] = str(getattr(imported, "__version__", "?"))
        except ImportError:
            continue
    return summary


def write_results(name: str, measurements: list[Measurement]) -> Path:
    """Write measurements to ``benchmarks/results/<name>.csv`` and ``.md``.

    Returns
    -------
    pathlib.Path
        The Markdown table, which is also logged to stdout by the scripts.
    """
    RESULTS_DIR.mkdir(exist_ok=True)
    csv_path = RESULTS_DIR / f"{name}.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["stage", "tool", "wall_s", "peak_rss_mb", "runs", "details"])
        for m in measurements:
            writer.writerow(
                [m.stage, m.tool, f"{m.wall_s:.3f}", f"{m.peak_rss_mb:.0f}", len(m.wall_s_all), m.details]
            )

    machine = machine_summary()
    lines = [
        f"# Benchmark: {name}",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()),
        "",
        "| stage | tool | wall time (s) | peak memory (MB) | details |",
        "|---|---|---:|---:|---|",
    ]
    for m in measurements:
        detail = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in m.details.items()
        )
        lines.append(
            f"| {m.stage} | {m.tool} | {m.wall_s:.2f} | {m.peak_rss_mb:.0f} | {detail} |"
        )
    md_path = RESULTS_DIR / f"{name}.md"
    md_path.write_text("\n".join(lines) + "\n")
    return md_path
