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
from radscl.errors import DataError
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


@cli.command("segment")
@click.argument("scan", type=click.Path(path_type=str))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder (created when missing).",
)
@click.option(
    "--series",
    metavar="KEY",
    default=None,
    help="SeriesNumber or series key of the DICOM series to load "
    "(default: chosen automatically).",
)
def segment(scan: str, out_dir: Path, series: str | None) -> None:
    """Segment the lungs, trachea and main bronchi of one scan.

    SCAN is a DICOM folder or file, or a .nii, .nii.gz, .nrrd or .mha volume.
    Writes to OUT: labels.nii.gz (1 right lung, 2 left lung, 3 trachea and
    main bronchi), qc.png (axial levels and a coronal view with the outlines)
    and lungs.json (lung_volume_ml, lung_left_volume_ml, lung_right_volume_ml,
    the threshold used and the quality findings).
    """
    import json

    from radscl.io import load_scan
    from radscl.io import write_image
    from radscl.report.qc import qc_picture
    from radscl.segmentation import LABELS
    from radscl.segmentation.lungs import segment_lungs

    loaded = load_scan(scan, series=series)
    result = segment_lungs(loaded)
    volumes = result.volumes_ml()

    out_dir.mkdir(parents=True, exist_ok=True)
    labels_path = write_image(result.labels, loaded, out_dir / "labels.nii.gz")
    title = (
        f"lungs {volumes['lung_volume_ml']:.0f} ml (right "
        f"{volumes['lung_right_volume_ml']:.0f}, left "
        f"{volumes['lung_left_volume_ml']:.0f})"
    )
    picture_path = qc_picture(loaded, result.labels, out_dir / "qc.png", title=title)
    summary = {
        **{name: round(value, 2) for name, value in volumes.items()},
        "air_threshold_hu": result.air_threshold_hu,
        "spacing_mm": list(result.spacing_mm),
        "contiguous": bool(loaded.metadata.contiguous),
        "labels": {str(value): name for value, name in LABELS.items() if value <= 3},
        "findings": [finding.to_dict() for finding in result.findings],
    }
    json_path = out_dir / "lungs.json"
    json_path.write_text(json.dumps(summary, indent=2) + "\n")

    click.echo(f"{title}; findings: {', '.join(f.code for f in result.findings)}")
    for path in (labels_path, picture_path, json_path):
        click.echo(f"  {path}")


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
    features = _read_table(features_path, "--features")
    lung_function = _read_table(lung_function_path, "--lung-function")
    outcomes = None
    if outcome_path is not None:
        outcomes = _read_table(outcome_path, "--outcome")
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


def _read_table(path: str | Path, option: str = "FEATURES"):
    """Read a CSV or Parquet table given to an option, or raise a one-line error."""
    import pandas as pd

    from radscl.errors import DataError

    path = Path(path)
    table_format = _table_format(path, option)
    if not path.is_file():
        raise DataError(f"{path}: file not found (given to {option})")
    try:
        if table_format == "parquet":
            table = pd.read_parquet(path)
        else:
            table = pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError) as error:
        message = " ".join(str(error).split())
        raise DataError(
            f"{path}: cannot be read as {table_format}: {message}"
        ) from None
    if table.empty:
        raise DataError(f"{path}: the table has no rows")
    return table


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


def _survival_table(
    data: str,
    features: str | None,
    patient_id: str,
    time: str,
    event: str,
    columns: list[str],
    cause: int | None,
    batch: str | None = None,
):
    """Read, join, add baseline scores when asked for, validate, recode a cause."""
    from pathlib import Path

    from radscl.models.baselines import add_baseline_scores
    from radscl.models.competing import cause_specific_table
    from radscl.models.survival import build_survival_table
    from radscl.models.survival import require_columns

    clinical = _read_table(data, "--data")
    scans = _read_table(features, "--features") if features else None
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
    require_columns(table, [*columns, *([batch] if batch else [])], source=name)
    status = None
    if cause is not None:
        status = table[event].astype(int)
        table = cause_specific_table(table, time, event, cause)
    return table, status


