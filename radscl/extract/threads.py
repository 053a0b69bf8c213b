"""Thread limits for extraction workers, so that N workers share the cores.

ITK filters and BLAS each start one thread per core by default; N worker
processes doing so on a C-core machine run N x C threads and spend their time
switching. Each worker therefore gets ``max(1, C // N)`` threads for ITK
(``SetGlobalDefaultNumberOfThreads``), for BLAS and OpenMP (threadpoolctl)
and, through environment variables, for libraries loaded later in the worker.

This module imports nothing heavy at the top, so that a freshly spawned worker
sets the environment before NumPy loads its BLAS.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

#: Environment variables read by BLAS, OpenMP, numexpr and ITK when they load.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS",
)


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where known)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def threads_per_worker(n_workers: int, cores: int | None = None) -> int:
    """``max(1, cores // n_workers)``.

    Parameters
    ----------
    n_workers : int
        Worker processes sharing the machine.
    cores : int, optional
        Cores available; :func:`available_cores` when omitted.

    Returns
    -------
    int
    """
    cores = available_cores() if cores is None else cores
    return max(1, cores // max(1, n_workers))


def init_worker(threads: int, log_level: int) -> None:
    """Set up a freshly spawned worker process: thread limits and logging.

    Parameters
    ----------
    threads : int
        Threads for ITK, BLAS and OpenMP in this worker.
    log_level : int
        Level of the ``radscl`` logger, as in the parent.
    """
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    set_thread_limit(threads)

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("radscl")
    root.handlers[:] = [handler]
    root.setLevel(log_level)
    root.propagate = False


def set_thread_limit(threads: int) -> None:
    """Limit ITK, BLAS and OpenMP threads of this process from now on."""
    import SimpleITK as sitk
    from threadpoolctl import threadpool_limits

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    threadpool_limits(limits=threads)


@contextlib.contextmanager
def thread_limit(threads: int) -> Iterator[None]:
    """Limit ITK, BLAS and OpenMP threads inside a ``with`` block.

    Parameters
    ----------
    threads : int
        Threads allowed while the block runs; the earlier limits come back
        afterwards.
    """
    import SimpleITK as sitk
    from threadpoolctl import threadpool_limits

    earlier = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(earlier)
