"""Synthetic chest CT and synthetic cohorts with exact ground truth.

:func:`make_phantom` draws a chest CT volume with its label map and the volumes
every extractor reports; :func:`synthetic_cohort` draws a multi-centre cohort
with a known outcome model for the modelling layer.
"""

from radscl.phantom.cohort import CENTRE_PROFILES
from radscl.phantom.cohort import COHORT_TRUTH
from radscl.phantom.cohort import SyntheticCohort
from radscl.phantom.cohort import synthetic_cohort

__all__ = [
    "CENTRE_PROFILES",
    "COHORT_TRUTH",
    "SyntheticCohort",
    "synthetic_cohort",
]