def _survival_data_options(command):
    """The table options shared by the model commands."""
    options = [
        click.option(
            "--data",
            required=True,
            type=click.Path(exists=True, dir_okay=False),
            help="Clinical (or joined) table, CSV or Parquet, one row per patient.",
        ),
        click.option(
            "--time", "time_column", required=True, help="Follow-up time column."
        ),
        click.option(
            "--event",
            "event_column",
            required=True,
            help="Event column: 0 censored, 1 event (cause codes with --cause).",
        ),
        click.option(
            "--features",
            type=click.Path(exists=True, dir_okay=False),
            help="features.csv (one row per scan), joined on the patient id at the "
            "baseline scan.",
        ),
        click.option("--patient-id", default="patient_id", show_default=True),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _harmonizer(table, batch: str | None, covariates: list[str]):
    """ComBat of the imaging covariates by ``batch``, or None without a batch."""
    if batch is None:
        return None
    from radscl.errors import ParameterError
    from radscl.harmonize import ComBat
    from radscl.harmonize import imaging_feature_columns

    imaging = imaging_feature_columns(covariates)
    if not imaging:
        raise ParameterError(
            "--harmonize-by needs imaging covariates (names like radscl's features)"
        )
    clinical = [
        c
        for c in covariates
        if c not in imaging
        and c in table
        and table[c].notna().all()
        and table[c].nunique() > 1
    ]
    return ComBat(batch=batch, covariates=clinical, features=imaging)


@model.command("cox")
@_survival_data_options
@click.option("--covariates", required=True, help="Comma-separated covariate columns.")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Output folder.",
)
@click.option(
    "--cause",
    type=int,
    help="Cause of interest in a competing-risks event column; "
    "other causes are censored (cause-specific hazards).",
)
@click.option(
    "--harmonize-by",
    "harmonize_by",
    default=None,
    help="Batch column: ComBat of the imaging covariates by it (inside each "
    "training fold for compare), keeping the clinical covariates' effects.",
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
    harmonize_by,
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
        data, features, patient_id, time_column, event_column, names, cause, harmonize_by
    )
    harmonizer = _harmonizer(table, harmonize_by, names)
    if harmonizer is not None:
        table = harmonizer.fit_transform(table)
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
@_survival_data_options
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
    "--cause",
    type=int,
    help="Cause of interest in a competing-risks event column; "
    "other causes compete (censored in the models, competing in the incidence curves).",
)
@click.option(
    "--harmonize-by",
    "harmonize_by",
    default=None,
    help="Batch column: ComBat of the imaging covariates by it (inside each "
    "training fold for compare), keeping the clinical covariates' effects.",
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
    harmonize_by,
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
        harmonize_by,
    )
    harmonizer = _harmonizer(table, harmonize_by, [*baseline_names, *biomarker_names])
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
        harmonizer=harmonizer,
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


