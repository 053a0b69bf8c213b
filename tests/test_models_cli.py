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


def _cox_hr(folder, name, extra=()):
    code = main(
        [
            "-q",
            "model",
            "cox",
            "--data",
            str(folder / "clinical.csv"),
            "--features",
            str(folder / name),
            "--time",
            "time_years",
            "--event",
            "death",
            "--covariates",
            "fibrosis_extent_pct,mld_hu,age",
            "--out",
            str(folder / f"cox_{name}_{len(extra)}"),
            *extra,
        ]
    )
    assert code == 0
    summary = pd.read_csv(folder / f"cox_{name}_{len(extra)}" / "cox_summary.csv")
    return summary.set_index("covariate").loc["fibrosis_extent_pct", "coef"]


def test_model_cox_harmonize_by_removes_a_centre_offset(tmp_path):
    cohort = synthetic_cohort(900, seed=7)
    clinical = cohort.patients.drop(
        columns=[c for c in cohort.patients if c.startswith("true_")]
    )
    clinical.to_csv(tmp_path / "clinical.csv", index=False)
    scans = cohort.scans.copy()
    scans.to_csv(tmp_path / "clean.csv", index=False)
    offset = scans["centre"].map({"centre_A": 12.0, "centre_B": -6.0}).fillna(0.0)
    scans["fibrosis_extent_pct"] = scans["fibrosis_extent_pct"] + offset
    scans.to_csv(tmp_path / "shifted.csv", index=False)

    by_centre = ("--harmonize-by", "centre")
    clean = _cox_hr(tmp_path, "clean.csv")
    shifted = _cox_hr(tmp_path, "shifted.csv")
    clean_harmonised = _cox_hr(tmp_path, "clean.csv", by_centre)
    shifted_harmonised = _cox_hr(tmp_path, "shifted.csv", by_centre)

    # An additive centre offset is a batch location effect: ComBat removes it
    # (up to the empirical Bayes shrinkage, which depends on all features).
    assert shifted < 0.8 * clean
    assert shifted_harmonised == pytest.approx(clean_harmonised, rel=0.05)
    assert clean_harmonised == pytest.approx(clean, rel=0.2)


def test_model_compare_harmonizes_inside_the_folds(cohort_files, tmp_path):
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
            "fibrosis_extent_pct,mld_hu",
            "--model",
            "cox",
            "--folds",
            "3",
            "--repeats",
            "1",
            "--bootstrap",
            "50",
            "--harmonize-by",
            "centre",
            "--no-biomarkers-alone",
            "--out",
            str(tmp_path),
        ]
    )
    table = pd.read_csv(tmp_path / "comparison.csv")

    assert code == 0
    assert len(table) == 2
    assert table["harrell_c"].iloc[1] > 0.6
