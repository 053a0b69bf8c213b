"""Tests of cohort extraction (radscl extract) on small phantom scans."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radscl.cli import main
from radscl.errors import DataError
from radscl.errors import ParameterError
from radscl.extract import storage
from radscl.extract.cases import case_id_from_path
from radscl.extract.cases import collect_cases
from radscl.extract.cases import folder_name
from radscl.extract.cases import pseudonym
from radscl.extract.params import Setting
from radscl.extract.params import load_parameters
from radscl.extract.stages import stage_names
from radscl.io import write_dicom_series
from radscl.phantom.output import PHANTOM_PATIENT_ID
from radscl.phantom.output import PHANTOM_PATIENT_NAME
from radscl.phantom.output import write_phantom

REPO = Path(__file__).resolve().parents[1]

#: Stages the tests of the machinery switch off to stay quick (the lungs stage
#: stays on: it gives the label map and a volume to check).
SLOW_STAGES = [s for s in stage_names() if s != "lungs"]

GOOD = ["c01", "c02", "c03", "c04", "c05", "c06", "c07", "c08", "c09"]
BAD = {
    "c10": "cannot be read",  # a file of zeros named .nii.gz
    "c11": "modality MR",  # an MR series
    "c12": "folder is empty",
}


def _link_tree(source: Path, target: Path) -> None:
    """Hard-link a file or folder, so that copies of a scan cost nothing."""
    if source.is_dir():
        target.mkdir()
        for child in sorted(source.iterdir()):
            _link_tree(child, target / child.name)
    else:
        os.link(source, target)


@pytest.fixture(scope="session")
def phantoms(phantom_factory, tmp_path_factory):
    """Three distinct small phantoms written as DICOM and NIfTI."""
    root = tmp_path_factory.mktemp("phantoms")
    drawn = {
        "p0": phantom_factory("small", seed=0),
        "p1": phantom_factory("small", seed=1),
        "p2": phantom_factory("small", seed=2, fibrosis_pct=20),
    }
    for name, phantom in drawn.items():
        write_phantom(phantom, root / name)
    return root, drawn


@pytest.fixture(scope="session")
def cohort(phantoms, tmp_path_factory):
    """Twelve inputs: nine good scans (DICOM folders and NIfTI files) and
    three bad ones, named c01..c12 so that the case ids are their names."""
    root, drawn = phantoms
    scans = tmp_path_factory.mktemp("cohort")
    layout = {
        "c01": ("p0", "dicom"),
        "c02": ("p0", "nifti"),
        "c03": ("p1", "dicom"),
        "c04": ("p1", "nifti"),
        "c05": ("p2", "nifti"),
        "c06": ("p2", "dicom"),
        "c07": ("p0", "nifti"),
        "c08": ("p1", "dicom"),
        "c09": ("p2", "nifti"),
    }
    inputs = []
    truth = {}
    for case_id, (phantom, kind) in layout.items():
        if kind == "dicom":
            _link_tree(root / phantom / "dicom", scans / case_id)
            inputs.append(scans / case_id)
        else:
            _link_tree(root / phantom / "ct.nii.gz", scans / f"{case_id}.nii.gz")
            _link_tree(root / phantom / "ct.json", scans / f"{case_id}.json")
            inputs.append(scans / f"{case_id}.nii.gz")
        truth[case_id] = drawn[phantom].truth

    (scans / "c10.nii.gz").write_bytes(bytes(64_000))
    inputs.append(scans / "c10.nii.gz")
    hounsfield = np.full((16, 32, 32), -1000, np.int16)
    hounsfield[:, 8:24, 8:24] = 40
    write_dicom_series(
        hounsfield,
        (2.5, 2.0, 2.0),
        (0.0, 0.0, 0.0),
        scans / "c11",
        modality="MR",
        patient_name=PHANTOM_PATIENT_NAME,
        patient_id=PHANTOM_PATIENT_ID,
    )
    inputs.append(scans / "c11")
    (scans / "c12").mkdir()
    inputs.append(scans / "c12")
    return [str(p) for p in inputs], truth


@pytest.fixture(scope="session")
def mechanics_params(tmp_path_factory):
    """Parameters for the tests of the machinery: the stages that give the
    label map, without the slow ones."""
    path = tmp_path_factory.mktemp("params") / "mechanics.yaml"
    path.write_text(
        "outputs:\n  label_map: true\n"
        + "".join(f"{stage}:\n  enabled: false\n" for stage in SLOW_STAGES)
    )
    return str(path)


@pytest.fixture(scope="session")
def serial_run(cohort, mechanics_params, tmp_path_factory):
    """The cohort extracted in this process (--jobs 1)."""
    inputs, _ = cohort
    out = tmp_path_factory.mktemp("serial") / "out"
    code = main(["extract", *inputs, "--out", str(out), "--params", mechanics_params])
    return code, out


def _features(out: Path) -> pd.DataFrame:
    return (
        pd.read_csv(out / "features.csv").sort_values("case_id").reset_index(drop=True)
    )


# The cohort ---------------------------------------------------------------


def test_cohort_gives_rows_for_good_scans_and_reasons_for_bad_ones(serial_run, cohort):
    code, out = serial_run
    _, truth = cohort

    features = pd.read_csv(out / "features.csv")
    failures = pd.read_csv(out / "failures.csv")
    assert code == 1
    assert list(features["case_id"]) == GOOD
    assert list(failures.columns) == ["case_id", "input", "error_type", "message"]
    assert sorted(failures["case_id"]) == sorted(BAD)
    for _, failure in failures.iterrows():
        assert failure["error_type"] == "ScanError"
        assert BAD[failure["case_id"]] in failure["message"]
        assert failure["input"].endswith(
            failure["case_id"] + (".nii.gz" if failure["case_id"] == "c10" else "")
        )
    assert (features["slice_interval_mm"] == 2.5).all()
    assert (features["slice_thickness_mm"] == 2.5).all()
    assert features["contiguous"].all()
    assert (features["kernel"] == "SYNTH-SOFT").all()
    assert (features["acquisition_year"].dropna() == 2015).all()
    for _, row in features.iterrows():
        expected = truth[row["case_id"]]["lung_volume_ml"]
        assert row["lung_volume_ml"] == pytest.approx(expected, rel=0.03)


def test_parquet_and_csv_hold_the_same_rows(serial_run):
    _, out = serial_run

    from_csv = pd.read_csv(out / "features.csv")
    from_parquet = pd.read_parquet(out / "features.parquet")

    assert list(from_parquet.columns) == list(from_csv.columns)
    assert list(from_parquet["case_id"]) == list(from_csv["case_id"])
    numeric = from_parquet.select_dtypes("number").columns
    assert "slice_interval_mm" in numeric
    np.testing.assert_allclose(
        from_parquet[numeric].to_numpy(float), from_csv[numeric].to_numpy(float)
    )


def test_case_folders_and_provenance(serial_run, mechanics_params):
    _, out = serial_run
    params = load_parameters(mechanics_params)

    provenance = json.loads((out / "provenance.json").read_text())
    for case_id in GOOD:
        document = json.loads((out / "cases" / case_id / "features.json").read_text())
        assert document["row"]["case_id"] == case_id
        assert document["params_hash"] == params.digest
        assert document["duration_s"] > 0
        assert document["peak_memory_mb"] > 50
        assert not list((out / "cases" / case_id).glob(f"*{storage.TEMPORARY_MARK}*"))
        png = (out / "cases" / case_id / storage.QC_FILE).read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000
        assert (out / "cases" / case_id / storage.LABELS_FILE).stat().st_size > 1000
    assert provenance["parameters_hash"] == params.digest
    assert provenance["parameters"] == params.values
    assert provenance["libraries"]["SimpleITK"]
    assert provenance["runs"][-1]["status"] == "finished"
    assert provenance["started"] <= provenance["ended"]
    assert set(provenance["cases"]) == set(GOOD) | set(BAD)
    assert provenance["cases"]["c11"]["status"] == "failed"


def test_no_patient_identifier_reaches_any_output(serial_run, capfd):
    _, out = serial_run
    secrets = [
        PHANTOM_PATIENT_ID.encode(),
        PHANTOM_PATIENT_NAME.encode(),
        PHANTOM_PATIENT_NAME.replace("^", " ").encode(),
        b"SYNTHETIC^RADSCL",
    ]

    files = [p for p in out.rglob("*") if p.is_file()]
    contents = []
    for path in files:
        data = path.read_bytes()
        contents.append((path, data))
        if path.name.endswith(".gz"):
            contents.append((path, gzip.decompress(data)))

    assert len(files) >= 12
    for path, data in contents:
        for secret in secrets:
            assert secret not in data, f"{secret!r} found in {path}"


def test_no_patient_identifier_reaches_the_logs(
    cohort, mechanics_params, tmp_path, capfd
):
    inputs, _ = cohort
    chosen = [inputs[0], inputs[10]]  # a phantom DICOM series and the MR series

    code = main(
        [
            "-vv",
            "extract",
            *chosen,
            "--out",
            str(tmp_path / "out"),
            "--params",
            mechanics_params,
        ]
    )

    captured = capfd.readouterr()
    logs = captured.out + captured.err
    assert code == 1
    assert "c11 failed" in logs
    assert PHANTOM_PATIENT_ID not in logs
    assert "SYNTHETIC" not in logs


# Resume -------------------------------------------------------------------


def test_killed_run_resumes_with_every_case_once(cohort, mechanics_params, tmp_path):
    inputs, _ = cohort
    out = tmp_path / "out"
    command = [sys.executable, "-m", "radscl", "extract", *inputs, "--out", str(out)]
    command += ["--params", mechanics_params, "--quiet"]

    process = subprocess.Popen(command, cwd=REPO, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    finished: list[Path] = []
    while time.monotonic() < deadline and process.poll() is None:
        finished = list(out.glob("cases/*/features.json"))
        if len(finished) >= 2:
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = {
        p.parent.name: p.stat().st_mtime_ns for p in out.glob("cases/*/features.json")
    }
    assert process.returncode == -signal.SIGKILL
    assert 2 <= len(before) < len(GOOD), "the run was not killed mid-way"

    code = main(
        ["extract", *inputs, "--out", str(out), "--params", mechanics_params, "-q"]
    )

    features = pd.read_csv(out / "features.csv")
    failures = pd.read_csv(out / "failures.csv")
    after = {
        p.parent.name: p.stat().st_mtime_ns for p in out.glob("cases/*/features.json")
    }
    provenance = json.loads((out / "provenance.json").read_text())
    assert code == 1
    assert sorted(features["case_id"]) == GOOD
    assert sorted(failures["case_id"]) == sorted(BAD)
    assert len(features) + len(failures) == 12
    assert all(after[case] == mtime for case, mtime in before.items())
    assert [run["status"] for run in provenance["runs"]] == ["interrupted", "finished"]
    assert provenance["runs"][-1]["resumed"] == len(before)
    assert not list(out.rglob(f"*{storage.TEMPORARY_MARK}*"))


def test_partial_files_are_never_taken_as_finished(cohort, mechanics_params, tmp_path):
    inputs, _ = cohort
    out = tmp_path / "out"
    case_dir = out / "cases" / "c01"
    case_dir.mkdir(parents=True)
    (case_dir / f"features{storage.TEMPORARY_MARK}123-abc.json").write_text(
        '{"row": {"ca'
    )
    (case_dir / f"labels{storage.TEMPORARY_MARK}123-abc.nii.gz").write_bytes(
        b"\x1f\x8b"
    )

    code = main(["extract", inputs[0], "--out", str(out), "--params", mechanics_params])

    features = pd.read_csv(out / "features.csv")
    assert code == 0
    assert list(features["case_id"]) == ["c01"]
    assert sorted(p.name for p in case_dir.iterdir()) == [
        "features.json",
        "labels.nii.gz",
        "qc.png",
    ]


def test_failures_are_retried_and_finished_cases_kept(
    cohort, mechanics_params, tmp_path
):
    inputs, _ = cohort
    out = tmp_path / "out"
    empty = Path(inputs[11])
    good = inputs[1]
    assert (
        main(
            [
                "extract",
                good,
                str(empty),
                "--out",
                str(out),
                "--params",
                mechanics_params,
            ]
        )
        == 1
    )
    kept = (out / "cases" / "c02" / "features.json").stat().st_mtime_ns

    fixed = tmp_path / "c12.nii.gz"
    os.link(good, fixed)
    code = main(
        ["extract", good, str(fixed), "--out", str(out), "--params", mechanics_params]
    )

    assert code == 0
    assert list(pd.read_csv(out / "features.csv")["case_id"]) == ["c02", "c12"]
    assert pd.read_csv(out / "failures.csv").empty
    assert not (out / "cases" / "c12" / "failure.json").exists()
    assert (out / "cases" / "c02" / "features.json").stat().st_mtime_ns == kept


def test_other_parameters_cannot_resume_a_folder(serial_run, cohort, tmp_path, capsys):
    inputs, _ = cohort
    _, out = serial_run
    changed = tmp_path / "changed.yaml"
    changed.write_text("outputs:\n  label_map: false\n")

    code = main(["extract", *inputs, "--out", str(out), "--params", str(changed)])

    error = capsys.readouterr().err
    assert code == 2
    assert "outputs.label_map: True -> False" in error


# Parallel -----------------------------------------------------------------


@pytest.mark.parametrize(
    "how", [["--jobs", "2"], ["--scheduler", "local:2"]], ids=["jobs2", "dask-local2"]
)
def test_parallel_runs_give_the_same_features(
    serial_run, cohort, mechanics_params, tmp_path, how
):
    inputs, _ = cohort
    _, serial_out = serial_run
    out = tmp_path / "out"

    code = main(
        [
            "extract",
            *inputs,
            "--out",
            str(out),
            "--params",
            mechanics_params,
            "-q",
            *how,
        ]
    )

    assert code == 1
    pd.testing.assert_frame_equal(_features(out), _features(serial_out))
    assert sorted(pd.read_csv(out / "failures.csv")["case_id"]) == sorted(BAD)


def test_missing_dask_is_one_clear_line(cohort, tmp_path, monkeypatch, capsys):
    inputs, _ = cohort
    monkeypatch.setitem(sys.modules, "distributed", None)

    code = main(
        ["extract", inputs[1], "--out", str(tmp_path / "out"), "--scheduler", "local:1"]
    )

    error = capsys.readouterr().err
    assert code == 2
    assert "radscl[dask]" in error and len(error.strip().splitlines()) == 1


# Manifests, ids and parameters --------------------------------------------


def test_manifest_columns_are_carried_and_image_header_accepted(
    cohort, mechanics_params, tmp_path
):
    inputs, _ = cohort
    manifest = tmp_path / "batch.csv"
    pd.DataFrame(
        {
            "ID": ["s1", "s2"],
            "Image": [inputs[1], os.path.relpath(inputs[0], tmp_path)],
            "Mask": ["m1.nii.gz", "m2.nii.gz"],
            "case_id": ["A-001", "A 002"],
            "age": [61, 54],
            "centre": ["Leiden", "Zurich"],
        }
    ).to_csv(manifest, index=False)
    out = tmp_path / "out"

    code = main(
        [
            "extract",
            "--manifest",
            str(manifest),
            "--out",
            str(out),
            "--params",
            mechanics_params,
        ]
    )

    features = pd.read_csv(out / "features.csv")
    assert code == 0
    assert list(features["case_id"]) == ["A-001", "A 002"]
    assert list(features["age"]) == [61, 54]
    assert list(features["centre"]) == ["Leiden", "Zurich"]
    assert list(features["ID"]) == ["s1", "s2"]
    assert list(features.columns[:5]) == ["case_id", "ID", "Mask", "age", "centre"]
    assert (out / "cases" / "A_002" / "features.json").exists()


def test_pseudonymised_ids_everywhere(cohort, mechanics_params, tmp_path, monkeypatch):
    inputs, _ = cohort
    key = "a-secret-key-for-tests"
    monkeypatch.setenv("RADSCL_PSEUDONYM_KEY", key)
    chosen = [inputs[0], inputs[1], inputs[11]]
    out = tmp_path / "out"

    code = main(
        [
            "extract",
            *chosen,
            "--out",
            str(out),
            "--params",
            mechanics_params,
            "--pseudonymize",
        ]
    )

    expected = [pseudonym(c, key) for c in ("c01", "c02")]
    features = pd.read_csv(out / "features.csv", dtype={"case_id": str})
    failures = pd.read_csv(out / "failures.csv", dtype={"case_id": str})
    assert code == 1
    assert list(features["case_id"]) == expected
    assert list(failures["case_id"]) == [pseudonym("c12", key)]
    assert failures["input"].tolist() == ["argument 3"]
    assert sorted(p.name for p in (out / "cases").iterdir()) == sorted(
        [*expected, pseudonym("c12", key)]
    )
    for path in out.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for original in (
                b"c01",
                b"c02",
                b"c12",
                str(Path(inputs[0]).parent).encode(),
                key.encode(),
            ):
                assert original not in data, f"{original!r} in {path}"


def test_pseudonymize_needs_a_key(cohort, tmp_path, monkeypatch, capsys):
    inputs, _ = cohort
    monkeypatch.delenv("RADSCL_PSEUDONYM_KEY", raising=False)

    code = main(
        ["extract", inputs[1], "--out", str(tmp_path / "out"), "--pseudonymize"]
    )

    assert code == 2
    assert "RADSCL_PSEUDONYM_KEY" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("outputs:\n  labelmap: true\n", "outputs.labelmap"),
        ("outputs:\n  label_map: 3\n", "outputs.label_map"),
        ("vesels:\n  enabled: true\n", "vesels"),
        ("outputs: [1, 2]\n", "outputs"),
        ("outputs:\n\tlabel_map: true\n", "line 2"),
    ],
    ids=["unknown-key", "ill-typed", "unknown-section", "not-a-mapping", "bad-yaml"],
)
def test_bad_parameters_stop_before_any_scan(cohort, tmp_path, capsys, text, named):
    inputs, _ = cohort
    params = tmp_path / "params.yaml"
    params.write_text(text)

    code = main(
        ["extract", *inputs, "--out", str(tmp_path / "out"), "--params", str(params)]
    )

    error = capsys.readouterr().err.strip()
    assert code == 2
    assert named in error and str(params) in error
    assert len(error.splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({"path": ["a.nii.gz"]}, "no 'image' column"),
        ({"image": ["a.nii.gz", "b/a.nii.gz"]}, "duplicate case ids: 'a'"),
        (
            {"image": ["a.nii.gz", "b.nii.gz"], "case_id": ["x", "X"]},
            "duplicate case ids",
        ),
        ({"image": ["a.nii.gz", ""], "case_id": ["x", "y"]}, "line 3"),
        ({"image": ["a.nii.gz"], "lung_volume_ml": [1.0]}, None),
        ({"image": ["a.nii.gz"], "kernel": ["B30f"]}, "column 'kernel' would clash"),
        ({"Image": ["a.nii.gz"], "image": ["b.nii.gz"]}, "keep one"),
    ],
    ids=[
        "no-image",
        "duplicate-names",
        "duplicate-folders",
        "empty-cell",
        "feature-name",
        "clash",
        "two-image",
    ],
)
def test_manifest_problems_are_input_errors(tmp_path, table, problem):
    manifest = tmp_path / "m.csv"
    pd.DataFrame(table).to_csv(manifest, index=False)

    if problem is None:
        cases = collect_cases(manifest=manifest, reserved_columns=("kernel",))
        assert cases[0].extra == {"lung_volume_ml": 1.0}
        return
    with pytest.raises(DataError, match=problem):
        collect_cases(manifest=manifest, reserved_columns=("kernel",))


def test_duplicate_inputs_are_named_before_anything_runs(cohort, tmp_path, capsys):
    inputs, _ = cohort
    other = tmp_path / "elsewhere"
    other.mkdir()
    os.link(inputs[1], other / "c02.nii.gz")

    code = main(
        [
            "extract",
            inputs[1],
            str(other / "c02.nii.gz"),
            "--out",
            str(tmp_path / "out"),
        ]
    )

    error = capsys.readouterr().err
    assert code == 2
    assert "duplicate case ids: 'c02' (argument 1) and 'c02' (argument 2)" in error


def test_case_ids_from_names_and_folders():
    assert case_id_from_path("/data/P017/") == "P017"
    assert case_id_from_path("scan01.nii.gz") == "scan01"
    assert case_id_from_path("scan01.NII") == "scan01"
    assert case_id_from_path("a.b.mha") == "a.b"
    assert folder_name("A 002/x") == "A_002_x"
    assert folder_name("..hidden") == "hidden"
    with pytest.raises(DataError, match="no usable folder name"):
        folder_name("///")


def test_pseudonym_is_a_keyed_hash():
    import hashlib
    import hmac

    expected = hmac.new(b"k" * 8, b"P017", hashlib.sha256).hexdigest()[:16]
    assert pseudonym("P017", "k" * 8) == expected
    assert pseudonym("P017", "k" * 8) != pseudonym("P017", "j" * 8)


def test_setting_checks():
    number = Setting("float", "a number", minimum=0.0)
    assert number.check(2, "s.k", "f.yaml") == 2.0
    with pytest.raises(ParameterError, match="f.yaml: s.k must be at least 0"):
        number.check(-1, "s.k", "f.yaml")
    with pytest.raises(ParameterError, match="s.k must be a number, not True"):
        number.check(True, "s.k", "f.yaml")
    with pytest.raises(ParameterError, match="must be one of a, b"):
        Setting("str", "", choices=("a", "b")).check("c", "s.k", "f.yaml")
    with pytest.raises(ParameterError, match="whole number"):
        Setting("int", "").check(1.5, "s.k", "f.yaml")


def test_parameter_hash_follows_the_values(tmp_path):
    same = tmp_path / "same.yaml"
    same.write_text("outputs:\n  label_map: true\n")
    other = tmp_path / "other.yaml"
    other.write_text("outputs:\n  label_map: false\n")

    assert load_parameters(same).digest == load_parameters().digest
    assert load_parameters(other).digest != load_parameters().digest


def _run_case_or_die(task):
    """run_case, except that the worker process dies on case c03."""
    if task.case.case_id == "c03":
        os._exit(3)
    from radscl.extract.worker import run_case

    return run_case(task)


def test_a_case_that_kills_its_worker_is_recorded_and_the_rest_go_on(
    cohort, mechanics_params, tmp_path, monkeypatch
):
    import radscl.extract.cohort as cohort_module

    inputs, _ = cohort
    monkeypatch.setattr(cohort_module, "run_case", _run_case_or_die)
    cases = collect_cases(inputs[1:4])
    params = load_parameters(mechanics_params)

    result = cohort_module.extract_cohort(cases, tmp_path / "out", params, jobs=2)

    failures = pd.read_csv(tmp_path / "out" / "failures.csv")
    assert [o.case_id for o in result.failed] == ["c03"]
    assert result.n_finished == 2
    assert failures["error_type"].tolist() == ["WorkerDied"]
    assert "alone" in failures["message"].iloc[0]
    assert sorted(pd.read_csv(tmp_path / "out" / "features.csv")["case_id"]) == [
        "c02",
        "c04",
    ]
