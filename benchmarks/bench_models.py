"""Speed of the model comparison on 1,000 synthetic patients.

The full job is ``compare_models`` with Cox, penalised Cox and a random survival
forest, each on the baseline, the biomarkers and both (9 models), 5 x 5-fold
cross-validation and 200 bootstrap resamples, on 2 worker processes. Beside it
the raw fits of the libraries underneath (lifelines' CoxPHFitter,
scikit-survival's Cox and forest) and scikit-survival's metric functions looped
over the same 200 resamples show where the time goes.

Run from the repository root::

    python -m benchmarks.bench_models
"""

from __future__ import annotations

import numpy as np

from benchmarks.harness import measure
from benchmarks.harness import write_results

N_PATIENTS = 1000
BASELINE = ["fvc_pct", "dlco_pct"]
BIOMARKERS = ["fibrosis_extent_pct", "vessel_volume_ml", "airway_lung_ratio_pct"]
COVARIATES = BASELINE + BIOMARKERS
N_BOOTSTRAP = 200


def make_table():
    from radscl.phantom import synthetic_cohort

    return (synthetic_cohort(N_PATIENTS, seed=2024).baseline_table(),)


def make_complete_arrays():
    from radscl.models.survival import survival_target

    (table,) = make_table()
    table = table.dropna(subset=COVARIATES)
    X = table[COVARIATES].to_numpy(dtype=float)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    y = survival_target(table["time_years"], table["death"])
    return table, X, y


def full_comparison(table) -> dict:
    from radscl.models.comparison import compare_models

    comparison = compare_models(
        table,
        time="time_years",
        event="death",
        baseline=BASELINE,
        biomarkers=BIOMARKERS,
        estimators=("cox", "coxnet", "rsf"),
        folds=5,
        repeats=5,
        n_bootstrap=N_BOOTSTRAP,
        seed=0,
        n_jobs=2,
    )
    rows = comparison.table.set_index("model")
    return {
        "models": len(rows),
        "fits": 25 * len(rows),
        "C cox base": rows.loc["cox: baseline", "harrell_c"],
        "C cox both": rows.loc["cox: baseline+biomarkers", "harrell_c"],
        "C rsf both": rows.loc["rsf: baseline+biomarkers", "harrell_c"],
    }


def radscl_cox_fits(table, X, y) -> dict:
    from radscl.models.estimators import CoxPH

    for _ in range(25):
        CoxPH().fit(X, y)
    return {"fits": 25}


def lifelines_cox_fits(table, X, y) -> dict:
    import pandas as pd
    from lifelines import CoxPHFitter

    frame = pd.DataFrame(X, columns=COVARIATES)
    frame["time"] = y["time"]
    frame["event"] = y["event"].astype(int)
    for _ in range(25):
        CoxPHFitter().fit(frame, "time", "event")
    return {"fits": 25}


def sksurv_cox_fits(table, X, y) -> dict:
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    for _ in range(25):
        CoxPHSurvivalAnalysis(ties="efron").fit(X, y)
    return {"fits": 25}


def radscl_forest_fits(table, X, y) -> dict:
    from radscl.models.estimators import SurvivalForest

    for seed in range(5):
        SurvivalForest(random_state=seed).fit(X, y)
    return {"fits": 5, "trees": 100}


def sksurv_forest_fits(table, X, y) -> dict:
    from sksurv.ensemble import RandomSurvivalForest

    for seed in range(5):
        RandomSurvivalForest(n_estimators=100, random_state=seed, n_jobs=1).fit(X, y)
    return {"fits": 5, "trees": 100, "params": "sksurv defaults"}


def _risk_and_survival(X, y):
    from radscl.models.estimators import CoxPH

    model = CoxPH().fit(X, y)
    grid = np.linspace(*np.quantile(y["time"], [0.1, 0.9]), 40)
    return model.predict(X), model.predict_survival(X, grid), grid


def radscl_bootstrap_metrics(table, X, y) -> dict:
    from radscl.models.metrics import Outcome
    from radscl.models.metrics import ResampledMetrics
    from radscl.models.metrics import bootstrap_weights
    from radscl.models.metrics import integrated_brier

    risk, survival, grid = _risk_and_survival(X, y)
    outcome = Outcome.from_arrays(y["time"], y["event"])
    weights = bootstrap_weights(outcome.n, N_BOOTSTRAP, np.random.default_rng(0))
    metrics = ResampledMetrics(outcome, weights, horizons=[1, 2, 3, 5], tau=5.0)
    result = metrics.discrimination(risk)
    ibs = integrated_brier(metrics.brier(survival, grid), grid)
    return {
        "resamples": N_BOOTSTRAP,
        "mean C": float(result.harrell_c.mean()),
        "mean IBS": float(ibs.mean()),
    }


def sksurv_bootstrap_metrics(table, X, y) -> dict:
    from sksurv.metrics import concordance_index_censored
    from sksurv.metrics import concordance_index_ipcw
    from sksurv.metrics import cumulative_dynamic_auc
    from sksurv.metrics import integrated_brier_score

    from radscl.models.metrics import bootstrap_weights

    risk, survival, grid = _risk_and_survival(X, y)
    weights = bootstrap_weights(len(y), N_BOOTSTRAP, np.random.default_rng(0))
    c_values, ibs_values = [], []
    for row in weights:
        rows = np.repeat(np.arange(len(y)), row.astype(int))
        resample = y[rows]
        c_values.append(
            concordance_index_censored(resample["event"], resample["time"], risk[rows])[
                0
            ]
        )
        concordance_index_ipcw(resample, resample, risk[rows], tau=5.0)
        cumulative_dynamic_auc(resample, resample, risk[rows], [1, 2, 3, 5])
        ibs_values.append(
            integrated_brier_score(resample, resample, survival[rows], grid)
        )
    return {
        "resamples": N_BOOTSTRAP,
        "mean C": float(np.mean(c_values)),
        "mean IBS": float(np.mean(ibs_values)),
    }


def main() -> None:
    rows = [
        measure(
            "full comparison: 9 models, 5x5 CV, 200 bootstrap, 2 jobs",
            "radscl",
            full_comparison,
            setup=make_table,
        ),
        measure(
            "25 Cox fits (1,000 patients, 5 covariates)",
            "radscl CoxPH",
            radscl_cox_fits,
            setup=make_complete_arrays,
        ),
        measure(
            "25 Cox fits (1,000 patients, 5 covariates)",
            "lifelines CoxPHFitter",
            lifelines_cox_fits,
            setup=make_complete_arrays,
        ),
        measure(
            "25 Cox fits (1,000 patients, 5 covariates)",
            "scikit-survival CoxPH",
            sksurv_cox_fits,
            setup=make_complete_arrays,
        ),
        measure(
            "5 forest fits (100 trees)",
            "radscl SurvivalForest",
            radscl_forest_fits,
            setup=make_complete_arrays,
        ),
        measure(
            "5 forest fits (100 trees)",
            "scikit-survival RSF",
            sksurv_forest_fits,
            setup=make_complete_arrays,
        ),
        measure(
            "200 bootstrap resamples: Harrell, Uno, AUC x4, IBS",
            "radscl ResampledMetrics",
            radscl_bootstrap_metrics,
            setup=make_complete_arrays,
        ),
        measure(
            "200 bootstrap resamples: Harrell, Uno, AUC x4, IBS",
            "scikit-survival metrics",
            sksurv_bootstrap_metrics,
            setup=make_complete_arrays,
        ),
    ]
    path = write_results("models", rows)
    print(path.read_text())


if __name__ == "__main__":
    main()
