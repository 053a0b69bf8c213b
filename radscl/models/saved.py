"""A fitted prognostic model that can be saved, described, loaded and used.

:func:`fit_prognostic_model` fits the final model on the whole cohort (with
ComBat harmonisation and every preprocessing step fitted on all of it), fixes
the risk-group cut-offs and the range of every input, runs the
leave-one-centre-out validation of :mod:`radscl.models.validation` when a
centre column is given, and writes what was done into a model card.
:meth:`PrognosticModel.save` writes the model with joblib next to
``model_card.json`` and ``model_card.md``; :func:`load_model` reads it back and
warns with :class:`ModelVersionWarning` when radscl or a library it relies on
has a different version from the one that fitted it.

:meth:`PrognosticModel.predict` scores new patients. A row is never
extrapolated silently: a missing or non-numeric input, or a harmonisation
batch the model was not fitted on, leaves that row unscored with the reason;
an input outside the training range is scored and flagged. A required column
that is absent from the table is an error for the whole table.

Known limitations
-----------------
* Survival intervals come from bootstrap refits of the whole pipeline
  (percentile intervals); they show the uncertainty of the fitted model, not
  the patient's own variability, and are not computed for random survival
  forests by default (a forest per resample makes the file large).
* Risk groups are tertiles of the training risk scores, an arbitrary choice
  that keeps the groups the same size in the training cohort only.
* joblib files are pickles: load only models from a source you trust.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import platform
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from radscl import __version__
from radscl.errors import DataError
from radscl.errors import ParameterError
from radscl.errors import RadsclWarning
from radscl.models.estimators import make_estimator
from radscl.models.estimators import predict_survival
from radscl.models.estimators import survival_pipeline
from radscl.models.survival import covariate_frame
from radscl.models.survival import require_columns
from radscl.models.survival import survival_target
from radscl.models.survival import validate_outcome
from radscl.models.validation import VALIDATION_HORIZONS
from radscl.models.validation import default_harmonizer
from radscl.models.validation import leave_one_centre_out

logger = logging.getLogger(__name__)

#: File names inside a model folder.
MODEL_FILE = "model.joblib"
CARD_JSON = "model_card.json"
CARD_MARKDOWN = "model_card.md"

#: Version of the layout of ``model.joblib``.
FORMAT_VERSION = 1

#: Packages whose versions are recorded and checked at load.
CHECKED_PACKAGES = ("radscl", "scikit-learn", "scikit-survival", "lifelines", "numpy")

#: Risk groups, lowest first.
RISK_GROUPS = ("low", "intermediate", "high")

#: Default bootstrap refits for the survival intervals, by estimator.
DEFAULT_INTERVAL_BOOTSTRAP = {"cox": 50, "coxnet": 20, "rsf": 0}

#: Columns read as scanner descriptions for the training summary.
SCANNER_COLUMNS = ("manufacturer", "model", "kernel", "scanner")

INTENDED_USE = (
    "Research use: estimating the risk of the modelled outcome for adults with "
    "systemic-sclerosis interstitial lung disease whose baseline CT and lung "
    "function were measured as in the training cohort. It is not a medical device "
    "and must not guide the care of a patient without clinical validation."
)

_STATUS_OK = "ok"
_STATUS_FLAGGED = "flagged"
_STATUS_NOT_PREDICTED = "not_predicted"

_UNIT_SUFFIXES = (
    ("_mm2", "mm²"),
    ("_ml", "ml"),
    ("_pct", "%"),
    ("_hu", "HU"),
    ("_mm", "mm"),
    ("_cm", "cm"),
    ("_years", "years"),
    ("_kg", "kg"),
)


class ModelVersionWarning(RadsclWarning):
    """A saved model was fitted with other versions of radscl or its libraries."""


def software_versions() -> dict[str, str]:
    """Versions of Python, radscl and the libraries a fitted model depends on."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version

    versions = {"python": platform.python_version(), "radscl": __version__}
    for package in (
        "scikit-learn",
        "scikit-survival",
        "lifelines",
        "numpy",
        "pandas",
        "joblib",
        "scipy",
    ):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def feature_unit(name: str) -> str:
    """The unit a radscl column name carries (``_ml``, ``_pct``, ...)."""
    if name == "age":
        return "years"
    for suffix, unit in _UNIT_SUFFIXES:
        if name.endswith(suffix):
            return unit
    return "as in the training table"


