import numpy as np
import pandas as pd
import pytest

from radscl.cli import main
from radscl.phantom import synthetic_cohort

# R's coxph on the Rossi data, Efron ties (see test_models_estimators.py)
ROSSI_COVARIATES = ["fin", "age", "race", "wexp", "mar", "paro", "prio"]
ROSSI_COEF = [
    -0.3794222,
    -0.0574377,
    0.3138998,
    -0.1497957,
    -0.4337039,
    -0.0848711,
    0.0914971,
]


@pytest.fixture(scope="module")
def rossi_csv(tmp_path_factory):
    from lifelines.datasets import load_rossi

    path = tmp_path_factory.mktemp("rossi") / "rossi.csv"
    load_rossi().to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def cohort_files(tmp_path_factory):
    cohort = synthetic_cohort(300, seed=31)
    folder = tmp_path_factory.mktemp("cohort")
    clinical = cohort.patients.drop(
        columns=[c for c in cohort.patients if c.startswith("true_")]
    )
    clinical.to_csv(folder / "clinical.csv", index=False)
    cohort.scans.to_csv(folder / "features.csv", index=False)
    return folder


def test_model_cox_writes_the_summary(rossi_csv, tmp_path, capsys):
    code = main(
        [
            "model",
            "cox",
            "--data",
            str(rossi_csv),
            "--time",
            "week",
            "--event",
            "arrest",
            "--covariates",
            ",".join(ROSSI_COVARIATES),
            "--out",
            str(tmp_path),
        ]
    )
    summary = pd.read_csv(tmp_path / "cox_summary.csv")

    assert code == 0
    assert list(summary.columns) == [
        "covariate",
        "coef",
        "hr",
        "hr_lower95",
        "hr_upper95",
        "se",
        "z",
        "p",
    ]
    np.testing.assert_allclose(summary["coef"], ROSSI_COEF, atol=1e-4)
    assert (tmp_path / "forest.png").stat().st_size > 1000
    assert "LR chi2 = 33.27" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param(
            ["--covariates", "fin,unknown_column"],
            "'unknown_column'",
            id="missing-covariate",
        ),
        pytest.param(
            ["--covariates", "fin", "--time", "weeks"], "'weeks'", id="missing-time"
        ),
    ],
)
def test_model_cox_bad_columns_exit_2_with_one_line(
    rossi_csv, tmp_path, capsys, arguments, message
):
    base = ["--time", "week", "--event", "arrest", "--out", str(tmp_path)]
    code = main(["model", "cox", "--data", str(rossi_csv), *base, *arguments])
    error = capsys.readouterr().err

    assert code == 2
    assert message in error
    assert "rossi.csv" in error
    assert error.count("\n") == 1


def test_model_compare_writes_table_figures_and_report(cohort_files, tmp_path):
    out = tmp_path / "compare"
    code = main(
        [
            "-q",
            "model",
            "compare",
            "--data",
            str(cohort_files / "clinical.csv"),
            "--features",
            str(cohort_files / "features.csv"),
            "--time",
            "time_years",
            "--event",
            "death",
            "--baseline",
            "fvc_pct,dlco_pct",
            "--biomarkers",
            "fibrosis_extent_pct,vessel_volume_ml",
            "--model",
            "cox",
            "--model",
            "coxnet",
            "--folds",
            "3",
            "--repeats",
            "1",
            "--bootstrap",
            "20",
            "--out",
            str(out),
        ]
    )
    table = pd.read_csv(out / "comparison.csv")
    report = (out / "report.html").read_text()

    assert code == 0
    assert len(table) == 6
    for column in (
        "harrell_c",
        "harrell_c_lower95",
        "harrell_c_upper95",
        "uno_c_lower95",
        "td_auc_1",
        "td_auc_5_upper95",
        "ibs",
        "ibs_upper95",
        "delta_c",
        "delta_c_lower95",
        "delta_c_upper95",
        "lr_p",
    ):
        assert column in table.columns
    assert table["lr_p"].notna().sum() == 1
    assert report.count("data:image/png;base64,") >= 5
    assert 'src="http' not in report
    assert "P001" not in report
    for name in (
        "forest.png",
        "td_auc.png",
        "calibration.png",
        "km_fibrosis_extent_pct.png",
    ):
        assert (out / name).exists()


def test_model_compare_with_competing_risk_and_gap(cohort_files, tmp_path):
    out = tmp_path / "ph"
    code = main(
        [
            "-q",
            "model",
            "compare",
            "--data",
            str(cohort_files / "clinical.csv"),
            "--features",
            str(cohort_files / "features.csv"),
            "--time",
            "ph_time_years",
            "--event",
            "ph_status",
            "--cause",
            "1",
            "--baseline",
            "gap_index",
            "--biomarkers",
            "vessel_volume_ml",
            "--model",
            "cox",
            "--folds",
            "3",
            "--repeats",
            "1",
            "--bootstrap",
            "20",
            "--no-biomarkers-alone",
            "--out",
            str(out),
        ]
    )

    assert code == 0
    assert (out / "cif_vessel_volume_ml.png").exists()
    assert len(pd.read_csv(out / "comparison.csv")) == 2


def test_model_compare_needs_a_valid_event_column(cohort_files, tmp_path, capsys):
    code = main(
        [
            "model",
            "compare",
            "--data",
            str(cohort_files / "clinical.csv"),
            "--time",
            "ph_time_years",
            "--event",
            "ph_status",
            "--baseline",
            "fvc_pct",
            "--biomarkers",
            "dlco_pct",
            "--out",
            str(tmp_path),
        ]
    )

    assert code == 2
    assert "must hold 0/1" in capsys.readouterr().err
