"""Lung segmentation result: the two lungs and the central airway seed."""

from __future__ import annotations

import dataclasses

import numpy as np

from radscl.io import QualityFinding
from radscl.segmentation import LEFT_LUNG
from radscl.segmentation import RIGHT_LUNG
from radscl.segmentation import TRACHEA


@dataclasses.dataclass
class LungSegmentation:
    """The lungs of one scan.

    Attributes
    ----------
    labels : numpy.ndarray
        ``uint8 [z, y, x]``: 1 right lung, 2 left lung, 3 trachea and main
        bronchi (outside the pleural boundary); 0 elsewhere. The lungs include
        everything inside the pleural boundary: intrapulmonary airways and
        vessels, dense fibrosis and honeycombing.
    spacing_mm : tuple of float
        ``(z, y, x)``; ``z`` is the slice interval.
    findings : list of QualityFinding
        Doubts about the result (lungs touching the field of view, implausible
        volumes or left/right ratio), reported with the features.
    body_mask : numpy.ndarray, optional
        ``bool [z, y, x]`` body, without table and outside air.
    """

    labels: np.ndarray
    spacing_mm: tuple[float, float, float]
    findings: list[QualityFinding] = dataclasses.field(default_factory=list)
    body_mask: np.ndarray | None = None

    @property
    def lung_mask(self) -> np.ndarray:
        """Both lungs, ``bool [z, y, x]``."""
        return (self.labels == RIGHT_LUNG) | (self.labels == LEFT_LUNG)

    @property
    def trachea_mask(self) -> np.ndarray:
        """Trachea and main bronchi lumen outside the lungs, the airway seed."""
        return self.labels == TRACHEA

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel, from the slice interval."""
        return float(np.prod(self.spacing_mm)) / 1000.0

    def volumes_ml(self) -> dict[str, float]:
        """``lung_volume_ml``, ``lung_left_volume_ml`` and ``lung_right_volume_ml``."""
        counts = np.bincount(self.labels.ravel(), minlength=4)
        right = float(counts[RIGHT_LUNG]) * self.voxel_volume_ml
        left = float(counts[LEFT_LUNG]) * self.voxel_volume_ml
        return {
            "lung_volume_ml": right + left,
            "lung_left_volume_ml": left,
            "lung_right_volume_ml": right,
        }
