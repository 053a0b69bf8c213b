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
