"""Survival data, Cox models, forests, evaluation and longitudinal analysis."""
