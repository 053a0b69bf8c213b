"""Saved prognostic models: round trip, version check, per-row status, CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import joblib
import numpy as np
import pandas as pd
import pytest

from radscl.cli import main
from radscl.errors import DataError
from radscl.models.saved import ModelVersionWarning
from radscl.models.saved import fit_prognostic_model
from radscl.models.saved import load_model
from radscl.phantom.cohort import synthetic_cohort

COVARIATES = ["fibrosis_extent_pct", "mld_hu", "age"]


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    return synthetic_cohort(300, n_centres=3, seed=4).baseline_table()


@pytest.fixture(scope="module")
def saved(cohort, tmp_path_factory):
    model = fit_prognostic_model(
        cohort,
        time="time_years",
        event="death",
        covariates=COVARIATES,
        harmonize_by="centre",
        centre="centre",
        interval_bootstrap=8,
        validation_bootstrap=20,
    )
    folder = tmp_path_factory.mktemp("model")
    model.save(folder)
    return model, folder


def test_round_trip_in_a_fresh_process_gives_identical_predictions(
    saved, cohort, tmp_path
):
    model, folder = saved
    new = cohort.head(25)
    new.to_csv(tmp_path / "new.csv", index=False)
    expected = model.predict(new)

    script = (
        "import sys, pandas as pd; from radscl.models.saved import load_model; "
        "m = load_model(sys.argv[1]); "
        "m.predict(pd.read_csv(sys.argv[2])).to_csv(sys.argv[3], index=False)"
    )
    subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            str(folder),
            str(tmp_path / "new.csv"),
            str(tmp_path / "out.csv"),
        ],
        check=True,
        cwd=str(tmp_path.parent),
        env={"PYTHONPATH": str(__import__("pathlib").Path(__file__).parents[1])},
    )
    reloaded = pd.read_csv(tmp_path / "out.csv", keep_default_na=False, na_values=[""])

    assert (expected["status"] == "ok").all()
    for column in ("risk_score", "survival_1", "survival_3", "survival_5_lower95"):
        np.testing.assert_allclose(reloaded[column], expected[column], rtol=1e-12)
    assert list(reloaded["risk_group"]) == list(expected["risk_group"])


def test_predictions_are_ordered_and_in_range(saved, cohort):
    model, _ = saved
    result = model.predict(cohort)
    high = result["risk_group"] == "high"
    low = result["risk_group"] == "low"

    assert (
        result[[f"survival_{h}" for h in (1, 3, 5)]]
        .diff(axis=1)
        .iloc[:, 1:]
        .le(0)
        .all()
        .all()
    )
    # Percentile intervals of 8 refits need not contain every point estimate.
    inside = (result["survival_3_lower95"] <= result["survival_3"]) & (
        result["survival_3"] <= result["survival_3_upper95"]
    )
    assert inside.mean() > 0.8
    assert (result["survival_3_upper95"] - result["survival_3_lower95"] > 0).all()
    # Risk groups are the training tertiles and separate observed deaths.
    assert abs(high.mean() - 1 / 3) < 0.02
    assert cohort["death"][high].mean() > 2 * cohort["death"][low].mean()


def test_problem_rows_get_a_reason_and_the_rest_are_scored(saved, cohort):
    model, _ = saved
    new = cohort.head(5).copy()
    new.loc[0, "mld_hu"] = np.nan
    new.loc[1, "centre"] = "centre_Z"
    new.loc[2, "fibrosis_extent_pct"] = 400.0
    result = model.predict(new)

    assert list(result["status"]) == [
        "not_predicted",
        "not_predicted",
        "flagged",
        "ok",
        "ok",
    ]
    assert result.loc[0, "reason"] == "mld_hu is missing"
    assert "batch (centre) not seen in training" in result.loc[1, "reason"]
    assert "fibrosis_extent_pct 400 above the training range" in result.loc[2, "reason"]
    assert result.loc[:1, "risk_score"].isna().all()
    assert result.loc[2:, "risk_score"].notna().all()
    with pytest.raises(DataError, match="missing column.*'age'"):
        model.predict(new.drop(columns=["age"]))


def test_model_card_describes_the_model(saved, cohort):
    model, folder = saved
    card = json.loads((folder / "model_card.json").read_text())

    assert card["training_cohort"]["n"] == len(cohort)
    assert card["training_cohort"]["events"] == int(cohort["death"].sum())
    assert set(card["training_cohort"]["centres"]) == {
        "centre_A",
        "centre_B",
        "centre_C",
    }
    units = {f["name"]: f["unit"] for f in card["features"]}
    assert units == {"fibrosis_extent_pct": "%", "mld_hu": "HU", "age": "years"}
    assert "ComBat" in card["preprocessing"][0]
    assert [r["centre"] for r in card["validation"]["centres"]][:3] == [
        "centre_A",
        "centre_B",
        "centre_C",
    ]
    assert card["software"]["scikit-learn"]
    text = (folder / "model_card.md").read_text()
    assert "## How it was validated, and how well" in text


def test_loading_with_other_versions_warns(saved, tmp_path):
    model, folder = saved
    payload = joblib.load(folder / "model.joblib")
    payload["versions"] = {**payload["versions"], "scikit-learn": "0.0.1"}
    (tmp_path / "old").mkdir()
    joblib.dump(payload, tmp_path / "old" / "model.joblib")

    with pytest.warns(ModelVersionWarning, match=r"scikit-learn 0\.0\.1 \(now"):
        load_model(tmp_path / "old")


def test_cli_fit_and_predict(cohort, tmp_path, capsys):
    cohort.to_csv(tmp_path / "cohort.csv", index=False)
    new = cohort.head(6).copy()
    new.loc[0, "centre"] = "centre_Q"
    new.to_csv(tmp_path / "new.csv", index=False)

    code = main(
        [
            "model",
            "fit",
            "--data",
            str(tmp_path / "cohort.csv"),
            "--time",
            "time_years",
            "--event",
            "death",
            "--covariates",
            ",".join(COVARIATES),
            "--harmonize-by",
            "centre",
            "--centre",
            "centre",
            "--interval-bootstrap",
            "4",
            "--out",
            str(tmp_path / "model"),
        ]
    )
    assert code == 0
    for name in (
        "model.joblib",
        "model_card.json",
        "model_card.md",
        "report.html",
        "validation_centres.csv",
        "calibration_3.png",
    ):
        assert (tmp_path / "model" / name).is_file()

    code = main(
        [
            "predict",
            "--model",
            str(tmp_path / "model"),
            "--data",
            str(tmp_path / "new.csv"),
            "--out",
            str(tmp_path / "p.csv"),
        ]
    )
    predictions = pd.read_csv(tmp_path / "p.csv")
    assert code == 1  # one row could not be scored
    assert len(predictions) == 6
    assert list(predictions["status"]) == ["not_predicted"] + ["ok"] * 5
    assert "patient_id" not in predictions.columns

    capsys.readouterr()
    code = main(
        [
            "predict",
            "--model",
            str(tmp_path / "model"),
            "--data",
            str(tmp_path / "cohort.csv"),
            "--out",
            str(tmp_path / "q.csv"),
        ]
    )
    assert code == 0
    new.drop(columns=["mld_hu"]).to_csv(tmp_path / "bad.csv", index=False)
    code = main(
        [
            "predict",
            "--model",
            str(tmp_path / "model"),
            "--data",
            str(tmp_path / "bad.csv"),
            "--out",
            str(tmp_path / "r.csv"),
        ]
    )
    error = capsys.readouterr().err.strip()
    assert code == 2
    assert error.count("\n") == 0 and "'mld_hu'" in error
