"""The cases of an extraction: from scan paths or a manifest, with their ids.

A case is one scan. Its id comes from the manifest's ``case_id`` column, else
from the file or folder name (``scan01.nii.gz`` -> ``scan01``, a DICOM folder
``P017/`` -> ``P017``). Each case gets a folder ``cases/<folder>/`` whose name
is the id with every character other than letters, digits, ``.``, ``_`` and
``-`` replaced by ``_``. Two cases whose folders would coincide (also when
they differ only in upper and lower case, which some file systems do not
distinguish) are an error before anything runs.

With pseudonymisation the id becomes a keyed hash (HMAC-SHA256 of the id,
first 16 hex digits), the same for the same id and key on every run, so a
cohort can be extracted in several batches and the rows joined with the
clinical table by whoever holds the key. Paths are then not written anywhere:
a failure names its input by manifest line or argument position.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import math
import os
import re
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from radscl.errors import DataError
from radscl.errors import ParameterError

#: Environment variable holding the pseudonymisation key.
PSEUDONYM_KEY_ENV = "RADSCL_PSEUDONYM_KEY"

#: Hex digits kept of the keyed hash: 64 bits, so a million cases collide with
#: a probability below 1e-7 (and a collision is reported, not merged).
PSEUDONYM_HEX_DIGITS = 16

_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_FOLDER_CHARS = 120


@dataclasses.dataclass(frozen=True)
class Case:
    """One scan to extract.

    Attributes
    ----------
    case_id : str
        The id written in the output.
    folder : str
        Name of its folder under ``cases/``.
    image : str
        Absolute path of the scan file or DICOM folder.
    input_label : str
        How outputs name the input: the path as given, or its manifest line or
        argument position when pseudonymised.
    extra : mapping
        Manifest columns carried into the output row.
    private : tuple of str
        Text that must not reach any output (the original id and the paths)
        when pseudonymised; empty otherwise.
    """

    case_id: str
    folder: str
    image: str
    input_label: str
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    private: tuple[str, ...] = ()


def case_id_from_path(path: str | os.PathLike[str]) -> str:
    """The case id a scan path gives: its name without image suffixes.

    Parameters
    ----------
    path : str or path-like
        A scan file or DICOM folder.

    Returns
    -------
    str
    """
    path = Path(path)
    name = path.name or path.resolve().name
    lower = name.lower()
    for suffix in _IMAGE_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def folder_name(case_id: str) -> str:
    """A safe folder name for a case id.

    Parameters
    ----------
    case_id : str

    Returns
    -------
    str
        The id with runs of other characters than letters, digits, ``.``,
        ``_`` and ``-`` replaced by one ``_``, without leading dots, at most
        120 characters.

    Raises
    ------
    DataError
        When nothing usable is left.
    """
    name = _UNSAFE.sub("_", case_id.strip()).lstrip(".")[:_MAX_FOLDER_CHARS]
    if not name.strip("_"):
        raise DataError(f"case_id {case_id!r} gives no usable folder name")
    return name


def pseudonym(case_id: str, key: str) -> str:
    """The keyed hash that replaces a case id.

    Parameters
    ----------
    case_id : str
        The original id.
    key : str
        The secret key.

    Returns
    -------
    str
        The first :data:`PSEUDONYM_HEX_DIGITS` hex digits of
        HMAC-SHA256(key, case_id).
    """
    digest = hmac.new(key.encode("utf-8"), case_id.encode("utf-8"), hashlib.sha256)
    return digest.hexdigest()[:PSEUDONYM_HEX_DIGITS]


def key_check(key: str) -> str:
    """A value that tells whether two runs used the same key, revealing nothing
    about the key or the ids."""
    return pseudonym("radscl pseudonym key check", key)


def pseudonym_key(given: str | None, pseudonymize: bool) -> str | None:
    """The key to use: from the option, else from the environment.

    Parameters
    ----------
    given : str or None
        ``--pseudonym-key``.
    pseudonymize : bool
        ``--pseudonymize``.

    Returns
    -------
    str or None
        None when not pseudonymising.

    Raises
    ------
    ParameterError
        Pseudonymising without a key, or a key without pseudonymising.
    """
    if not pseudonymize:
        if given is not None:
            raise ParameterError("--pseudonym-key given without --pseudonymize")
        return None
    key = given if given is not None else os.environ.get(PSEUDONYM_KEY_ENV)
    if not key:
        raise ParameterError(
            "--pseudonymize needs a key: pass --pseudonym-key or set "
            f"{PSEUDONYM_KEY_ENV}"
        )
    if len(key) < 8:
        raise ParameterError("the pseudonym key must have at least 8 characters")
    return key


def collect_cases(
    inputs: Sequence[str | os.PathLike[str]] = (),
    manifest: str | os.PathLike[str] | None = None,
    key: str | None = None,
    reserved_columns: Sequence[str] = (),
) -> list[Case]:
    """The cases given as paths and in a manifest, checked for clashes.

    Parameters
    ----------
    inputs : sequence of path
        Scan files and DICOM folders; ids from their names.
    manifest : path, optional
        CSV with an ``image`` column (``Image`` as in pyradiomics' batch files
        is the same) and optionally ``case_id``; relative image paths are
        relative to the manifest's folder. Other columns are carried into the
        output.
    key : str, optional
        Pseudonymise the ids with this key.
    reserved_columns : sequence of str
        Output column names a manifest column may not take.

    Returns
    -------
    list of Case
        Manifest cases first, in manifest order, then the paths in order.

    Raises
    ------
    DataError
        A malformed manifest, an empty id or path, or two cases sharing an id
        or a folder.
    """
    raw: list[tuple[str, str, str, dict[str, Any]]] = []
    if manifest is not None:
        raw.extend(_read_manifest(Path(manifest), reserved_columns))
    for position, given in enumerate(inputs, start=1):
        text = str(given)
        if not text.strip():
            raise DataError(f"scan argument {position} is empty")
        where = f"argument {position}"
        raw.append((case_id_from_path(text), os.path.abspath(text), where, {}))
    if not raw:
        raise DataError("no scans given: pass scan paths or --manifest CSV")

    cases = []
    for case_id, image, where, extra in raw:
        if key is None:
            cases.append(Case(case_id, folder_name(case_id), image, image, extra))
            continue
        hidden = pseudonym(case_id, key)
        # Paths carry the original id; a very short id alone would blank out
        # unrelated digits of a message, so only longer ones are searched for.
        hidden_text = {image, os.path.relpath(image)}
        if len(case_id) >= 4:
            hidden_text.add(case_id)
        private = tuple(sorted(hidden_text, key=len, reverse=True))
        cases.append(Case(hidden, hidden, image, where, extra, private))

    _check_unique(cases, raw)
    return cases


def _read_manifest(
    path: Path, reserved_columns: Sequence[str]
) -> list[tuple[str, str, str, dict[str, Any]]]:
    import pandas as pd

    if not path.is_file():
        raise DataError(f"{path}: manifest not found")
    try:
        header = pd.read_csv(path, nrows=0)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        raise DataError(f"{path}: not a readable CSV table") from None
    columns = [str(c) for c in header.columns]
    image_col = _find_column(path, columns, ("image",), "image")
    id_col = _find_column(path, columns, ("case_id", "caseid"), "case_id", needed=False)
    if image_col is None:
        raise DataError(
            f"{path}: no 'image' column (found: {', '.join(columns) or 'none'})"
        )
    text_cols = {image_col: str} if id_col is None else {image_col: str, id_col: str}
    try:
        table = pd.read_csv(path, dtype=text_cols, keep_default_na=True)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as error:
        problem = " ".join(str(error).split())
        raise DataError(f"{path}: not a readable CSV table ({problem})") from None
    if table.empty:
        raise DataError(f"{path}: the manifest has no rows")

    extra_cols = [c for c in columns if c not in (image_col, id_col)]
    reserved = set(reserved_columns) | {"case_id"}
    for column in extra_cols:
        if column in reserved or column.startswith("rad_"):
            raise DataError(
                f"{path}: column '{column}' would clash with a feature column of "
                "the output; rename it"
            )

    base = path.resolve().parent
    rows = []
    for index, record in enumerate(table.to_dict("records")):
        line = index + 2
        image = record[image_col]
        if not isinstance(image, str) or not image.strip():
            raise DataError(f"{path} line {line}: the {image_col} cell is empty")
        image_path = Path(image.strip()).expanduser()
        if not image_path.is_absolute():
            image_path = base / image_path
        if id_col is None:
            case_id = case_id_from_path(image.strip())
        else:
            case_id = record[id_col]
            if not isinstance(case_id, str) or not case_id.strip():
                raise DataError(f"{path} line {line}: the {id_col} cell is empty")
            case_id = case_id.strip()
        extra = {column: _plain(record[column]) for column in extra_cols}
        rows.append(
            (case_id, os.path.normpath(image_path), f"{path.name} line {line}", extra)
        )
    return rows


def _find_column(
    path: Path,
    columns: list[str],
    names: tuple[str, ...],
    label: str,
    *,
    needed: bool = True,
) -> str | None:
    def normal(name: str) -> str:
        return re.sub(r"[\s-]+", "_", name.strip().lower())

    found = [c for c in columns if normal(c) in names]
    if len(found) > 1:
        raise DataError(
            f"{path}: columns {', '.join(repr(c) for c in found)} all name the "
            f"{label}; keep one"
        )
    if not found:
        return None
    return found[0]


def _plain(value: Any) -> Any:
    """A manifest cell as a JSON-ready value (NaN becomes None)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _check_unique(cases: list[Case], raw: list[tuple[str, str, str, dict]]) -> None:
    seen: dict[str, int] = {}
    clashes: list[str] = []
    for index, case in enumerate(cases):
        folded = case.folder.lower()
        if folded in seen:
            first = seen[folded]
            clashes.append(
                f"'{raw[first][0]}' ({raw[first][2]}) and '{raw[index][0]}' "
                f"({raw[index][2]})"
            )
        else:
            seen[folded] = index
    if clashes:
        more = f" and {len(clashes) - 3} more" if len(clashes) > 3 else ""
        raise DataError(
            "duplicate case ids: "
            + "; ".join(clashes[:3])
            + more
            + "; give each scan its own case_id in a manifest"
        )
