"""Synthetic chest CT and synthetic cohorts with exact ground truth.

:func:`make_phantom` draws a chest CT volume with its label map and the volumes
every extractor reports; :func:`synthetic_cohort` draws a multi-centre cohort
with a known outcome model for the modelling layer.
"""

from radscl.phantom.chest import LUNG_LABELS
from radscl.phantom.chest import TISSUE_LABELS
from radscl.phantom.chest import Phantom
from radscl.phantom.chest import PhantomSpec
from radscl.phantom.chest import make_phantom
from radscl.phantom.cohort import CENTRE_PROFILES
from radscl.phantom.cohort import COHORT_TRUTH
from radscl.phantom.cohort import SyntheticCohort
from radscl.phantom.cohort import synthetic_cohort

__all__ = [
    "LUNG_LABELS",
    "TISSUE_LABELS",
    "Phantom",
    "PhantomSpec",
    "make_phantom",
    "CENTRE_PROFILES",
    "COHORT_TRUTH",
    "SyntheticCohort",
    "synthetic_cohort",
]
