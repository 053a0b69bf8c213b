"""The main job end to end on an embedded synthetic multi-centre cohort.

:func:`run_demo` draws a synthetic SSc-ILD cohort (:func:`radscl.phantom.
synthetic_cohort`), renders every scan of it as a small chest phantom with
the scanner profile of its centre (calibration offset, noise, soft or sharp
kernel, gapped HRCT for some), extracts the biomarkers with ``radscl
extract``'s machinery, and writes the cohort report. Everything lands in one
folder laid out as a study's own outputs would be, so each step can be rerun
by hand with the command line::

    DIR/scans/            rendered scans (NIfTI with a JSON sidecar)
    DIR/manifest.csv      case_id, image, patient_id, scan_date, centre
    DIR/clinical.csv      one row per patient: lung function and outcomes
    DIR/lung_function.csv lung-function visits
    DIR/phantom_truth.csv the phantoms' true volumes, per scan
    DIR/extraction/       radscl extract output (features.csv, cases/, ...)
    DIR/report.html       the cohort report

A second run into the same folder keeps the rendered scans and the finished
extractions.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import pandas as pd

from radscl.errors import ParameterError

logger = logging.getLogger(__name__)

#: Patient columns of the synthetic cohort that are its hidden truth.
_TRUTH_PREFIX = "true_"

#: The phantom draws fibrosis up to this extent; the cohort's rare patients
#: beyond it are rendered at it (their truth says what was drawn).
MAX_PHANTOM_FIBROSIS_PCT = 60.0

#: Phantom truth columns compared with the extracted values.
TRUTH_MEASURES = (
    "lung_volume_ml",
    "airway_volume_ml",
    "airway_intrapulmonary_volume_ml",
    "vessel_volume_ml",
    "fibrosis_extent_pct",
)


@dataclasses.dataclass
class DemoResult:
    """Where the demo wrote its outputs and how long each step took.

    Attributes
    ----------
    out_dir : pathlib.Path
    report : pathlib.Path
        ``report.html``.
    n_patients, n_scans, n_failed : int
    seconds : dict of str to float
        Wall time of each step.
    """

    out_dir: Path
    report: Path
    n_patients: int
    n_scans: int
    n_failed: int
    seconds: dict[str, float]


def run_demo(
    out_dir: str | Path,
    *,
    n_patients: int = 40,
    jobs: int = 2,
    seed: int = 0,
    reporter=None,
    announce=None,
) -> DemoResult:
    """Run the demo: cohort, scans, extraction, harmonisation, models, report.

    Parameters
    ----------
    out_dir : str or Path
        Output folder; created if needed, resumed if it holds an earlier run.
    n_patients : int
        Patients of the synthetic cohort (at least 12); about a quarter get a
        repeat scan and about one scan in seven is gapped HRCT.
    jobs : int
        Worker processes for rendering and extraction.
    seed : int
        Seed of the cohort and of the analyses.
    reporter : object, optional
        Progress callbacks of :func:`radscl.extract.cohort.extract_cohort`.
    announce : callable, optional
        Called with a one-line message as each step starts (the command line
        prints it); the steps are logged either way.

    Returns
    -------
    DemoResult

    Raises
    ------
    ParameterError
        If ``n_patients`` or ``jobs`` is out of range.
    """
    from radscl.extract.cases import collect_cases
    from radscl.extract.cohort import extract_cohort
    from radscl.extract.params import load_parameters
    from radscl.extract.worker import ACQUISITION_COLUMNS
    from radscl.extract.worker import QUALITY_COLUMN
    from radscl.phantom import synthetic_cohort
    from radscl.report.cohort_report import ReportSettings
    from radscl.report.cohort_report import build_cohort_report

    if n_patients < 12:
        raise ParameterError(f"--patients must be at least 12, not {n_patients}")
    if jobs < 1:
        raise ParameterError(f"--jobs must be at least 1, not {jobs}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}

    def step(message: str) -> None:
        logger.info("%s", message)
        if announce is not None:
            announce(message)

    started = time.perf_counter()
    cohort = synthetic_cohort(
        n_patients, n_centres=3, repeat_fraction=0.25, gapped_fraction=0.15, seed=seed
    )
    truth_columns = [c for c in cohort.patients if c.startswith(_TRUTH_PREFIX)]
    clinical = cohort.patients.drop(columns=truth_columns)
    clinical.to_csv(out / "clinical.csv", index=False)
    cohort.lung_function.to_csv(out / "lung_function.csv", index=False)
    logger.info(
        "synthetic cohort: %d patients, %d scans, %d lung-function visits",
        len(cohort.patients),
        len(cohort.scans),
        len(cohort.lung_function),
    )

    step(f"rendering {len(cohort.scans)} scans of {len(cohort.patients)} patients")
    truth = render_scans(cohort.scans, out / "scans", jobs=jobs)
    truth.to_csv(out / "phantom_truth.csv", index=False)
    manifest = pd.DataFrame(
        {
            "case_id": cohort.scans["case_id"],
            "image": [f"scans/{c}.nii.gz" for c in cohort.scans["case_id"]],
            "patient_id": cohort.scans["patient_id"],
            "scan_date": pd.to_datetime(cohort.scans["scan_date"]).dt.date.astype(str),
            "centre": cohort.scans["centre"],
        }
    )
    manifest.to_csv(out / "manifest.csv", index=False)
    seconds["render"] = time.perf_counter() - started

    started = time.perf_counter()
    step("extracting lungs, airways, vessels and fibrosis")
    cases = collect_cases(
        manifest=out / "manifest.csv",
        reserved_columns=(*ACQUISITION_COLUMNS, QUALITY_COLUMN),
    )
    result = extract_cohort(
        cases, out / "extraction", load_parameters(), jobs=jobs, reporter=reporter
    )
    seconds["extract"] = time.perf_counter() - started

    started = time.perf_counter()
    step("harmonising, comparing with lung function, longitudinal analysis")
    features = pd.read_csv(out / "extraction" / "features.csv")
    report = build_cohort_report(
        features,
        clinical,
        out,
        lung_function=cohort.lung_function,
        extraction_dir=out / "extraction",
        settings=ReportSettings(seed=seed, jobs=jobs),
        title="radscl demo: synthetic multi-centre SSc-ILD cohort",
        notes=[
            "Every patient, scan and outcome in this report is synthetic: drawn "
            "by radscl.phantom with a known generative model, so that the "
            "measurements can be checked against the phantoms' truth and the "
            "models against the effects that were put in.",
        ],
        truth=truth,
    )
    seconds["report"] = time.perf_counter() - started
    return DemoResult(
        out_dir=out,
        report=report,
        n_patients=len(cohort.patients),
        n_scans=len(cohort.scans),
        n_failed=len(result.failed),
        seconds=seconds,
    )


def render_scans(scans: pd.DataFrame, folder: Path, *, jobs: int = 1) -> pd.DataFrame:
    """Render each scan of a synthetic cohort as a small chest phantom.

    Parameters
    ----------
    scans : pandas.DataFrame
        :attr:`radscl.phantom.SyntheticCohort.scans`.
    folder : Path
        Where ``<case_id>.nii.gz`` and its JSON sidecar are written; scans
        already there are kept.
    jobs : int
        Worker processes.

    Returns
    -------
    pandas.DataFrame
        One row per scan: ``case_id`` and the phantom's true measurements.
    """
    from joblib import Parallel
    from joblib import delayed

    folder.mkdir(parents=True, exist_ok=True)
    records = scans.to_dict("records")
    rows = Parallel(n_jobs=jobs)(delayed(_render_one)(r, folder) for r in records)
    return pd.DataFrame(rows)


def _render_one(scan: dict, folder: Path) -> dict:
    from radscl.io import write_image
    from radscl.phantom import make_phantom

    case_id = scan["case_id"]
    truth_path = folder / f"{case_id}.truth.json"
    if truth_path.is_file() and (folder / f"{case_id}.nii.gz").is_file():
        return json.loads(truth_path.read_text())

    phantom = make_phantom(
        "small",
        seed=int(scan["phantom_seed"]) % 100_000,
        fibrosis_pct=min(float(scan["phantom_fibrosis_pct"]), MAX_PHANTOM_FIBROSIS_PCT),
        airway_dilation=float(scan["phantom_airway_dilation"]),
        vessel_scale=float(scan["phantom_vessel_scale"]),
        kernel=str(scan["phantom_kernel_style"]),
        noise_hu=float(scan["phantom_noise_hu"]),
        hu_offset=float(scan["phantom_hu_offset"]),
        gapped=not bool(scan["contiguous"]),
    )
    scan_image = phantom.to_scan()
    metadata = dataclasses.replace(
        scan_image.metadata,
        manufacturer=str(scan["manufacturer"]),
        model=str(scan["model"]),
        kernel=str(scan["kernel"]),
    )
    image_path = folder / f"{case_id}.nii.gz"
    staging = folder / f".{case_id}.partial.nii.gz"
    write_image(phantom.hounsfield, scan_image, staging, metadata)
    staging.with_name(f".{case_id}.partial.json").replace(folder / f"{case_id}.json")
    staging.replace(image_path)

    row = {"case_id": case_id}
    row.update({m: phantom.truth.get(m) for m in TRUTH_MEASURES})
    truth_path.write_text(json.dumps(row))
    return row
