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


def _read_longitudinal_table(path: str, option: str):
    """Read a CSV given to an option, or raise a one-line DataError."""
    import pathlib

    import pandas as pd

    from radscl.errors import DataError

    if not pathlib.Path(path).is_file():
        raise DataError(f"{path}: file not found (given to {option})")
    try:
        table = pd.read_csv(path)
    except (
        pd.errors.ParserError,
        pd.errors.EmptyDataError,
        UnicodeDecodeError,
    ) as error:
        raise DataError(f"{path}: not a readable CSV table ({error})") from error
    if table.empty:
        raise DataError(f"{path}: the table has no rows")
    return table


@cli.command("longitudinal")
@click.option(
    "--features",
    "features_path",
    required=True,
    help="CSV of CT features, one row per scan, with patient and scan date columns.",
)
@click.option(
    "--lung-function",
    "lung_function_path",
    required=True,
    help="CSV of lung-function visits: patient, date, fvc_pct and/or fvc_ml, dlco_pct.",
)
@click.option(
    "--rule",
    default="ssc",
    show_default=True,
    help="Progression rule: ssc, ppf, inbuild or eustar.",
)
@click.option(
    "--biomarker",
    default="fibrosis_extent_pct",
    show_default=True,
    help="Baseline CT biomarker in the biomarker x time interaction.",
)
@click.option(
    "--fvc",
    "fvc_column",
    default="fvc_pct",
    show_default=True,
    help="FVC column modelled over time: fvc_pct or fvc_ml.",
)
@click.option("--patient-col", default="patient_id", show_default=True)
@click.option("--scan-date-col", default="scan_date", show_default=True)
@click.option("--visit-date-col", default="date", show_default=True)
@click.option(
    "--outcome",
    "outcome_path",
    default=None,
    help="Optional CSV, one row per patient with time since the first scan and an "
    "event; adds the landmark analysis at the second scan.",
)
@click.option("--time", "time_col", default="time_years", show_default=True)
@click.option("--event", "event_col", default="event", show_default=True)
@click.option(
    "--covariates",
    default="",
    help="Comma-separated baseline covariates from the outcome table for the "
    "landmark models (the baseline biomarker is always included).",
)
@click.option(
    "--landmark-years",
    type=float,
    default=None,
    help="Fixed landmark in years after the first scan (default: each patient's "
    "second scan).",
)
@click.option("--out", "out_dir", required=True, help="Output folder.")
@click.pass_context
def longitudinal(
    ctx: click.Context,
    features_path: str,
    lung_function_path: str,
    rule: str,
    biomarker: str,
    fvc_column: str,
    patient_col: str,
    scan_date_col: str,
    visit_date_col: str,
    outcome_path: str | None,
    time_col: str,
    event_col: str,
    covariates: str,
    landmark_years: float | None,
    out_dir: str,
) -> int:
    """Change between repeat CT scans, FVC trajectories and progression.

    Writes to OUT: change.csv (change of each biomarker between consecutive
    scans and first to last, with protocol flags), progression.csv (time to
    progression by the chosen rule), trajectory.csv and trajectory_fit.json
    (mixed model of FVC with a baseline biomarker x time interaction),
    fvc_trajectories.png and change_vs_outcome.png; with --outcome also
    landmark_comparison.csv and landmark_cox.csv.
    """
    import json
    import pathlib
    import warnings

    from radscl.errors import ParameterError
    from radscl.models import longitudinal as lg
    from radscl.models import progression
    from radscl.report import longitudinal_plots

    log = logging.getLogger("radscl.cli")
    quiet = ctx.obj.get("quiet", False)
    progression_rule = progression.get_rule(rule)
    if fvc_column not in ("fvc_pct", "fvc_ml"):
        raise ParameterError(
            f"--fvc must be fvc_pct or fvc_ml, but found '{fvc_column}'"
        )
    features = _read_longitudinal_table(features_path, "--features")
    lung_function = _read_longitudinal_table(lung_function_path, "--lung-function")
    outcomes = None
    if outcome_path is not None:
        outcomes = _read_longitudinal_table(outcome_path, "--outcome")
    features_name = pathlib.Path(features_path).name
    lung_function_name = pathlib.Path(lung_function_path).name
    out = pathlib.Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ParameterError(f"{out_dir}: --out must be a folder, but it is a file")
    out.mkdir(parents=True, exist_ok=True)

    changes = lg.scan_changes(
        features, patient_col=patient_col, date_col=scan_date_col, source=features_name
    )
    changes.to_csv(out / "change.csv", index=False)

    progressed = progression.derive_progression(
        lung_function,
        progression_rule,
        patient_col=patient_col,
        date_col=visit_date_col,
        source=lung_function_name,
    )
    progressed.to_csv(out / "progression.csv", index=False)

    baseline = lg.baseline_scans(
        features, patient_col=patient_col, date_col=scan_date_col, source=features_name
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", lg.MixedModelConvergenceWarning)
        fit = lg.fit_fvc_trajectory(
            lung_function,
            baseline,
            biomarker=biomarker,
            outcome=fvc_column,
            patient_col=patient_col,
            date_col=visit_date_col,
            source=lung_function_name,
            baseline_source=features_name,
        )
    for caught_warning in caught:
        log.warning("%s", caught_warning.message)
    fit.estimates.to_csv(out / "trajectory.csv", index=False)
    summary = {
        "outcome": fit.outcome,
        "biomarker": fit.biomarker,
        "biomarker_mean": fit.biomarker_mean,
        "biomarker_sd": fit.biomarker_sd,
        "optimizer": fit.optimizer,
        "converged": fit.converged,
        "n_patients": fit.n_patients,
        "n_visits": fit.n_visits,
        "log_likelihood": fit.log_likelihood,
        "time_origin": "each patient's first visit with a value",
        "rule": progression_rule.name,
        "rule_definition": progression_rule.title,
        "rule_source": progression_rule.source,
        "rule_window_months": progression_rule.window_months,
    }
    (out / "trajectory_fit.json").write_text(json.dumps(summary, indent=2) + "\n")
    longitudinal_plots.plot_fvc_trajectories(fit, out / "fvc_trajectories.png")

    change_col = f"{biomarker}_change_per_year"
    comparison = None
    if outcomes is not None:
        dataset = lg.landmark_dataset(
            features,
            outcomes,
            time_col=time_col,
            event_col=event_col,
            measures=[biomarker],
            patient_col=patient_col,
            date_col=scan_date_col,
            landmark_years=landmark_years,
            source=features_name,
            outcome_source=pathlib.Path(outcome_path).name,
        )
        extra = [c.strip() for c in covariates.split(",") if c.strip()]
        result = lg.compare_landmark_models(
            dataset, baseline=[biomarker, *extra], change=[change_col]
        )
        comparison = result.comparison
        comparison.to_csv(out / "landmark_comparison.csv", index=False)
        result.cox_summary.to_csv(out / "landmark_cox.csv", index=False)
        plot_data, plot_time, outcome_label = (
            dataset,
            "time_from_landmark_years",
            event_col,
        )
    else:
        first = lg.first_change_per_patient(changes, patient_col=patient_col)
        plot_data = (
            progressed.merge(first.reset_index(), on=patient_col, how="inner")
            if change_col in first.columns
            else None
        )
        plot_time, outcome_label = (
            "time_years",
            f"progression ({progression_rule.name})",
        )
    if plot_data is not None and plot_data[change_col].notna().sum() >= 3:
        longitudinal_plots.plot_change_vs_outcome(
            plot_data,
            out / "change_vs_outcome.png",
            change_col=change_col,
            time_col=plot_time,
            event_col="event",
            outcome_label=outcome_label,
        )
    else:
        log.warning(
            "change_vs_outcome.png not drawn: fewer than 3 patients with a comparable "
            "change in %s",
            biomarker,
        )

    if not quiet:
        interaction = fit.estimates.set_index("term").loc[f"{biomarker}_z:time_years"]
        consecutive = changes.drop_duplicates([patient_col, "pair", "scan_from"])
        n_pairs = int((consecutive["pair"] == "consecutive").sum())
        n_events = int(progressed["event"].sum())
        click.echo(f"change: {n_pairs} consecutive scan pairs -> {out / 'change.csv'}")
        click.echo(
            f"progression ({progression_rule.name}): {n_events} of {len(progressed)} "
            f"patients progressed -> {out / 'progression.csv'}"
        )
        click.echo(
            f"trajectory: {fit.outcome} change {interaction['estimate']:+.3f}/year "
            f"per SD of {biomarker} (95% CI {interaction['lower95']:+.3f} to "
            f"{interaction['upper95']:+.3f}) -> {out / 'trajectory.csv'}"
        )
        if comparison is not None:
            base_c = comparison.iloc[0]["harrell_c"]
            full = comparison.iloc[1]
            click.echo(
                f"landmark: C {base_c:.3f} -> {full['harrell_c']:.3f}, likelihood "
                f"ratio p = {full['lr_p']:.3g} -> {out / 'landmark_comparison.csv'}"
            )
    return EXIT_OK
