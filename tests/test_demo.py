"""The main job end to end: radscl demo on a small synthetic cohort, and the report."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from radscl.cli import main

SECTIONS = (
    "Cohort",
    "Quality control",
    "Measurement against phantom truth",
    "Harmonisation across centres and scanners",
    "Prognosis: mortality",
    "Prognosis: progression-free survival",
    "Change over time",
    "FVC trajectories",
    "Methods",
)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    code = main(["-q", "demo", "--out", str(out), "--patients", "24", "--jobs", "2"])
    return code, out


def _headings(text: str) -> list[str]:
    return re.findall(r"<h[23]>([^<]+)</h[23]>", text)


def test_demo_writes_a_self_contained_report_with_every_section(demo_run):
    code, out = demo_run
    text = (out / "report.html").read_text()

    assert code == 0
    headings = _headings(text)
    for section in SECTIONS:
        assert any(h.startswith(section) for h in headings), section
    assert "Model comparison" in headings
    assert not re.search(r'(src|href)="(https?:|file:|/)', text)
    assert text.count("data:image/png;base64,") >= 12
    assert "Too few patients" not in text.split("Prognosis: mortality")[1].split(
        "Prognosis: progression"
    )[0]


def test_demo_cohort_and_extraction_are_consistent(demo_run):
    _, out = demo_run
    manifest = pd.read_csv(out / "manifest.csv")
    features = pd.read_csv(out / "extraction" / "features.csv")
    clinical = pd.read_csv(out / "clinical.csv")

    assert clinical["patient_id"].nunique() == 24
    assert sorted(features["case_id"]) == sorted(manifest["case_id"])
    assert set(features["centre"]) == {"centre_A", "centre_B", "centre_C"}
    assert (features["slice_interval_mm"] == 10.0).sum() == (~features["contiguous"]).sum()
    assert not [c for c in clinical.columns if c.startswith("true_")]
    for case_id in features["case_id"]:
        assert (out / "extraction" / "cases" / case_id / "qc.png").is_file()


def test_demo_measurements_match_phantom_truth(demo_run):
    _, out = demo_run
    features = pd.read_csv(out / "extraction" / "features.csv")
    truth = pd.read_csv(out / "phantom_truth.csv")
    merged = features.merge(truth, on="case_id", suffixes=("", "_truth"))

    relative = merged["lung_volume_ml"] / merged["lung_volume_ml_truth"] - 1
    assert np.abs(relative).max() < 0.05
    gapped = ~merged["contiguous"].astype(bool)
    if "airway_volume_ml" in merged:
        assert merged.loc[gapped, "airway_intrapulmonary_volume_ml"].isna().all()


def test_demo_reruns_resume_and_report_rebuilds(demo_run, tmp_path):
    _, out = demo_run
    report_dir = tmp_path / "report"
    code = main(
        [
            "-q",
            "report",
            "--features",
            str(out / "extraction" / "features.csv"),
            "--clinical",
            str(out / "clinical.csv"),
            "--lung-function",
            str(out / "lung_function.csv"),
            "--extraction",
            str(out / "extraction"),
            "--out",
            str(report_dir),
        ]
    )

    assert code == 0
    headings = _headings((report_dir / "report.html").read_text())
    for section in SECTIONS:
        if section != "Measurement against phantom truth":
            assert any(h.startswith(section) for h in headings), section


def test_report_names_a_missing_table(tmp_path, capsys):
    code = main(
        [
            "report",
            "--features",
            str(tmp_path / "nowhere.csv"),
            "--clinical",
            str(tmp_path / "clinical.csv"),
            "--out",
            str(tmp_path / "r"),
        ]
    )

    assert code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "nowhere.csv: file not found" in error[0]


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.skipif(_browser() is None, reason="headless Chromium is not installed")
def test_report_renders_in_headless_chromium_without_console_errors(demo_run, tmp_path):
    _, out = demo_run
    screenshot = tmp_path / "report.png"
    result = subprocess.run(
        [
            _browser(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            f"--screenshot={screenshot}",
            "--window-size=1280,4000",
            (out / "report.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )

    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line]
    assert result.returncode == 0, result.stderr[-2000:]
    assert not console, console
    assert screenshot.read_bytes().startswith(b"\x89PNG")
    assert screenshot.stat().st_size > 50_000
