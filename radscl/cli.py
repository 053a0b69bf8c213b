"""The ``radscl`` command line.

Every command exits 0 on success, 1 when some cases failed and 2 on a usage or
input error, which is reported as one line on stderr. Heavy libraries are
imported inside the commands so that ``--help`` answers at once.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import click

from radscl import __version__
from radscl.errors import RadsclError

EXIT_OK = 0
EXIT_CASES_FAILED = 1
EXIT_INPUT_ERROR = 2


class CasesFailed(click.ClickException):
    """Raised by a command when it finished but some of its cases failed."""

    exit_code = EXIT_CASES_FAILED


def _configure_logging(verbosity: int, quiet: bool) -> None:
    level = logging.WARNING
    if quiet:
        level = logging.ERROR
    elif verbosity == 1:
        level = logging.INFO
    elif verbosity >= 2:
        level = logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("radscl")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="radscl")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Prognostic chest-CT biomarkers for SSc-ILD.

    Airway, vessel and fibrosis measurements from chest CT, harmonised across
    centres and compared with lung function as predictors of outcome.
    """
    _configure_logging(verbose, quiet)
    ctx.ensure_object(dict)
    ctx.obj["quiet"] = quiet


def main(args: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code.

    Parameters
    ----------
    args : sequence of str, optional
        Command-line arguments without the program name; ``sys.argv[1:]`` when
        omitted.

    Returns
    -------
    int
        0 on success, 1 when some cases failed, 2 on a usage or input error.
    """
    try:
        result = cli.main(
            args=list(args) if args is not None else None,
            prog_name="radscl",
            standalone_mode=False,
        )
    except click.exceptions.Abort:
        click.echo("radscl: aborted", err=True)
        return EXIT_INPUT_ERROR
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except RadsclError as error:
        click.echo(f"radscl: error: {_one_line(str(error))}", err=True)
        return EXIT_INPUT_ERROR
    except click.exceptions.Exit as done:
        return done.exit_code
    return result if isinstance(result, int) else EXIT_OK


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


def _one_line(message: str) -> str:
    return " ".join(message.split())


@cli.group()
def model() -> None:
    """Survival models: Cox coefficients and baseline-versus-biomarker comparisons."""


def _split_names(value: str | None, option: str) -> list[str]:
    if value is None:
        return []
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise RadsclError(f"{option} needs at least one column name")
    return names


def _split_numbers(value: str, option: str) -> list[float]:
    try:
        return [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise RadsclError(
            f"{option} must be numbers separated by commas, but found {value!r}"
        ) from None


def _read_table(path: str):
    import pandas as pd

    from radscl.errors import DataError

    try:
        if path.endswith(".parquet"):
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except (OSError, ValueError) as error:
        raise DataError(
            f"{path}: cannot read the table ({type(error).__name__}: {error})"
        ) from None


def _survival_table(
    data: str,
    features: str | None,
    patient_id: str,
    time: str,
    event: str,
    columns: list[str],
    cause: int | None,
):
    """Read, join, add baseline scores when asked for, validate, recode a cause."""
    from pathlib import Path

    from radscl.models.baselines import add_baseline_scores
    from radscl.models.competing import cause_specific_table
    from radscl.models.survival import build_survival_table
    from radscl.models.survival import require_columns

    clinical = _read_table(data)
    scans = _read_table(features) if features else None
    name = Path(data).name
    codes = (0, 1) if cause is None else tuple(range(0, 100))
    survival = build_survival_table(
        scans,
        clinical,
        time=time,
        event=event,
        patient_id=patient_id,
        event_codes=codes,
        source=name,
    )
    table = survival.table
    scores = {"gap_index", "gap_stage", "goh_extensive", "cpi"}
    if any(c in scores and c not in table.columns for c in columns):
        table = add_baseline_scores(table)
    require_columns(table, columns, source=name)
    status = None
    if cause is not None:
        status = table[event].astype(int)
        table = cause_specific_table(table, time, event, cause)
    return table, status


@model.command("cox")
@click.option(
    "--data",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Clinical (or joined) table, CSV or Parquet, one row per patient.",
)
@click.option("--time", "time_column", required=True, help="Follow-up time column.")
@click.option(
    "--event",
    "event_column",
    required=True,
    help="Event column: 0 censored, 1 event (or cause codes with --cause).",
)
@click.option("--covariates", required=True, help="Comma-separated covariate columns.")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Output folder.",
)
@click.option(
    "--features",
    type=click.Path(exists=True, dir_okay=False),
    help="features.csv (one row per scan), joined on the patient id at the baseline "
    "scan.",
)
@click.option(
    "--patient-id",
    default="patient_id",
    show_default=True,
    help="Patient identifier column used for the join.",
)
@click.option(
    "--cause",
    type=int,
    help="Cause of interest in a competing-risks event column; "
    "other causes are censored (cause-specific hazards).",
)
@click.pass_context
def model_cox(
    ctx,
    data,
    time_column,
    event_column,
    covariates,
    out_dir,
    features,
    patient_id,
    cause,
):
    """Fit a Cox model and write DIR/cox_summary.csv.

    Columns: covariate, coef, hr, hr_lower95, hr_upper95, se, z, p (Efron ties,
    patients with a missing covariate left out). Also writes the Schoenfeld
    residual test (proportional_hazards.csv) and a forest plot (forest.png).
    """
    from pathlib import Path

    from radscl.models.estimators import CoxPH
    from radscl.models.evaluation import proportional_hazards_test
    from radscl.models.survival import covariate_frame
    from radscl.models.survival import survival_target
    from radscl.report.plots import forest_plot
    from radscl.report.plots import save_figure

    names = _split_names(covariates, "--covariates")
    table, _ = _survival_table(
        data, features, patient_id, time_column, event_column, names, cause
    )
    frame = covariate_frame(table, names, source=Path(data).name)
    complete = frame.notna().all(axis=1).to_numpy()
    if not complete.all():
        logging.getLogger("radscl.cli").warning(
            "%d of %d patients have a missing covariate and are left out",
            int((~complete).sum()),
            len(frame),
        )
    y = survival_target(
        table[time_column].to_numpy()[complete],
        table[event_column].to_numpy()[complete],
    )
    fitted = CoxPH().fit(frame[complete], y)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fitted.summary_.to_csv(out / "cox_summary.csv", index=False)
    proportional_hazards_test(table[complete], time_column, event_column, names).to_csv(
        out / "proportional_hazards.csv", index=False
    )
    save_figure(
        forest_plot(fitted.summary_, title="Cox model, hazard ratio per unit"),
        out / "forest.png",
    )
    lr_chi2 = 2 * (fitted.log_likelihood_ - fitted.null_log_likelihood_)
    if not ctx.obj.get("quiet"):
        click.echo(
            f"Cox model: {fitted.n_samples_} patients, {fitted.n_events_} events, "
            f"LR chi2 = {lr_chi2:.2f} "
            f"on {len(names)} df -> {out / 'cox_summary.csv'}"
        )
    return EXIT_OK


@model.command("compare")
@click.option(
    "--data",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Clinical (or joined) table, CSV or Parquet, one row per patient.",
)
@click.option("--time", "time_column", required=True, help="Follow-up time column.")
@click.option(
    "--event",
    "event_column",
    required=True,
    help="Event column: 0 censored, 1 event (or cause codes with --cause).",
)
@click.option(
    "--baseline",
    required=True,
    help="Comma-separated baseline columns (e.g. fvc_pct,dlco_pct, or gap_index, "
    "goh_extensive, cpi, computed when absent).",
)
@click.option(
    "--biomarkers", required=True, help="Comma-separated CT biomarker columns."
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Output folder.",
)
@click.option(
    "--model",
    "models",
    multiple=True,
    default=("all",),
    show_default=True,
    type=click.Choice(["cox", "coxnet", "rsf", "all"]),
    help="Estimators to compare (repeat the option for several).",
)
@click.option("--folds", default=5, show_default=True, type=click.IntRange(2, 20))
@click.option("--repeats", default=5, show_default=True, type=click.IntRange(1, 100))
@click.option(
    "--bootstrap",
    "n_bootstrap",
    default=200,
    show_default=True,
    type=click.IntRange(10, 100_000),
    help="Bootstrap resamples for the intervals.",
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--jobs",
    default=1,
    show_default=True,
    type=int,
    help="Parallel model fits (-1: all cores).",
)
@click.option(
    "--horizons",
    default="1,2,3,5",
    show_default=True,
    help="Times of the time-dependent AUC, in the unit of --time.",
)
@click.option(
    "--tau", type=float, help="Truncation time of Uno's C [largest usable horizon]."
)
@click.option(
    "--calibration-time",
    type=float,
    help="Time of the calibration plot [middle horizon].",
)
@click.option(
    "--features",
    type=click.Path(exists=True, dir_okay=False),
    help="features.csv (one row per scan), joined on the patient id at the baseline "
    "scan.",
)
@click.option("--patient-id", default="patient_id", show_default=True)
@click.option(
    "--cause",
    type=int,
    help="Cause of interest in a competing-risks event column; "
    "other causes compete (censored in the models, competing in the incidence curves).",
)
@click.option(
    "--no-biomarkers-alone",
    is_flag=True,
    help="Skip the models of the biomarkers without the baseline.",
)
@click.pass_context
def model_compare(
    ctx,
    data,
    time_column,
    event_column,
    baseline,
    biomarkers,
    out_dir,
    models,
    folds,
    repeats,
    n_bootstrap,
    seed,
    jobs,
    horizons,
    tau,
    calibration_time,
    features,
    patient_id,
    cause,
    no_biomarkers_alone,
):
    """Compare lung-function baselines with CT biomarkers.

    Writes DIR/comparison.csv (one row per model: Harrell's and Uno's C,
    time-dependent AUC, integrated Brier score, each with a 95 % bootstrap
    interval; the change in C against the baseline Cox model with its interval
    and the likelihood-ratio p-value), PNG figures and DIR/report.html.
    """
    from radscl.models.comparison import compare_models
    from radscl.models.estimators import ESTIMATORS
    from radscl.report.model_report import write_comparison

    baseline_names = _split_names(baseline, "--baseline")
    biomarker_names = _split_names(biomarkers, "--biomarkers")
    estimators = list(ESTIMATORS) if "all" in models else list(dict.fromkeys(models))
    table, status = _survival_table(
        data,
        features,
        patient_id,
        time_column,
        event_column,
        [*baseline_names, *biomarker_names],
        cause,
    )
    comparison = compare_models(
        table,
        time=time_column,
        event=event_column,
        baseline=baseline_names,
        biomarkers=biomarker_names,
        estimators=estimators,
        folds=folds,
        repeats=repeats,
        n_bootstrap=n_bootstrap,
        seed=seed,
        n_jobs=jobs,
        horizons=_split_numbers(horizons, "--horizons"),
        tau=tau,
        calibration_time=calibration_time,
        biomarkers_alone=not no_biomarkers_alone,
    )
    written = write_comparison(comparison, table, out_dir, status=status, cause=cause)
    if not ctx.obj.get("quiet"):
        shown = comparison.table[
            [
                "model",
                "harrell_c",
                "delta_c",
                "delta_c_lower95",
                "delta_c_upper95",
                "lr_p",
            ]
        ]
        click.echo(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        click.echo(f"report: {written['report']}")
    return EXIT_OK