@dataclasses.dataclass
class PrognosticModel:
    """A fitted survival pipeline with what is needed to use it safely.

    Attributes
    ----------
    pipeline : sklearn.pipeline.Pipeline
        ``harmonize -> select -> impute -> scale -> model``, fitted on the
        whole training cohort.
    covariates : list of str
        Input columns of the model.
    time, event : str
        Outcome columns of the training table.
    estimator : str
        ``cox``, ``coxnet`` or ``rsf``.
    horizons : tuple of float
        Times of the predicted survival probabilities.
    risk_cutoffs : tuple of float
        Risk-score cut-offs between the low/intermediate and
        intermediate/high groups (tertiles of the training scores).
    training_ranges : dict
        ``{covariate: (min, max)}`` of the training values.
    batch : str or None
        Harmonisation batch column.
    batches : list of str
        Batches the harmonisation was fitted on.
    interval_pipelines : list of Pipeline
        Bootstrap refits for the survival intervals (may be empty).
    card : dict
        The model card.
    validation : CentreValidation or None
        The leave-one-centre-out results of the fit (not saved; the card
        holds their tables).
    """

    pipeline: Pipeline
    covariates: list[str]
    time: str
    event: str
    estimator: str
    horizons: tuple[float, ...]
    risk_cutoffs: tuple[float, float]
    training_ranges: dict[str, tuple[float, float]]
    batch: str | None = None
    batches: list[str] = dataclasses.field(default_factory=list)
    interval_pipelines: list[Pipeline] = dataclasses.field(default_factory=list)
    card: dict[str, Any] = dataclasses.field(default_factory=dict)
    validation: Any = dataclasses.field(default=None, repr=False)

    @property
    def required_columns(self) -> list[str]:
        """Columns a table must have to be scored."""
        return [*self.covariates, *([self.batch] if self.batch else [])]

    def predict(self, table: pd.DataFrame, *, source: str = "table") -> pd.DataFrame:
        """Score new patients.

        Parameters
        ----------
        table : pandas.DataFrame
            One row per patient with the required columns.
        source : str
            How to name the table in messages.

        Returns
        -------
        pandas.DataFrame
            One row per input row, in order: ``row`` (1-based), ``status``
            (``ok``, ``flagged`` or ``not_predicted``), ``reason``,
            ``risk_score``, ``risk_group`` and, for each horizon ``h``,
            ``survival_<h>`` with ``survival_<h>_lower95`` and
            ``survival_<h>_upper95``.

        Raises
        ------
        DataError
            If a required column is absent.
        """
        require_columns(table, self.required_columns, source=source)
        table = table.reset_index(drop=True)
        values = table[self.covariates].apply(pd.to_numeric, errors="coerce")
        reasons = [[] for _ in range(len(table))]
        usable = np.ones(len(table), dtype=bool)

        for name in self.covariates:
            raw = table[name]
            missing = raw.isna().to_numpy()
            unreadable = values[name].isna().to_numpy() & ~missing
            infinite = ~np.isfinite(values[name].fillna(0.0).to_numpy(dtype=float))
            for i in np.flatnonzero(missing):
                reasons[i].append(f"{name} is missing")
            for i in np.flatnonzero(unreadable | infinite):
                reasons[i].append(f"{name} is not a finite number")
            usable &= ~(missing | unreadable | infinite)
        if self.batch:
            labels = table[self.batch].astype(str).where(table[self.batch].notna())
            unseen = ~labels.isin(self.batches).to_numpy()
            for i in np.flatnonzero(unseen):
                what = "missing" if pd.isna(labels.iloc[i]) else "not seen in training"
                reasons[i].append(f"harmonisation batch ({self.batch}) {what}")
            usable &= ~unseen

        flagged = np.zeros(len(table), dtype=bool)
        for name, (low, high) in self.training_ranges.items():
            column = values[name].to_numpy(dtype=float)
            with np.errstate(invalid="ignore"):
                below, above = column < low, column > high
            for i in np.flatnonzero(usable & below):
                reasons[i].append(
                    f"{name} {column[i]:.4g} below the training range [{low:.4g}, "
                    f"{high:.4g}]"
                )
            for i in np.flatnonzero(usable & above):
                reasons[i].append(
                    f"{name} {column[i]:.4g} above the training range [{low:.4g}, "
                    f"{high:.4g}]"
                )
            flagged |= usable & (below | above)

        out = pd.DataFrame(
            {
                "row": np.arange(1, len(table) + 1),
                "status": np.where(
                    ~usable,
                    _STATUS_NOT_PREDICTED,
                    np.where(flagged, _STATUS_FLAGGED, _STATUS_OK),
                ),
                "reason": ["; ".join(r) for r in reasons],
                "risk_score": np.nan,
                "risk_group": pd.Series([None] * len(table), dtype=object),
            }
        )
        columns = {}
        for h in self.horizons:
            for suffix in ("", "_lower95", "_upper95"):
                columns[f"survival_{h:g}{suffix}"] = np.full(len(table), np.nan)
        out = pd.concat([out, pd.DataFrame(columns)], axis=1)
        if not usable.any():
            return out

        rows = table.loc[usable].copy()
        rows[self.covariates] = values.loc[usable]
        risk = self.pipeline.predict(rows)
        survival = predict_survival(self.pipeline, rows, self.horizons)
        out.loc[usable, "risk_score"] = risk
        out.loc[usable, "risk_group"] = risk_group(risk, self.risk_cutoffs)
        lower, upper = self._survival_interval(rows)
        for j, h in enumerate(self.horizons):
            out.loc[usable, f"survival_{h:g}"] = survival[:, j]
            out.loc[usable, f"survival_{h:g}_lower95"] = lower[:, j]
            out.loc[usable, f"survival_{h:g}_upper95"] = upper[:, j]
        return out

    def _survival_interval(self, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        shape = (len(rows), len(self.horizons))
        if not self.interval_pipelines:
            return np.full(shape, np.nan), np.full(shape, np.nan)
        draws = np.stack(
            [predict_survival(p, rows, self.horizons) for p in self.interval_pipelines]
        )
        lower, upper = np.percentile(draws, [2.5, 97.5], axis=0)
        return lower, upper

    def save(self, directory: str | Path) -> dict[str, Path]:
        """Write the model, its card (JSON and Markdown) and validation tables.

        Returns
        -------
        dict of str to Path
            The files written.
        """
        import joblib

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        written = {"model": directory / MODEL_FILE}
        payload = {
            "format": FORMAT_VERSION,
            "versions": self.card.get("software", software_versions()),
            "model": dataclasses.replace(self, validation=None),
        }
        joblib.dump(payload, written["model"], compress=3)
        written["card_json"] = directory / CARD_JSON
        written["card_json"].write_text(
            json.dumps(_jsonable(self.card), indent=2, allow_nan=False) + "\n",
            encoding="utf-8",
        )
        written["card_markdown"] = directory / CARD_MARKDOWN
        written["card_markdown"].write_text(model_card_markdown(self.card), "utf-8")
        logger.debug("saved model to %s", directory)
        return written


def risk_group(risk: np.ndarray, cutoffs: Sequence[float]) -> np.ndarray:
    """Risk group (low, intermediate, high) of each risk score."""
    index = np.searchsorted(np.asarray(cutoffs, dtype=float), risk, side="right")
    return np.asarray(RISK_GROUPS, dtype=object)[index]


def fit_prognostic_model(
    table: pd.DataFrame,
    *,
    time: str,
    event: str,
    covariates: Sequence[str],
    estimator: str = "cox",
    harmonize_by: str | None = None,
    centre: str | None = None,
    horizons: Sequence[float] = VALIDATION_HORIZONS,
    interval_bootstrap: int | None = None,
    validation_bootstrap: int = 200,
    min_events: int = 5,
    seed: int = 0,
    outcome_description: str | None = None,
    source: str = "table",
) -> PrognosticModel:
    """Fit the final model on the whole cohort and describe it.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per patient.
    time, event : str
        Outcome columns (event 0/1).
    covariates : sequence of str
        Model inputs.
    estimator : {"cox", "coxnet", "rsf"}
        The survival model.
    harmonize_by : str, optional
        Batch column for ComBat of the imaging features among ``covariates``.
    centre : str, optional
        Centre column; when given, the model is validated by leaving one
        centre out, and the centres are summarised in the card.
    horizons : sequence of float
        Times of the predicted survival (unit of ``time``).
    interval_bootstrap : int, optional
        Bootstrap refits for the survival intervals; by default
        :data:`DEFAULT_INTERVAL_BOOTSTRAP` for the estimator.
    validation_bootstrap : int
        Bootstrap resamples per centre in the validation.
    min_events : int
        Fewest events for a centre to be evaluated.
    seed : int
        Seed of the estimators and resampling.
    outcome_description : str, optional
        What the event is (for the card).
    source : str
        How to name the table in messages.

    Returns
    -------
    PrognosticModel
    """
    covariates = list(covariates)
    make_estimator(estimator)
    validate_outcome(table, time, event, source=source)
    frame = covariate_frame(table, covariates, source=source)
    horizons = tuple(float(h) for h in horizons)
    if not horizons or any(h <= 0 for h in horizons):
        raise ParameterError(f"horizons must be positive, but found {horizons}")
    if interval_bootstrap is None:
        interval_bootstrap = DEFAULT_INTERVAL_BOOTSTRAP[estimator]
    if interval_bootstrap < 0:
        raise ParameterError(
            f"interval_bootstrap must be >= 0, but found {interval_bootstrap}"
        )
    for column in (harmonize_by, centre):
        if column is not None:
            require_columns(table, [column], source=source)

    table = table.reset_index(drop=True)
    y = survival_target(table[time].to_numpy(float), table[event].to_numpy() == 1)
    harmonizer = (
        default_harmonizer(table, covariates, harmonize_by) if harmonize_by else None
    )
    pipeline = survival_pipeline(
        estimator, covariates, harmonizer=harmonizer, random_state=seed
    )
    pipeline.fit(table, y)

    risk = pipeline.predict(table)
    cutoffs = tuple(float(v) for v in np.quantile(risk, [1 / 3, 2 / 3]))
    ranges = {
        name: (float(frame[name].min()), float(frame[name].max()))
        for name in covariates
    }
    batches = (
        [str(b) for b in pipeline.named_steps["harmonize"].batches_]
        if harmonize_by
        else []
    )
    interval_pipelines = _bootstrap_pipelines(
        pipeline, table, y, interval_bootstrap, seed
    )

    validation = None
    if centre is not None and table[centre].nunique() >= 2:
        validation = leave_one_centre_out(
            table,
            time=time,
            event=event,
            covariates=covariates,
            centre=centre,
            estimator=estimator,
            harmonizer=harmonizer,
            horizons=horizons,
            min_events=min_events,
            n_bootstrap=validation_bootstrap,
            seed=seed,
        )

    model = PrognosticModel(
        pipeline=pipeline,
        covariates=covariates,
        time=time,
        event=event,
        estimator=estimator,
        horizons=horizons,
        risk_cutoffs=cutoffs,
        training_ranges=ranges,
        batch=harmonize_by,
        batches=batches,
        interval_pipelines=interval_pipelines,
    )
    model.card = build_model_card(
        model,
        table,
        centre=centre,
        validation=validation,
        outcome_description=outcome_description,
        interval_bootstrap=len(interval_pipelines),
    )
    model.validation = validation
    return model


def _bootstrap_pipelines(
    pipeline: Pipeline, table: pd.DataFrame, y: np.ndarray, n: int, seed: int
) -> list[Pipeline]:
    rng = np.random.default_rng(seed + 1)
    fitted = []
    for _ in range(n):
        rows = rng.integers(0, len(table), len(table))
        if not y["event"][rows].any():
            continue
        refit = clone(pipeline)
        try:
            with warnings.catch_warnings():
                # a resample may leave a small batch or a near-constant column;
                # it is one of many draws, so its warnings are not the user's
                warnings.simplefilter("ignore")
                refit.fit(table.iloc[rows], y[rows])
        except (DataError, ValueError, np.linalg.LinAlgError) as error:
            logger.debug("bootstrap refit skipped: %s", error)
            continue
        fitted.append(refit)
    if n and len(fitted) < n:
        logger.info("%d of %d bootstrap refits succeeded", len(fitted), n)
    return fitted


def _follow_up(table: pd.DataFrame, time: str, event: str) -> dict[str, float]:
    """Median follow-up by the reverse Kaplan-Meier method, and the range."""
    from sksurv.nonparametric import kaplan_meier_estimator

    t = table[time].to_numpy(float)
    censored = table[event].to_numpy() != 1
    median = float("nan")
    if censored.any():
        km_time, km_survival = kaplan_meier_estimator(censored, t)
        below = np.flatnonzero(km_survival <= 0.5)
        if below.size:
            median = float(km_time[below[0]])
    return {"median_reverse_km": median, "min": float(t.min()), "max": float(t.max())}


def build_model_card(
    model: PrognosticModel,
    table: pd.DataFrame,
    *,
    centre: str | None,
    validation,
    outcome_description: str | None,
    interval_bootstrap: int,
) -> dict[str, Any]:
    """The model card as a dictionary (written as JSON and Markdown)."""
    pipeline = model.pipeline
    event_flags = table[model.event].to_numpy() == 1
    combat = pipeline.named_steps["harmonize"]
    imputer = pipeline.named_steps["impute"]
    scaler = pipeline.named_steps["scale"]

    features = [
        {
            "name": name,
            "unit": feature_unit(name),
            "training_min": model.training_ranges[name][0],
            "training_max": model.training_ranges[name][1],
            "training_missing": int(table[name].isna().sum()),
            "imputed_with": float(imputer.statistics_[i]),
            "scaled_mean": float(scaler.mean_[i]),
            "scaled_sd": float(scaler.scale_[i]),
            "harmonised": bool(model.batch) and name in list(combat.features_),
        }
        for i, name in enumerate(model.covariates)
    ]
    preprocessing = [
        (
            f"ComBat (parametric empirical Bayes) by {model.batch!r} on "
            f"{', '.join(combat.features_)}, fitted on {len(model.batches)} batches"
            if model.batch
            else "no harmonisation"
        ),
        "missing training values imputed with the training median (new patients "
        "with a missing input are not scored)",
        "standardised with the training mean and standard deviation",
    ]
    cohort = {
        "n": len(table),
        "events": int(event_flags.sum()),
        "events_per_covariate": float(event_flags.sum() / len(model.covariates)),
        "follow_up": _follow_up(table, model.time, model.event),
    }
    if centre is not None:
        cohort["centres"] = {
            str(k): int(v) for k, v in table[centre].value_counts().sort_index().items()
        }
    scanners = [c for c in SCANNER_COLUMNS if c in table.columns]
    if scanners:
        labels = table[scanners].astype(str).agg(" ".join, axis=1)
        cohort["scanners"] = {
            str(k): int(v) for k, v in labels.value_counts().sort_index().items()
        }

    model_section: dict[str, Any] = {
        "estimator": model.estimator,
        "horizons": list(model.horizons),
        "risk_groups": {
            "labels": list(RISK_GROUPS),
            "cutoffs": list(model.risk_cutoffs),
            "rule": "tertiles of the training risk scores",
        },
        "survival_interval": (
            f"95 % percentile interval over {interval_bootstrap} bootstrap refits"
            if interval_bootstrap
            else "not computed"
        ),
    }
    estimator = pipeline.named_steps["model"]
    if hasattr(estimator, "summary_"):
        model_section["coefficients_per_sd"] = estimator.summary_.to_dict("records")
    elif hasattr(estimator, "coef_"):
        model_section["coefficients_per_sd"] = [
            {"covariate": n, "coef": float(c)}
            for n, c in zip(model.covariates, estimator.coef_, strict=True)
        ]

    limits = [
        "Predictions outside the training range of an input are flagged, not "
        "trusted; rows of a scanner batch not seen in training are not scored.",
        "Validated only on the centres listed; a new centre should check "
        "calibration on its own patients before use.",
    ]
    if cohort["events_per_covariate"] < 10:
        limits.append(
            f"Only {cohort['events_per_covariate']:.1f} events per covariate: the "
            "model may be overfitted."
        )
    validation_section: dict[str, Any]
    if validation is None:
        validation_section = {
            "method": "none",
            "reason": "no centre column" if centre is None else "a single centre",
        }
        limits.append("No internal-external validation was run.")
    else:
        not_evaluable = validation.centre_rows()[~validation.centre_rows()["evaluable"]]
        for _, row in not_evaluable.iterrows():
            limits.append(f"Centre {row['centre']} was not evaluated: {row['reason']}.")
        validation_section = {
            "method": "leave one centre out (internal-external cross-validation); "
            "harmonisation and preprocessing fitted on the training centres only",
            "centres": validation.table.to_dict("records"),
            "heterogeneity": validation.heterogeneity.to_dict("records"),
        }

    return {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "outcome": {
            "time": model.time,
            "event": model.event,
            "definition": outcome_description
            or f"time to {model.event} (event = 1), censored otherwise; time in the "
            f"unit of {model.time!r}",
        },
        "features": features,
        "preprocessing": preprocessing,
        "model": model_section,
        "training_cohort": cohort,
        "validation": validation_section,
        "software": software_versions(),
        "intended_use": INTENDED_USE,
        "known_limits": limits,
    }


def model_card_markdown(card: dict[str, Any]) -> str:
    """The model card as Markdown, in the order of the TRIPOD items."""
    lines = ["# Model card", ""]
    outcome = card["outcome"]
    lines += ["## What is predicted", "", outcome["definition"], ""]
    lines += [
        "## From what",
        "",
        "| feature | unit | training range | harmonised |",
        "|---|---|---|---|",
    ]
    for f in card["features"]:
        lines.append(
            f"| {f['name']} | {f['unit']} | {f['training_min']:.4g} – "
            f"{f['training_max']:.4g} | {'yes' if f['harmonised'] else 'no'} |"
        )
    lines += ["", "Preprocessing:", ""] + [f"- {p}" for p in card["preprocessing"]]
    model = card["model"]
    lines += [
        "",
        f"Model: {model['estimator']}; survival predicted at "
        f"{', '.join(f'{h:g}' for h in model['horizons'])}; "
        f"interval: {model['survival_interval']}.",
        f"Risk groups: {', '.join(model['risk_groups']['labels'])} at cut-offs "
        f"{', '.join(f'{c:.3f}' for c in model['risk_groups']['cutoffs'])} "
        f"({model['risk_groups']['rule']}).",
        "",
    ]
    cohort = card["training_cohort"]
    follow = cohort["follow_up"]
    lines += [
        "## In whom",
        "",
        f"{cohort['n']} patients, {cohort['events']} events; median follow-up "
        f"{_fmt(follow['median_reverse_km'])} (reverse Kaplan-Meier), range "
        f"{_fmt(follow['min'])}–{_fmt(follow['max'])}.",
    ]
    for key in ("centres", "scanners"):
        if key in cohort:
            counts = ", ".join(f"{k} ({v})" for k, v in cohort[key].items())
            lines.append(f"{key.capitalize()}: {counts}.")
    validation = card["validation"]
    lines += ["", "## How it was validated, and how well", ""]
    if "centres" not in validation:
        lines.append(f"Not validated: {validation['reason']}.")
    else:
        lines += [
            validation["method"] + ".",
            "",
            "| centre | n | events | Harrell's C (95 % CI) | calibration slope |"
            " note |",
            "|---|---|---|---|---|---|",
        ]
        for row in validation["centres"]:
            lines.append(
                f"| {row['centre']} | {_fmt(row['n'])} | {_fmt(row['events'])} | "
                f"{_fmt(row['harrell_c'])} ({_fmt(row['harrell_c_lower95'])}–"
                f"{_fmt(row['harrell_c_upper95'])}) | {_fmt(row['calibration_slope'])}"
                f" | {row['reason'] or ''} |"
            )
        for row in validation["heterogeneity"]:
            lines.append(
                f"\nHeterogeneity of {row['metric']}: I² = {_fmt(row['i2_pct'])} %, "
                f"tau² = {_fmt(row['tau2'])}, Q p = {_fmt(row['q_p'])} "
                f"({row['k']} centres)."
            )
    lines += [
        "",
        "## Intended use",
        "",
        card["intended_use"],
        "",
        "## Known limits",
        "",
    ]
    lines += [f"- {item}" for item in card["known_limits"]]
    lines += ["", "## Software", ""]
    lines += [f"- {k} {v}" for k, v in card["software"].items()]
    lines += ["", f"Created {card['created']}.", ""]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _jsonable(value: Any) -> Any:
    """Convert numpy and pandas values (NaN to null) for JSON."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if value is pd.NA or value is None:
        return None
    return value


def load_model(directory: str | Path) -> PrognosticModel:
    """Load a model saved with :meth:`PrognosticModel.save`.

    Warns with :class:`ModelVersionWarning` when radscl or a library in
    :data:`CHECKED_PACKAGES` differs from the versions that fitted the model.

    Raises
    ------
    DataError
        If the folder holds no model or the file is not a radscl model.
    """
    import joblib

    path = Path(directory) / MODEL_FILE
    if not path.is_file():
        raise DataError(f"{directory}: no {MODEL_FILE} in the model folder")
    try:
        payload = joblib.load(path)
    except Exception as error:  # a damaged or foreign file can fail in many ways
        raise DataError(
            f"{path}: cannot be read as a radscl model: {type(error).__name__}"
        ) from None
    if not isinstance(payload, dict) or not isinstance(
        payload.get("model"), PrognosticModel
    ):
        raise DataError(f"{path}: not a radscl prognostic model")

    saved = payload.get("versions", {})
    current = software_versions()
    differences = [
        f"{name} {saved.get(name, 'unknown')} (now {current[name]})"
        for name in CHECKED_PACKAGES
        if saved.get(name) != current[name]
    ]
    if differences:
        warnings.warn(
            f"model {directory} was fitted with {', '.join(differences)}; its "
            "predictions may differ from those validated. Refit it with the "
            "installed versions, or install the versions it was fitted with",
            ModelVersionWarning,
            stacklevel=2,
        )
    return payload["model"]


__all__ = [
    "CARD_JSON",
    "CARD_MARKDOWN",
    "MODEL_FILE",
    "ModelVersionWarning",
    "PrognosticModel",
    "build_model_card",
    "feature_unit",
    "fit_prognostic_model",
    "load_model",
    "model_card_markdown",
    "risk_group",
    "software_versions",
]
