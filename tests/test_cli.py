"""Tests of the command line, called through ``radscl.cli.main``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from radscl.cli import main
from radscl.io import write_dicom_series


@pytest.fixture
def small_series(tmp_path):
    rng = np.random.default_rng(1)
    hounsfield = np.full((12, 32, 32), -1000, np.int16)
    hounsfield[:, 8:24, 6:26] = 40 + rng.integers(-10, 10, (12, 16, 20))
    write_dicom_series(
        hounsfield,
        (1.0, 0.8, 0.8),
        (0.0, 0.0, 0.0),
        tmp_path / "series",
        slice_thickness_mm=1.0,
        kernel="B70f",
        manufacturer="SIEMENS",
        model="Sensation 64",
        study_year=2011,
        patient_name="ROE^RICHARD",
        patient_id="ID-31415",
    )
    return tmp_path / "series"


def test_info_prints_metadata_and_quality(small_series, capsys):
    code = main(["info", str(small_series)])

    out = capsys.readouterr().out
    assert code == 0
    assert "12 x 32 x 32 (z, y, x)" in out
    assert "1.000 x 0.800 x 0.800 mm" in out
    assert "B70f (sharp)" in out
    assert "SIEMENS Sensation 64" in out
    assert "acquisition year  2011" in out
    assert "contiguous        yes" in out
    assert "no findings" in out
    assert "ROE" not in out and "31415" not in out


def test_info_json(small_series, capsys):
    sorted(small_series.iterdir())[5].unlink()

    code = main(["info", str(small_series), "--json"])

    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["metadata"]["shape"] == [12, 32, 32]
    assert report["metadata"]["spacing_mm"] == pytest.approx([1.0, 0.8, 0.8])
    assert report["metadata"]["kernel"] == "B70f"
    assert report["metadata"]["series_number"] == 1
    assert report["quality"] == [
        {
            "code": "missing_slices",
            "severity": "warning",
            "message": "1 missing slice in 1 hole (widest 1 slice) after "
            "z = 4.0 mm; nominal interval 1.00 mm",
            "fix": "filled by linear interpolation between the neighbouring slices",
        }
    ]


def test_info_series_choice(small_series, capsys):
    code = main(["info", str(small_series), "--series", "1", "--json"])
    report = json.loads(capsys.readouterr().out)

    assert code == 0
    assert report["metadata"]["series_choice"].endswith("chosen explicitly")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["info", "{tmp}/nowhere"], "nowhere: no such file or folder"),
        (["info", "{tmp}"], "folder is empty"),
        (["info", "{series}", "--series", "42"], "no series 42"),
    ],
)
def test_info_bad_input_is_one_line_and_exit_2(
    tmp_path, small_series, capsys, args, message
):
    empty = tmp_path / "empty"
    empty.mkdir()
    args = [a.format(tmp=empty, series=small_series) for a in args]

    code = main(args)

    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert err.startswith("radscl: error: ")
    assert message in err


def test_info_help_is_instant(capsys):
    code = main(["info", "--help"])

    assert code == 0
    assert "--series KEY" in capsys.readouterr().out
