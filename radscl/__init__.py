"""Prognostic chest-CT biomarkers for systemic-sclerosis interstitial lung disease.

radscl turns chest CT scans into airway, vessel and fibrosis measurements and
tests whether they predict outcome better than lung function does.
"""

import logging

from radscl.errors import RadsclError
from radscl.errors import ScanError

__version__ = "0.1.0"

__all__ = ["RadsclError", "ScanError", "__version__"]

logging.getLogger(__name__).addHandler(logging.NullHandler())
