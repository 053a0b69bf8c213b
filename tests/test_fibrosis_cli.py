"""``radscl fibrosis train``: annotated scans in, a usable model file out."""

from __future__ import annotations

import numpy as np
import pytest

from radscl.cli import main
from radscl.extractors.fibrosis import PatternModel
from radscl.extractors.fibrosis import classify_patterns
from radscl.extractors.fibrosis import load_pattern_model
from radscl.phantom.output import write_phantom

MAPPING = """\
# phantom tissue labels -> patterns
1: normal
2: ignore        # airway lumen
3: ignore        # airway wall
4: ignore        # vessel
5: ground_glass
6: reticulation
7: honeycombing
8: emphysema
"""


@pytest.fixture(scope="module")
def training_folder(phantom_factory, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fibrosis_train")
    for seed in (0, 1):
        phantom = phantom_factory("small", seed=seed, fibrosis_pct=40.0)
        write_phantom(phantom, folder / f"p{seed}", formats=("nifti",))
    (folder / "manifest.csv").write_text(
        "image,labels\np0/ct.nii.gz,p0/truth_labels.nii.gz\n"
        "p1/ct.nii.gz,p1/truth_labels.nii.gz\n"
    )
    (folder / "mapping.yaml").write_text(MAPPING)
    return folder


def _train(folder, *extra):
    return main(
        [
            "fibrosis",
            "train",
            "--manifest",
            str(folder / "manifest.csv"),
            "--mapping",
            str(folder / "mapping.yaml"),
            "--voxels-per-pattern",
            "1500",
            "--iterations",
            "40",
            *extra,
        ]
    )


@pytest.mark.slow
def test_train_writes_a_model_that_finds_fibrosis(
    training_folder, phantom_factory, capsys
):
    out = training_folder / "model" / "patterns.joblib"

    code = _train(training_folder, "--out", str(out))

    assert code == 0
    assert "model written to" in capsys.readouterr().out
    model = load_pattern_model(out)
    assert isinstance(model, PatternModel)
    assert model.training["scans"] == 2
    assert model.training["label_mapping"]["6"] == 3
    assert set(model.training["voxels_per_pattern"]) == {
        "normal",
        "ground glass",
        "reticulation",
        "honeycombing",
    }

    phantom = phantom_factory("small", seed=2, fibrosis_pct=40.0)
    lung = (phantom.lungs == 1) | (phantom.lungs == 2)
    parenchyma = lung & np.isin(phantom.labels, (1, 5, 6, 7, 8))
    patterns = classify_patterns(phantom.to_scan(), parenchyma, model)
    measured = 100.0 * np.isin(patterns[lung], (2, 3, 4)).mean()
    assert abs(measured - phantom.truth["fibrosis_extent_pct"]) <= 3.0


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_train_input_errors_are_one_line(training_folder, tmp_path, capsys):
    out = str(tmp_path / "m.joblib")

    bad_mapping = tmp_path / "bad.yaml"
    bad_mapping.write_text("1: normal\n6: fog\n")
    code = main(
        [
            "fibrosis",
            "train",
            "--manifest",
            str(training_folder / "manifest.csv"),
            "--mapping",
            str(bad_mapping),
            "--out",
            out,
        ]
    )
    assert code == 2
    assert "label 6 maps to 'fog'" in _error(capsys)

    no_labels = tmp_path / "manifest.csv"
    no_labels.write_text("image\nct.nii.gz\n")
    code = main(
        [
            "fibrosis",
            "train",
            "--manifest",
            str(no_labels),
            "--mapping",
            str(training_folder / "mapping.yaml"),
            "--out",
            out,
        ]
    )
    assert code == 2
    assert "needs an image column and a labels column" in _error(capsys)

    missing = tmp_path / "missing.csv"
    missing.write_text("image,labels\nnowhere.nii.gz,p0/truth_labels.nii.gz\n")
    code = main(
        [
            "fibrosis",
            "train",
            "--manifest",
            str(missing),
            "--mapping",
            str(training_folder / "mapping.yaml"),
            "--out",
            out,
        ]
    )
    assert code == 2
    assert "line 2: image nowhere.nii.gz not found" in _error(capsys)

    lungs_only = tmp_path / "lungs_only.csv"
    lungs_only.write_text(
        f"image,labels\n{training_folder}/p0/ct.nii.gz,"
        f"{training_folder}/p0/truth_lungs.nii.gz\n"
    )
    only_normal = tmp_path / "only_normal.yaml"
    only_normal.write_text("1: normal\n2: normal\n")
    code = main(
        [
            "fibrosis",
            "train",
            "--manifest",
            str(lungs_only),
            "--mapping",
            str(only_normal),
            "--out",
            out,
        ]
    )
    assert code == 2
    assert "at least two patterns" in _error(capsys)
    assert not (tmp_path / "m.joblib").exists()
