"""Survival models of CT biomarkers against lung-function baselines.

* :mod:`radscl.models.survival` — the survival table (features joined to
  outcomes, baseline scan per patient, validation, structured target);
* :mod:`radscl.models.baselines` — FVC, DLco, GAP index, Goh staging, CPI;
* :mod:`radscl.models.estimators` — Cox, penalised Cox and random survival
  forest with the scikit-learn contract, inside fold-safe pipelines;
* :mod:`radscl.models.metrics` — Harrell's and Uno's C, time-dependent AUC and
  Brier score, vectorised over bootstrap resamples;
* :mod:`radscl.models.evaluation` — repeated cross-validation, intervals,
  likelihood-ratio and proportional-hazards tests, calibration;
* :mod:`radscl.models.comparison` — the baseline-versus-biomarker comparison;
* :mod:`radscl.models.competing` — cause-specific Cox and cumulative
  incidence for outcomes with a competing risk;
* :mod:`radscl.models.validation` — leave-one-centre-out validation with
  per-centre calibration and heterogeneity between centres;
* :mod:`radscl.models.saved` — the final model, its model card, saving,
  loading and scoring new patients.
"""

from radscl.models.baselines import add_baseline_scores
from radscl.models.baselines import composite_physiologic_index
from radscl.models.baselines import gap_points
from radscl.models.baselines import gap_stage
from radscl.models.baselines import goh_extensive
from radscl.models.comparison import Comparison
from radscl.models.comparison import compare_models
from radscl.models.estimators import CoxPH
from radscl.models.estimators import PenalizedCox
from radscl.models.estimators import SurvivalForest
from radscl.models.estimators import predict_survival
from radscl.models.estimators import survival_pipeline
from radscl.models.evaluation import cross_validated_predictions
from radscl.models.evaluation import likelihood_ratio_test
from radscl.models.evaluation import proportional_hazards_test
from radscl.models.metrics import harrell_c
from radscl.models.metrics import integrated_brier_score
from radscl.models.metrics import time_dependent_auc
from radscl.models.metrics import uno_c
from radscl.models.survival import SurvivalTable
from radscl.models.survival import build_survival_table
from radscl.models.survival import survival_target

__all__ = [
    "Comparison",
    "CoxPH",
    "PenalizedCox",
    "SurvivalForest",
    "SurvivalTable",
    "add_baseline_scores",
    "build_survival_table",
    "compare_models",
    "composite_physiologic_index",
    "cross_validated_predictions",
    "gap_points",
    "gap_stage",
    "goh_extensive",
    "harrell_c",
    "integrated_brier_score",
    "likelihood_ratio_test",
    "predict_survival",
    "proportional_hazards_test",
    "survival_pipeline",
    "survival_target",
    "time_dependent_auc",
    "uno_c",
]
