"""Training a pattern classifier from annotated scans listed in a manifest.

This is what ``radscl fibrosis train`` runs. The manifest is a CSV with one
row per annotated scan: an ``image`` column (pyradiomics' ``Image`` is
accepted) and a ``labels`` column (``Mask`` and ``label_map`` are accepted)
naming the annotation, a label map on the scan's grid. Relative paths are
taken from the manifest's folder. The label mapping file (YAML or JSON) maps
the annotation's label values to the five patterns::

    1: normal
    2: ground_glass
    3: reticulation
    4: honeycombing
    5: emphysema
    6: ignore        # e.g. consolidation, left out of training

Any number of annotation labels may map to the same pattern; labels that are
not listed are left out. The neighbourhoods are computed on the voxels that
carry a mapped label, so an annotation should cover whole regions of lung
(sparse scribbles give neighbourhoods that reach unlabelled lung).
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from radscl.errors import DataError
from radscl.errors import ParameterError
from radscl.extractors.fibrosis import PatternModel
from radscl.extractors.fibrosis import parse_label_mapping
from radscl.extractors.fibrosis import save_pattern_model
from radscl.extractors.fibrosis import train_pattern_model
from radscl.extractors.fibrosis import training_samples

logger = logging.getLogger(__name__)

IMAGE_COLUMNS = ("image", "Image")
LABEL_COLUMNS = ("labels", "label_map", "Mask", "mask")


def read_label_mapping(path: str | os.PathLike[str]) -> dict[int, int]:
    """Read a YAML or JSON file mapping annotation labels to patterns.

    Raises
    ------
    ParameterError
        When the file is missing, not YAML/JSON, not a mapping, or maps a
        label to something that is not a pattern.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"{path}: label mapping file not found")
    try:
        text = path.read_text(encoding="utf-8")
        data = (
            json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
        )
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as error:
        reason = " ".join(str(error).split())[:200]
        raise ParameterError(
            f"{path}: cannot read the label mapping ({reason})"
        ) from None
    if not isinstance(data, dict):
        raise ParameterError(
            f"{path}: the label mapping must map label values to patterns"
        )
    return parse_label_mapping(data, source=str(path))


def read_training_manifest(path: str | os.PathLike[str]) -> list[tuple[Path, Path]]:
    """Pairs of (scan, annotation) paths from a training manifest CSV.

    Raises
    ------
    DataError
        When the file is missing or unreadable, lacks the columns, is empty,
        or names a file that does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: training manifest not found")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
            columns = rows[0].keys() if rows else []
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{path}: cannot be read as CSV ({error})") from None
    if not rows:
        raise DataError(f"{path}: the manifest has no rows")
    image_column = next((c for c in IMAGE_COLUMNS if c in columns), None)
    label_column = next((c for c in LABEL_COLUMNS if c in columns), None)
    if image_column is None or label_column is None:
        raise DataError(
            f"{path}: the manifest needs an image column and a labels column "
            f"(found {', '.join(columns)})"
        )

    pairs = []
    for number, row in enumerate(rows, start=2):
        files = []
        for column in (image_column, label_column):
            value = (row.get(column) or "").strip()
            if not value:
                raise DataError(f"{path}: line {number} has no {column}")
            given = Path(value).expanduser()
            resolved = given if given.is_absolute() else path.parent / given
            if not resolved.exists():
                raise DataError(f"{path}: line {number}: {column} {value} not found")
            files.append(resolved)
        pairs.append((files[0], files[1]))
    return pairs


def read_annotation(path: Path, scan) -> np.ndarray:
    """An annotation label map as an integer array on the scan's grid.

    The image is reoriented to LPS as :func:`radscl.io.load_scan` does and must
    have the scan's shape and spacing.

    Raises
    ------
    DataError
        When it cannot be read or does not lie on the scan's grid.
    """
    from radscl.io._common import import_sitk
    from radscl.io._common import snap_direction

    sitk = import_sitk()
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError:
        raise DataError(f"{path}: cannot be read as a label map") from None
    direction = np.array(image.GetDirection()).reshape(3, 3)
    if not np.array_equal(snap_direction(direction), np.eye(3)):
        image = sitk.DICOMOrient(image, "LPS")
    labels = sitk.GetArrayFromImage(image)
    spacing = tuple(float(v) for v in image.GetSpacing()[::-1])
    if labels.shape != scan.hounsfield.shape:
        raise DataError(
            f"{path}: label map shape {labels.shape} differs from the scan's "
            f"{scan.hounsfield.shape}"
        )
    if not np.allclose(spacing, scan.spacing_mm, rtol=0.01, atol=0.01):
        raise DataError(
            f"{path}: label map spacing {spacing} differs from the scan's "
            f"{tuple(scan.spacing_mm)}"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.array_equal(labels, np.round(labels)):
            raise DataError(f"{path}: label values must be whole numbers")
        labels = labels.astype(np.int32)
    return labels


def train_from_manifest(
    manifest: str | os.PathLike[str],
    mapping_file: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    classifier: str = "gradient_boosting",
    voxels_per_pattern: int = 20000,
    iterations: int = 150,
    seed: int = 0,
) -> tuple[PatternModel, Path]:
    """Train a pattern classifier on the annotated scans of a manifest and save it.

    Parameters
    ----------
    manifest : path-like
        CSV with image and labels columns.
    mapping_file : path-like
        YAML or JSON mapping of annotation labels to patterns.
    out : path-like
        The ``.joblib`` file to write.
    classifier : str
        ``gradient_boosting`` or ``random_forest``.
    voxels_per_pattern : int
        At most this many voxels of each pattern are drawn from each scan.
    iterations : int
        Boosting iterations or forest trees.
    seed : int
        Seed of the voxel draw and the classifier.

    Returns
    -------
    model : PatternModel
    path : pathlib.Path
        The file written.
    """
    from radscl.io import load_scan

    mapping = read_label_mapping(mapping_file)
    pairs = read_training_manifest(manifest)
    if voxels_per_pattern < 10:
        raise ParameterError(
            f"voxels per pattern must be at least 10, but found {voxels_per_pattern}"
        )

    def samples() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for index, (image_path, label_path) in enumerate(pairs):
            scan = load_scan(image_path)
            annotation = read_annotation(label_path, scan)
            features, patterns = training_samples(
                scan,
                annotation,
                mapping,
                max_voxels_per_pattern=voxels_per_pattern,
                seed=seed + index,
            )
            if patterns.size == 0:
                raise DataError(f"{label_path}: no voxel carries a mapped label")
            logger.info(
                "training scan %d of %d: %d voxels",
                index + 1,
                len(pairs),
                patterns.size,
            )
            yield features, patterns

    record: dict[str, Any] = {
        "label_mapping": {str(k): int(v) for k, v in sorted(mapping.items())},
        "max_voxels_per_pattern": voxels_per_pattern,
        "seed": seed,
    }
    model = train_pattern_model(
        samples(),
        classifier=classifier,
        description=f"{classifier} trained on {len(pairs)} annotated scans",
        training=record,
        iterations=iterations,
        seed=seed,
    )
    path = save_pattern_model(model, out)
    return model, path