@model.command("fit")
@_survival_data_options
@click.option("--covariates", required=True, help="Comma-separated model inputs.")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Model folder to write.",
)
@click.option(
    "--model",
    "estimator",
    default="cox",
    show_default=True,
    type=click.Choice(["cox", "coxnet", "rsf"]),
    help="Survival model.",
)
@click.option(
    "--harmonize-by",
    help="Batch column for ComBat of the imaging features among the covariates.",
)
@click.option(
    "--centre",
    help="Centre column: validate by leaving one centre out.",
)
@click.option(
    "--horizons",
    default="1,3,5",
    show_default=True,
    help="Times of the predicted survival, in the unit of --time.",
)
@click.option(
    "--interval-bootstrap",
    type=click.IntRange(0, 1000),
    help="Bootstrap refits for the survival intervals [cox 50, coxnet 20, rsf 0].",
)
@click.option(
    "--min-events",
    default=5,
    show_default=True,
    type=click.IntRange(1, None),
    help="Fewest events for a centre to be evaluated.",
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.pass_context
def model_fit(
    ctx,
    data,
    time_column,
    event_column,
    covariates,
    out_dir,
    estimator,
    harmonize_by,
    centre,
    features,
    patient_id,
    horizons,
    interval_bootstrap,
    min_events,
    seed,
):
    """Fit, validate and save a prognostic model.

    Fits the model on the whole cohort and writes MODEL_DIR/model.joblib,
    model_card.json and model_card.md. With --centre, each centre is held out
    in turn (harmonisation and preprocessing fitted on the others) and the
    per-centre results go to validation_centres.csv,
    validation_heterogeneity.csv, calibration_<t>.png and report.html.
    """
    from radscl.models.saved import fit_prognostic_model
    from radscl.report.validation_report import write_validation

    names = _split_names(covariates, "--covariates")
    extra = [c for c in (harmonize_by, centre) if c]
    table, _ = _survival_table(
        data, features, patient_id, time_column, event_column, [*names, *extra], None
    )
    fitted = fit_prognostic_model(
        table,
        time=time_column,
        event=event_column,
        covariates=names,
        estimator=estimator,
        harmonize_by=harmonize_by,
        centre=centre,
        horizons=_split_numbers(horizons, "--horizons"),
        interval_bootstrap=interval_bootstrap,
        min_events=min_events,
        seed=seed,
        source=Path(data).name,
    )
    written = fitted.save(out_dir)
    if fitted.validation is not None:
        written.update(write_validation(fitted, out_dir))
    if not ctx.obj.get("quiet"):
        cohort = fitted.card["training_cohort"]
        click.echo(
            f"{estimator} model: {cohort['n']} patients, {cohort['events']} events "
            f"-> {written['model']}"
        )
        if fitted.validation is not None:
            shown = fitted.validation.table[
                ["centre", "n", "events", "harrell_c", "calibration_slope", "reason"]
            ]
            click.echo(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return EXIT_OK


@cli.command("predict")
@click.option(
    "--model",
    "model_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Model folder written by 'radscl model fit'.",
)
@click.option(
    "--data",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="New patients, CSV or Parquet, one row per patient.",
)
@click.option("--out", "out_file", required=True, help="Predictions CSV to write.")
@click.option(
    "--id-column",
    help="Column of --data to copy into the output next to the row number.",
)
@click.pass_context
def predict(ctx, model_dir, data, out_file, id_column):
    """Score new patients with a saved model.

    Writes one row per input row: row, status (ok, flagged, not_predicted),
    reason, risk_score, risk_group and survival_<t> with its 95 % interval at
    each horizon of the model. Missing inputs and unseen harmonisation batches
    leave a row unscored; inputs outside the training range are flagged.
    Exits 1 when some rows could not be scored.
    """
    import warnings

    from radscl.errors import DataError
    from radscl.models.saved import ModelVersionWarning
    from radscl.models.saved import load_model

    if not Path(model_dir).is_dir():
        raise DataError(f"{model_dir}: model folder not found (given to --model)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ModelVersionWarning)
        fitted = load_model(model_dir)
    for warning in caught:
        logging.getLogger("radscl.cli").warning("%s", _one_line(str(warning.message)))
    table = _read_table(data, "--data")
    result = fitted.predict(table, source=Path(data).name)
    if id_column:
        if id_column not in table.columns:
            raise DataError(f"{Path(data).name}: no column {id_column!r} (--id-column)")
        result.insert(1, id_column, table[id_column].to_numpy())

    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    result.to_csv(out, index=False)
    counts = result["status"].value_counts()
    if not ctx.obj.get("quiet"):
        click.echo(
            f"{len(result)} rows: {int(counts.get('ok', 0))} ok, "
            f"{int(counts.get('flagged', 0))} flagged, "
            f"{int(counts.get('not_predicted', 0))} not predicted -> {out}"
        )
    return EXIT_CASES_FAILED if counts.get("not_predicted", 0) else EXIT_OK


@cli.command("extract")
@click.argument("inputs", nargs=-1, metavar="[INPUT]...")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Extraction folder; re-running into it resumes.",
)
@click.option(
    "--manifest",
    type=click.Path(path_type=Path),
    default=None,
    help="CSV with an image column (pyradiomics' Image is the same) and "
    "optionally case_id; other columns are carried into the output.",
)
@click.option(
    "--params",
    "params_file",
    type=click.Path(path_type=Path),
    default=None,
    help="YAML parameter file; keys not given keep the defaults of "
    "params/extraction.yaml.",
)
@click.option(
    "--jobs",
    "-j",
    type=int,
    default=1,
    show_default=True,
    help="Cases extracted at once, each in its own process.",
)
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    default=None,
    help="Run on a Dask cluster (tcp://host:8786), or local:N for a local "
    "cluster of N workers; needs radscl[dask].",
)
@click.option(
    "--pseudonymize",
    is_flag=True,
    help="Replace case ids by a keyed hash everywhere, folder names included.",
)
@click.option(
    "--pseudonym-key",
    default=None,
    help="Key of the hash (default: $RADSCL_PSEUDONYM_KEY, which keeps it out "
    "of the process list).",
)
@click.option(
    "--quiet", "-q", "command_quiet", is_flag=True, help="No progress bar or summary."
)
@click.pass_context
def extract(
    ctx: click.Context,
    inputs: tuple[str, ...],
    out_dir: Path,
    manifest: Path | None,
    params_file: Path | None,
    jobs: int,
    scheduler: str | None,
    pseudonymize: bool,
    pseudonym_key: str | None,
    command_quiet: bool,
) -> int:
    """Extract the features of every scan into one table.

    INPUT is a scan file (.nii, .nii.gz, .nrrd, .mha) or a DICOM folder; the
    case id is its name, or the manifest's case_id. Writes to OUT:
    features.csv and features.parquet (one row per scan), failures.csv,
    provenance.json and cases/<case_id>/ (features.json, label map, QC
    picture). A scan that fails is recorded and the others go on; the exit
    status is 1 when any failed. Running again with the same OUT keeps the
    finished cases and retries the failed ones.
    """
    from radscl.errors import ParameterError
    from radscl.extract.cases import collect_cases
    from radscl.extract.cases import pseudonym_key as choose_key
    from radscl.extract.cohort import extract_cohort
    from radscl.extract.params import load_parameters
    from radscl.extract.worker import ACQUISITION_COLUMNS
    from radscl.extract.worker import QUALITY_COLUMN

    quiet = command_quiet or ctx.obj.get("quiet", False)
    if scheduler is not None and jobs != 1:
        raise ParameterError("--jobs and --scheduler exclude each other")
    key = choose_key(pseudonym_key, pseudonymize)
    params = load_parameters(params_file)
    cases = collect_cases(
        inputs,
        manifest,
        key=key,
        reserved_columns=(*ACQUISITION_COLUMNS, QUALITY_COLUMN),
    )

    reporter = _ExtractProgress(show_bar=not quiet and sys.stderr.isatty())
    try:
        result = extract_cohort(
            cases,
            out_dir,
            params,
            jobs=jobs,
            scheduler=scheduler,
            pseudonym_key=key,
            reporter=reporter,
        )
    finally:
        reporter.close()

    if not quiet:
        resumed = (
            f", {result.n_resumed} kept from earlier runs" if result.n_resumed else ""
        )
        click.echo(
            f"extracted {result.n_finished} of {result.n_cases} cases{resumed}; "
            f"{result.n_rows} rows in {out_dir / 'features.csv'}"
        )
    if result.failed:
        raise CasesFailed(
            f"{len(result.failed)} of {result.n_cases} cases failed; reasons in "
            f"{out_dir / 'failures.csv'}"
        )
    return EXIT_OK


class _ExtractProgress:
    """A progress bar on stderr for interactive runs of radscl extract."""

    def __init__(self, show_bar: bool) -> None:
        self.show_bar = show_bar
        self.bar = None

    def started(self, pending: int, resumed: int) -> None:
        if resumed:
            logging.getLogger("radscl.cli").info(
                "%d cases finished earlier are kept", resumed
            )
        if self.show_bar and pending:
            self.bar = click.progressbar(
                length=pending,
                label="extracting",
                file=sys.stderr,
                show_pos=True,
                show_eta=True,
                item_show_func=lambda text: text,
            )
            self.bar.__enter__()

    def case_done(self, outcome) -> None:
        if self.bar is not None:
            state = "done" if outcome.finished else "FAILED"
            self.bar.update(1, f"{outcome.case_id} {state}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


@cli.command("demo")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Output folder; a second run into it keeps what is finished.",
)
@click.option(
    "--patients",
    default=40,
    show_default=True,
    type=click.IntRange(12, 2000),
    help="Patients of the synthetic cohort.",
)
@click.option("--jobs", "-j", default=2, show_default=True, type=click.IntRange(1, 256))
@click.option("--seed", default=0, show_default=True, type=int)
@click.pass_context
def demo(ctx: click.Context, out_dir: Path, patients: int, jobs: int, seed: int) -> int:
    """Run radscl end to end on a synthetic multi-centre cohort.

    Draws about PATIENTS patients over three centres with different scanners
    and kernels (a quarter with a repeat scan, some gapped HRCT), renders
    every scan as a chest phantom, extracts airway, vessel and fibrosis
    biomarkers, harmonises them, compares them with lung function for
    mortality and progression, runs the longitudinal analysis and writes
    OUT/report.html.
    """
    from radscl.demo import run_demo

    quiet = ctx.obj.get("quiet", False)
    if not quiet:
        click.echo(
            f"radscl demo: {patients} synthetic patients, {jobs} workers -> {out_dir}",
            err=True,
        )
    reporter = _ExtractProgress(show_bar=not quiet and sys.stderr.isatty())
    try:
        result = run_demo(
            out_dir,
            n_patients=patients,
            jobs=jobs,
            seed=seed,
            reporter=reporter,
            announce=None if quiet else lambda line: click.echo(line, err=True),
        )
    finally:
        reporter.close()
    if not quiet:
        steps = ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
        click.echo(
            f"{result.n_scans} scans of {result.n_patients} patients "
            f"({result.n_failed} failed); {steps}"
        )
        click.echo(f"report: {result.report}")
    return EXIT_OK


@cli.command("report")
@click.option(
    "--features",
    "features_path",
    required=True,
    help="features.csv of radscl extract (needs patient_id and scan_date columns).",
)
@click.option(
    "--clinical",
    "clinical_path",
    required=True,
    help="One row per patient: patient_id, lung function, covariates, outcome.",
)
@click.option(
    "--lung-function",
    "lung_function_path",
    default=None,
    help="Lung-function visits: patient_id, date, fvc_pct [, fvc_ml, dlco_pct].",
)
@click.option(
    "--extraction",
    "extraction_dir",
    default=None,
    type=click.Path(path_type=Path),
    help="The radscl extract folder, for QC pictures, failures and provenance.",
)
@click.option("--time", "time_col", default="time_years", show_default=True)
@click.option("--event", "event_col", default="death", show_default=True)
@click.option(
    "--baseline",
    default="fvc_pct,dlco_pct",
    show_default=True,
    help="Lung-function covariates of the baseline model.",
)
@click.option(
    "--biomarkers",
    default="fibrosis_extent_pct,airway_lung_ratio_pct,vessel_volume_ml",
    show_default=True,
    help="CT biomarkers added to the baseline.",
)
@click.option(
    "--batch",
    default="centre,manufacturer,kernel,contiguous",
    show_default=True,
    help="Scan columns forming the harmonisation batch.",
)
@click.option("--covariates", default="age,sex", show_default=True)
@click.option("--rule", default="ssc", show_default=True, help="Progression rule.")
@click.option("--jobs", "-j", default=1, show_default=True, type=click.IntRange(1, 256))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Folder."
)
def report(
    features_path: str,
    clinical_path: str,
    lung_function_path: str | None,
    extraction_dir: Path | None,
    time_col: str,
    event_col: str,
    baseline: str,
    biomarkers: str,
    batch: str,
    covariates: str,
    rule: str,
    jobs: int,
    seed: int,
    out_dir: Path,
) -> int:
    """Build the cohort report from a study's own outputs.

    Writes OUT/report.html (self-contained: cohort, QC, harmonisation,
    Kaplan-Meier, forest plot, model comparison, time-dependent AUC, change
    over time, FVC trajectories and methods) and the tables behind it.
    """
    from radscl.models.progression import get_rule
    from radscl.report.cohort_report import ReportSettings
    from radscl.report.cohort_report import build_cohort_report

    get_rule(rule)
    if extraction_dir is not None and not extraction_dir.is_dir():
        raise DataError(f"{extraction_dir}: not a folder (given to --extraction)")
    features = _read_table(features_path, "--features")
    clinical = _read_table(clinical_path, "--clinical")
    lung_function = (
        _read_table(lung_function_path, "--lung-function")
        if lung_function_path
        else None
    )
    settings = ReportSettings(
        biomarkers=_split_columns(biomarkers),
        baseline=_split_columns(baseline),
        time=time_col,
        event=event_col,
        batch_columns=_split_columns(batch),
        covariates=_split_columns(covariates),
        progression_rule=rule,
        seed=seed,
        jobs=jobs,
    )
    path = build_cohort_report(
        features,
        clinical,
        out_dir,
        lung_function=lung_function,
        extraction_dir=extraction_dir,
        settings=settings,
    )
    click.echo(f"report: {path}")
