"""Files of an extraction folder, written so that a kill never leaves half a file.

Every file is written to a temporary name in its own folder (the name holds
:data:`TEMPORARY_MARK`), flushed to disk and renamed over its final name with
``os.replace``, which is atomic on POSIX file systems. A reader therefore sees
the old file, the new file or no file, never part of one. ``features.json`` is
the last file written for a case, so its presence means the case finished;
temporary files left by a killed run are removed when the case is run again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import uuid
from collections.abc import Iterator
from collections.abc import Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

CASES_DIR = "cases"
FEATURES_JSON = "features.json"
FAILURE_JSON = "failure.json"
LABELS_FILE = "labels.nii.gz"
PATTERNS_FILE = "patterns.nii.gz"
QC_FILE = "qc.png"
FEATURES_CSV = "features.csv"
FEATURES_PARQUET = "features.parquet"
FAILURES_CSV = "failures.csv"
PROVENANCE_JSON = "provenance.json"
LOCK_FILE = ".radscl-extract.lock"

#: Part of the name of every temporary file.
TEMPORARY_MARK = ".partial-"


def temporary_path(path: Path) -> Path:
    """A unique temporary name beside ``path`` that keeps its suffixes.

    ``labels.nii.gz`` becomes ``labels.partial-<id>.nii.gz``, so that writers
    choosing the format by suffix still do.
    """
    stem, dot, suffixes = path.name.partition(".")
    token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    return path.with_name(f"{stem}{TEMPORARY_MARK}{token}{dot}{suffixes}")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; rename it to ``path`` on success.

    Parameters
    ----------
    path : pathlib.Path
        The final file.

    Yields
    ------
    pathlib.Path
        Where to write. It is flushed to disk and renamed over ``path`` when
        the block ends without an error, and removed otherwise.
    """
    temporary = temporary_path(path)
    try:
        yield temporary
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def write_json(path: Path, document: Mapping[str, Any]) -> None:
    """Write a JSON document atomically; NaN and infinity become null."""
    text = json.dumps(json_ready(document), indent=2, allow_nan=False)
    write_text(path, text + "\n")


def read_json(path: Path) -> dict[str, Any] | None:
    """Read a JSON document, or None when it is missing or unreadable."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        logger.warning("%s is unreadable and is ignored", path)
        return None
    return document if isinstance(document, dict) else None


def remove_temporary_files(folder: Path) -> int:
    """Remove temporary files a killed run left in a folder; return how many."""
    removed = 0
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        if TEMPORARY_MARK in path.name and path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def json_ready(value: Any) -> Any:
    """Turn NumPy scalars and arrays, tuples and non-finite floats into JSON."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):
        return json_ready(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value
