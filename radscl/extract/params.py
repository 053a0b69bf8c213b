"""The extraction parameter file: defaults, validation and the parameter hash.

One YAML file controls every stage of ``radscl extract``. It has one section
per stage, named after the stage, holding ``enabled`` and the stage's own
settings, and an ``outputs`` section for the per-case files. A user's file
only needs the keys it changes; everything else comes from
``params/extraction.yaml``, which documents every key. The merged parameters
are checked before any scan is read: an unknown section or key, or a value of
the wrong type or out of range, is a :class:`~radscl.errors.ParameterError`
whose message names the file and the dotted key (``vessels.threshold``).

Settings that name a file (a pyradiomics parameter file, a trained pattern
classifier) are resolved against the folder of the user's parameter file,
then against radscl's ``params/`` folder, and stored as absolute paths; the
parameter hash covers the content of those files as well, so changing a
referenced file changes the hash.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from radscl.errors import ParameterError

#: File name of the default extraction parameters in ``params/``.
DEFAULT_PARAMS_NAME = "extraction.yaml"

#: Kinds of setting values and the Python types a YAML value may have.
_KINDS = ("bool", "int", "float", "str", "file", "str_list", "float_list")


@dataclasses.dataclass(frozen=True)
class Setting:
    """The type and the allowed values of one parameter.

    Attributes
    ----------
    kind : str
        ``"bool"``, ``"int"``, ``"float"``, ``"str"``, ``"file"`` (a path,
        resolved and hashed by content), ``"str_list"`` or ``"float_list"``.
    doc : str
        One line saying what the setting does (shown in error messages).
    choices : tuple, optional
        The allowed values of a ``str`` or ``str_list`` setting.
    minimum, maximum : float, optional
        Inclusive bounds of a number, or of every number in a list.
    nullable : bool
        Whether ``null`` is allowed (meaning "automatic" or "none").
    """

    kind: str
    doc: str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    nullable: bool = False

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown setting kind {self.kind!r}")

    def check(self, value: Any, key: str, source: str) -> Any:
        """Return the value in its canonical type, or raise ParameterError.

        Parameters
        ----------
        value : object
            The value read from YAML.
        key : str
            Dotted name of the setting, for the message.
        source : str
            The parameter file, for the message.

        Returns
        -------
        object
            ``float`` for a float given as an integer, lists as lists; other
            values unchanged.
        """
        if value is None:
            if self.nullable:
                return None
            _bad(source, key, f"must be {self._expected()}, not null")

        if self.kind == "bool":
            if not isinstance(value, bool):
                _bad(source, key, f"must be true or false, not {value!r}")
            return value
        if self.kind in ("int", "float"):
            return self._number(value, key, source)
        if self.kind in ("str", "file"):
            if not isinstance(value, str) or not value.strip():
                _bad(source, key, f"must be {self._expected()}, not {value!r}")
            self._choice(value, key, source)
            return value
        if not isinstance(value, list):
            _bad(source, key, f"must be {self._expected()}, not {value!r}")
        if self.kind == "str_list":
            for item in value:
                if not isinstance(item, str):
                    _bad(source, key, f"must be a list of text, but holds {item!r}")
                self._choice(item, key, source)
            if len(set(value)) != len(value):
                _bad(source, key, "holds a value twice")
            return list(value)
        return [self._number(item, key, source, "float") for item in value]

    def _number(self, value: Any, key: str, source: str, kind: str = "") -> Any:
        kind = kind or self.kind
        if isinstance(value, bool) or not isinstance(value, int | float):
            _bad(source, key, f"must be {self._expected()}, not {value!r}")
        if kind == "int" and not isinstance(value, int):
            _bad(source, key, f"must be a whole number, not {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            _bad(source, key, f"must be a finite number, not {value!r}")
        if self.minimum is not None and value < self.minimum:
            _bad(source, key, f"must be at least {self.minimum:g}, not {value!r}")
        if self.maximum is not None and value > self.maximum:
            _bad(source, key, f"must be at most {self.maximum:g}, not {value!r}")
        return float(value) if kind == "float" else value

    def _choice(self, value: str, key: str, source: str) -> None:
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(str(c) for c in self.choices)
            _bad(source, key, f"must be one of {allowed}, not {value!r}")

    def _expected(self) -> str:
        return {
            "bool": "true or false",
            "int": "a whole number",
            "float": "a number",
            "str": "text",
            "file": "a file path",
            "str_list": "a list of text",
            "float_list": "a list of numbers",
        }[self.kind]


#: Settings of the ``outputs`` section, common to every run.
OUTPUT_SETTINGS: dict[str, Setting] = {
    "label_map": Setting("bool", "write cases/<case_id>/labels.nii.gz"),
    "qc_picture": Setting("bool", "write cases/<case_id>/qc.png"),
}


@dataclasses.dataclass(frozen=True)
class ExtractionParameters:
    """Validated extraction parameters.

    Attributes
    ----------
    values : dict
        Every section with every key, defaults filled in, file settings as
        absolute paths.
    source : str
        The user's parameter file, or the default file when none was given.
    digest : str
        SHA-256 of the canonical JSON of ``values`` and of the content of the
        files they name.
    """

    values: dict[str, dict[str, Any]]
    source: str
    digest: str

    def section(self, name: str) -> dict[str, Any]:
        """Return a copy of one section."""
        return copy.deepcopy(self.values[name])

    def enabled(self, stage: str) -> bool:
        """Whether a stage is switched on."""
        return bool(self.values.get(stage, {}).get("enabled", False))


def params_dir() -> Path:
    """Return the folder holding radscl's parameter files.

    Returns
    -------
    pathlib.Path
        ``params/`` of a source checkout, else ``<prefix>/share/radscl/params``
        of an installed package.

    Raises
    ------
    ParameterError
        When neither holds the default extraction parameters.
    """
    candidates = (
        Path(__file__).resolve().parents[2] / "params",
        Path(sys.prefix) / "share" / "radscl" / "params",
    )
    for candidate in candidates:
        if (candidate / DEFAULT_PARAMS_NAME).is_file():
            return candidate
    raise ParameterError(
        f"{DEFAULT_PARAMS_NAME}: default extraction parameters not found in "
        + " or ".join(str(c) for c in candidates)
    )


def default_params_path() -> Path:
    """Return the path of ``params/extraction.yaml``."""
    return params_dir() / DEFAULT_PARAMS_NAME


def load_parameters(
    path: str | os.PathLike[str] | None = None,
    schema: Mapping[str, Mapping[str, Setting]] | None = None,
) -> ExtractionParameters:
    """Read, merge with the defaults and validate extraction parameters.

    Parameters
    ----------
    path : str or path-like, optional
        The user's YAML file; only the defaults when omitted.
    schema : mapping, optional
        Section name to its settings; by default ``outputs`` and the sections
        of the stages this version implements
        (:func:`radscl.extract.stages.parameter_schema`).

    Returns
    -------
    ExtractionParameters

    Raises
    ------
    ParameterError
        When a file is missing or is not YAML, or a section or key is unknown,
        missing from the defaults or of the wrong type; the one-line message
        names the file and the dotted key.
    """
    if schema is None:
        from radscl.extract.stages import parameter_schema

        schema = parameter_schema()
    default_path = default_params_path()
    defaults = _read_yaml(default_path)
    _check_tree(defaults, schema, str(default_path), complete=True)
    values = copy.deepcopy(defaults)
    source = str(default_path)
    base_dirs = [params_dir()]

    if path is not None:
        user_path = Path(path)
        source = str(user_path)
        user = _read_yaml(user_path)
        _check_tree(user, schema, source, complete=False)
        for section, settings in user.items():
            values[section].update(settings or {})
        base_dirs.insert(0, user_path.resolve().parent)

    for section, settings in schema.items():
        for key, setting in settings.items():
            value = setting.check(values[section][key], f"{section}.{key}", source)
            if setting.kind == "file" and value is not None:
                value = str(_resolve_file(value, base_dirs, f"{section}.{key}", source))
            values[section][key] = value

    return ExtractionParameters(
        values=values, source=source, digest=_digest(values, schema)
    )


def parameter_differences(
    earlier: Mapping[str, Any], current: Mapping[str, Any]
) -> list[str]:
    """Describe how two parameter sets differ, one dotted key per item.

    Parameters
    ----------
    earlier, current : mapping
        ``ExtractionParameters.values`` of two runs.

    Returns
    -------
    list of str
        ``"section.key: old -> new"`` for each difference, sorted.
    """
    differences = []
    for section in sorted(set(earlier) | set(current)):
        old = earlier.get(section, {}) or {}
        new = current.get(section, {}) or {}
        for key in sorted(set(old) | set(new)):
            if old.get(key, "(absent)") != new.get(key, "(absent)"):
                differences.append(
                    f"{section}.{key}: {old.get(key, '(absent)')!r} -> "
                    f"{new.get(key, '(absent)')!r}"
                )
    return differences


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise ParameterError(f"{path}: parameter file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise ParameterError(f"{path}: not a valid YAML file{line}") from None
    except UnicodeDecodeError:
        raise ParameterError(f"{path}: not a text file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParameterError(
            f"{path}: expected a mapping of sections, found {type(data).__name__}"
        )
    return data


def _check_tree(
    data: Mapping[str, Any],
    schema: Mapping[str, Mapping[str, Setting]],
    source: str,
    *,
    complete: bool,
) -> None:
    for section, settings in data.items():
        if section not in schema:
            known = ", ".join(sorted(schema))
            raise ParameterError(
                f"{source}: unknown section '{section}' (sections in this version of "
                f"radscl: {known})"
            )
        if settings is None and not complete:
            continue
        if not isinstance(settings, dict):
            raise ParameterError(
                f"{source}: section '{section}' must be a mapping of settings, "
                f"not {settings!r}"
            )
        for key in settings:
            if key not in schema[section]:
                known = ", ".join(sorted(schema[section]))
                raise ParameterError(
                    f"{source}: unknown key '{section}.{key}' (keys of '{section}': "
                    f"{known})"
                )
    if complete:
        for section, settings in schema.items():
            for key in settings:
                if key not in (data.get(section) or {}):
                    raise ParameterError(f"{source}: no default for '{section}.{key}'")


def _resolve_file(value: str, base_dirs: list[Path], key: str, source: str) -> Path:
    given = Path(value).expanduser()
    candidates = [given] if given.is_absolute() else [d / given for d in base_dirs]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    looked = " or ".join(str(c) for c in candidates)
    raise ParameterError(
        f"{source}: {key}: file {value!r} not found (looked in {looked})"
    )


def _digest(
    values: Mapping[str, Any], schema: Mapping[str, Mapping[str, Setting]]
) -> str:
    files = {}
    for section, settings in schema.items():
        for key, setting in settings.items():
            path = values[section][key]
            if setting.kind == "file" and path is not None:
                files[f"{section}.{key}"] = hashlib.sha256(
                    Path(path).read_bytes()
                ).hexdigest()
    # Paths of referenced files differ between machines; their content is what
    # the features depend on.
    portable = {
        section: {
            key: (
                Path(value).name
                if schema[section][key].kind == "file" and value
                else value
            )
            for key, value in settings.items()
        }
        for section, settings in values.items()
    }
    canonical = json.dumps({"values": portable, "files": files}, sort_keys=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _bad(source: str, key: str, problem: str) -> None:
    raise ParameterError(f"{source}: {key} {problem}")