@cli.group()
def fibrosis() -> None:
    """Pattern classifier for fibrosis extent."""


@fibrosis.command("train")
@click.option(
    "--manifest",
    required=True,
    type=click.Path(path_type=Path),
    help="CSV with an image column and a labels column (annotation label maps "
    "on the scans' grids); relative paths are from the manifest's folder.",
)
@click.option(
    "--mapping",
    "mapping_file",
    required=True,
    type=click.Path(path_type=Path),
    help="YAML or JSON mapping of annotation label values to normal, "
    "ground_glass, reticulation, honeycombing, emphysema or ignore.",
)
@click.option(
    "--out",
    "out_file",
    required=True,
    type=click.Path(path_type=Path),
    help="Model file to write (.joblib); use it with `fibrosis: {model: FILE}` "
    "in radscl extract --params.",
)
@click.option(
    "--classifier",
    type=click.Choice(["gradient_boosting", "random_forest"]),
    default="gradient_boosting",
    show_default=True,
)
@click.option(
    "--voxels-per-pattern",
    default=20000,
    show_default=True,
    help="Most voxels of each pattern drawn from each scan.",
)
@click.option(
    "--iterations",
    default=150,
    show_default=True,
    help="Boosting iterations, or trees of the random forest.",
)
@click.option("--seed", default=0, show_default=True, help="Random seed.")
@click.pass_context
def fibrosis_train(
    ctx: click.Context,
    manifest: Path,
    mapping_file: Path,
    out_file: Path,
    classifier: str,
    voxels_per_pattern: int,
    iterations: int,
    seed: int,
) -> int:
    """Fit a pattern classifier on annotated scans and save it."""
    from radscl.extractors.fibrosis_training import train_from_manifest

    model, path = train_from_manifest(
        manifest,
        mapping_file,
        out_file,
        classifier=classifier,
        voxels_per_pattern=voxels_per_pattern,
        iterations=iterations,
        seed=seed,
    )
    if not ctx.obj.get("quiet"):
        counts = ", ".join(
            f"{name} {n}" for name, n in model.training["voxels_per_pattern"].items()
        )
        click.echo(f"model written to {path}: {model.description}; voxels: {counts}")
    return EXIT_OK
