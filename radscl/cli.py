"""The ``radscl`` command line.

Every command exits 0 on success, 1 when some cases failed and 2 on a usage or
input error, which is reported as one line on stderr. Heavy libraries are
imported inside the commands so that ``--help`` answers at once.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

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
@click.option(
    "-v", "--verbose", count=True, help="More log output (-v info, -vv debug)."
)
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


@cli.command("info")
@click.argument("scan", type=click.Path(path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option(
    "--series",
    metavar="KEY",
    default=None,
    help="SeriesNumber or series key of the DICOM series to load "
    "(default: chosen automatically).",
)
def info(scan: str, as_json: bool, series: str | None) -> None:
    """Show a scan's metadata and quality report.

    SCAN is a DICOM folder (searched recursively) or file, or a .nii, .nii.gz,
    .nrrd or .mha volume.
    """
    import json

    from radscl.io import load_scan

    loaded = load_scan(scan, series=series)
    report = {
        "source": loaded.source,
        "metadata": loaded.metadata.to_dict(),
        "origin_mm": list(loaded.origin_mm),
        "direction": list(loaded.direction),
        "quality": [finding.to_dict() for finding in loaded.quality],
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(_info_text(report))


def _info_text(report: dict) -> str:
    meta = report["metadata"]

    def mm(value: float | None, digits: int = 3) -> str:
        return "unknown" if value is None else f"{value:.{digits}f} mm"

    def known(value: object) -> str:
        return "unknown" if value is None or value == "" else str(value)

    def yes_no(value: bool | None) -> str:
        return "unknown" if value is None else ("yes" if value else "no")

    scanner = " ".join(v for v in (meta["manufacturer"], meta["model"]) if v)
    rows = [
        ("source", report["source"]),
        ("format", meta["source_format"]),
        ("series", meta["series_choice"] or "-"),
        ("shape", " x ".join(str(v) for v in meta["shape"]) + " (z, y, x)"),
        (
            "spacing",
            " x ".join(f"{v:.3f}" for v in meta["spacing_mm"]) + " mm (z, y, x)",
        ),
        ("slice thickness", mm(meta["slice_thickness_mm"], 2)),
        ("slice interval", mm(meta["slice_interval_mm"])),
        ("contiguous", yes_no(meta["contiguous"])),
        ("kernel", f"{known(meta['kernel'])} ({meta['kernel_class']})"),
        ("scanner", scanner or "unknown"),
        ("tube voltage", "unknown" if meta["kvp"] is None else f"{meta['kvp']:g} kVp"),
        ("contrast", yes_no(meta["contrast"])),
        ("acquisition year", known(meta["acquisition_year"])),
        ("gantry tilt", f"{meta['gantry_tilt_deg']:.1f} deg"),
    ]
    lines = [f"{name:<18}{value}" for name, value in rows]
    lines += ["", "quality report"]
    if not report["quality"]:
        lines.append("  no findings")
    for finding in report["quality"]:
        lines.append(
            f"  {finding['severity']:<8}{finding['code']:<28}{finding['message']}"
        )
        if finding["fix"]:
            lines.append(f"  {'':<8}{'':<28}-> {finding['fix']}")
    return "\n".join(lines)


@cli.command("phantom")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Output folder.",
)
@click.option("--seed", default=0, show_default=True, help="Anatomy and noise seed.")
@click.option(
    "--size",
    type=click.Choice(["small", "full"]),
    default="small",
    show_default=True,
    help="small: 160x160 at 2.25 mm, 2.5 mm slices; full: 512x512 at 0.7 mm, 1 mm slices.",
)
@click.option(
    "--fibrosis",
    "fibrosis_pct",
    default=0.0,
    show_default=True,
    help="Fibrotic share of the lung, %.",
)
@click.option(
    "--emphysema",
    "emphysema_pct",
    default=0.0,
    show_default=True,
    help="Emphysematous share of the lung, %.",
)
@click.option(
    "--airway-dilation",
    default=1.0,
    show_default=True,
    help="Lumen factor of airways in fibrotic lung.",
)
@click.option(
    "--vessel-scale",
    default=1.0,
    show_default=True,
    help="Radius factor of every vessel.",
)
@click.option(
    "--kernel", type=click.Choice(["soft", "sharp"]), default="soft", show_default=True
)
@click.option(
    "--noise",
    "noise_hu",
    type=float,
    default=None,
    help="Noise SD in HU (default: the kernel's).",
)
@click.option(
    "--hu-offset",
    default=0.0,
    show_default=True,
    help="Calibration offset added to every voxel.",
)
@click.option(
    "--gapped", is_flag=True, help="1 mm slices every 10 mm (incremental HRCT)."
)
@click.option(
    "--format",
    "formats",
    type=click.Choice(["nifti", "dicom", "both"]),
    default="both",
    show_default=True,
)
def phantom(out_dir: Path, formats: str, **params) -> None:
    """Write a synthetic chest CT with its ground truth.

    Writes ct.nii.gz and/or dicom/, the ground-truth label maps and truth.json
    (the volumes every extractor reports) into OUT.
    """
    from radscl.phantom import make_phantom
    from radscl.phantom.output import write_phantom

    drawn = make_phantom(params.pop("size"), **params)
    chosen = ("nifti", "dicom") if formats == "both" else (formats,)
    written = write_phantom(drawn, out_dir, chosen)
    truth = drawn.truth
    click.echo(
        f"phantom written to {out_dir}: lung {truth['lung_volume_ml']:.0f} ml, "
        f"airway {truth['airway_volume_ml']:.1f} ml, vessel {truth['vessel_volume_ml']:.1f} ml, "
        f"fibrosis {truth['fibrosis_extent_pct']:.1f} %"
    )
    for name, path in written.items():
        click.echo(f"  {name}: {path}")


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


@cli.command("harmonize")
@click.argument("features_file", metavar="FEATURES", type=click.Path(path_type=Path))
@click.option(
    "--batch",
    "batch_columns",
    required=True,
    help="Batch column, or comma-separated scan metadata columns combined into "
    "one batch label (e.g. centre,manufacturer,kernel,contiguous).",
)
@click.option(
    "--covariates",
    default="",
    help="Comma-separated biological covariates to keep (e.g. age,sex,fvc_pct).",
)
@click.option(
    "--features",
    "feature_columns",
    default=None,
    help="Comma-separated feature columns to harmonise; by default the columns "
    "named like radscl's imaging features (mld_hu, fibrosis_extent_pct, rad_*, ...).",
)
@click.option(
    "--method",
    type=click.Choice(["parametric", "nonparametric"]),
    default="parametric",
    show_default=True,
    help="Empirical Bayes prior of the batch effects.",
)
@click.option("--mean-only", is_flag=True, help="Adjust batch means only, not scales.")
@click.option(
    "--small-batches",
    type=click.Choice(["merge", "keep", "error"]),
    default="merge",
    show_default=True,
    help="With several --batch columns, what to do with a batch too small to "
    "estimate: merge it with the batches sharing all but its last label, keep it, "
    "or stop.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Harmonised table (.csv or .parquet); the diagnostics CSV and picture "
    "are written next to it.",
)
@click.pass_context
def harmonize(
    ctx: click.Context,
    features_file: Path,
    batch_columns: str,
    covariates: str,
    feature_columns: str | None,
    method: str,
    mean_only: bool,
    small_batches: str,
    out: Path,
) -> int:
    """Remove centre, scanner and kernel effects from FEATURES with ComBat.

    FEATURES is a table (.csv or .parquet) with one row per scan. Writes the
    harmonised table to --out, and beside it OUT_diagnostics.csv (per-feature
    tests of batch differences before and after) and OUT_batches.png
    (distributions by batch of the most affected features).
    """
    import warnings

    from radscl.errors import DataError
    from radscl.errors import ParameterError
    from radscl.errors import RadsclWarning
    from radscl.harmonize import ComBat
    from radscl.harmonize import compare_batch_effects
    from radscl.harmonize import imaging_feature_columns
    from radscl.harmonize import make_batch
    from radscl.report.harmonize_plots import plot_batch_distributions
    from radscl.report.harmonize_plots import select_features

    table = _read_table(features_file)
    out_format = _table_format(out, "--out")
    batch_list = _split_columns(batch_columns)
    covariate_list = _split_columns(covariates)
    feature_list = None
    if feature_columns is not None:
        feature_list = _split_columns(feature_columns)
    if not batch_list:
        raise ParameterError("--batch must name at least one column")
    if feature_list is None:
        # Clinical columns carried from a manifest must not be harmonised.
        excluded = {*batch_list, *covariate_list}
        named = imaging_feature_columns(table.columns)
        feature_list = [c for c in named if c not in excluded]
        if not feature_list:
            raise DataError(
                f"{features_file}: no column named like an imaging feature; "
                "name the columns to harmonise with --features"
            )
    if not out.parent.is_dir():
        raise DataError(f"{out.parent}: output folder does not exist")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RadsclWarning)
        if len(batch_list) == 1:
            batch = batch_list[0]
        else:
            batch = "batch"
            if batch in table.columns:
                raise DataError(
                    f"{features_file}: column 'batch' exists; pass it as --batch batch "
                    "or rename it"
                )
            table[batch] = make_batch(
                table, batch_list, n_covariates=len(covariate_list), small=small_batches
            )
        combat = ComBat(
            batch=batch,
            covariates=covariate_list,
            features=feature_list,
            method=method,
            mean_only=mean_only,
        )
        harmonised = combat.fit_transform(table)
        diagnostics = compare_batch_effects(
            table, harmonised, batch, covariate_list, combat.features_
        )
    for warning in caught:
        if issubclass(warning.category, RadsclWarning) and not ctx.obj.get("quiet"):
            click.echo(f"radscl: warning: {_one_line(str(warning.message))}", err=True)

    stem = out.with_suffix("")
    diagnostics_path = stem.parent / f"{stem.name}_diagnostics.csv"
    picture_path = stem.parent / f"{stem.name}_batches.png"
    if out_format == "parquet":
        harmonised.to_parquet(out)
    else:
        harmonised.to_csv(out, index=False)
    diagnostics.to_csv(diagnostics_path, index=False)
    plot_batch_distributions(
        table,
        harmonised,
        batch,
        select_features(diagnostics),
        picture_path,
        diagnostics=diagnostics,
    )

    before = int((diagnostics["kruskal_p_before"] < 0.05).sum())
    after = int((diagnostics["kruskal_p_after"] < 0.05).sum())
    if not ctx.obj.get("quiet"):
        click.echo(
            f"harmonised {len(combat.features_)} features over "
            f"{len(combat.batches_)} batches ({len(table)} rows); features with a "
            f"batch difference at p < 0.05: {before} before, {after} after"
        )
        click.echo(f"wrote {out}, {diagnostics_path.name}, {picture_path.name}")
    return EXIT_OK


def _split_columns(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _table_format(path: Path, option: str) -> str:
    from radscl.errors import ParameterError

    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise ParameterError(
        f"{option} {path}: unknown table format {suffix or '(none)'}; "
        "use .csv or .parquet"
    )


def _read_table(path: Path):
    import pandas as pd

    from radscl.errors import DataError

    table_format = _table_format(path, "FEATURES")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        if table_format == "parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: cannot be read as {table_format}: {error}") from None
