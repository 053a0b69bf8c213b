"""Speed and memory of the longitudinal analysis on a real-world-sized table.

The table mimics a single-centre SSc-ILD lung-function registry: 180
patients with 6 to 10 irregular visits each (4 to 14 months apart), from the
synthetic cohort. Stages:

* the FVC mixed model (random intercept and slope, baseline biomarker x time)
  by radscl, beside the same model fitted directly with statsmodels' formula
  interface and its default start and optimisers;
* the same two fits on a table whose patients share one slope (random-slope
  variance zero), where the likelihood peaks on the boundary of the
  parameter space and gradient optimisers stall;
* the four progression rules applied to the whole table.

Run from the repository root::

    python -m benchmarks.bench_longitudinal
"""

from __future__ import annotations

import logging

from benchmarks.harness import measure
from benchmarks.harness import write_results

N_PATIENTS = 180
VISITS = (6, 10)
BIOMARKER = "airway_lung_ratio_pct"


def make_tables(seed: int = 3):
    """Lung-function visits and the baseline scan table (untimed setup)."""
    from radscl.phantom import synthetic_cohort

    cohort = synthetic_cohort(N_PATIENTS, seed=seed, n_visits=VISITS)
    return cohort.lung_function, cohort.baseline_table()


def make_model_frame(seed: int = 3):
    """The same data as one long frame with a standardised biomarker."""
    lung_function, baseline = make_tables(seed)
    frame = lung_function.merge(baseline[["patient_id", BIOMARKER]], on="patient_id")
    frame = frame.dropna(subset=[BIOMARKER, "fvc_pct"])
    per_patient = frame.drop_duplicates("patient_id")[BIOMARKER]
    frame["biomarker_z"] = (frame[BIOMARKER] - per_patient.mean()) / per_patient.std(
        ddof=0
    )
    return (frame,)


def make_boundary_tables(seed: int = 0):
    """Visits with a random intercept but one common slope (-1.5 %/year)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(N_PATIENTS):
        intercept = rng.normal(80, 12)
        n_visits = int(rng.integers(VISITS[0], VISITS[1] + 1))
        years = np.cumsum(np.r_[0.0, rng.uniform(0.33, 1.2, n_visits - 1)])
        for t in years:
            rows.append(
                {
                    "patient_id": f"B{i:03d}",
                    "date": pd.Timestamp("2015-01-01")
                    + pd.Timedelta(days=round(t * 365.25)),
                    "years_from_baseline": t,
                    "fvc_pct": intercept - 1.5 * t + rng.normal(0, 3),
                }
            )
    visits = pd.DataFrame(rows)
    baseline = pd.DataFrame(
        {
            "patient_id": visits["patient_id"].unique(),
            BIOMARKER: rng.normal(1.2, 0.3, N_PATIENTS),
        }
    )
    return visits, baseline


def make_boundary_frame(seed: int = 0):
    visits, baseline = make_boundary_tables(seed)
    frame = visits.merge(baseline, on="patient_id")
    values = baseline[BIOMARKER]
    frame["biomarker_z"] = (frame[BIOMARKER] - values.mean()) / values.std(ddof=0)
    return (frame,)


def radscl_mixed_model(lung_function, baseline) -> dict:
    import warnings

    from radscl.models.longitudinal import fit_fvc_trajectory

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = fit_fvc_trajectory(lung_function, baseline, biomarker=BIOMARKER)
    interaction = fit.estimates.set_index("term").loc[f"{BIOMARKER}_z:time_years"]
    return {
        "visits": fit.n_visits,
        "optimizer": fit.optimizer,
        "converged": fit.converged,
        "warnings": len(caught),
        "time_years": float(
            fit.estimates.set_index("term").loc["time_years", "estimate"]
        ),
        "interaction": float(interaction["estimate"]),
    }


def statsmodels_mixed_model(frame) -> dict:
    import warnings

    import statsmodels.formula.api as smf

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = smf.mixedlm(
            "fvc_pct ~ years_from_baseline * biomarker_z",
            frame,
            groups=frame["patient_id"],
            re_formula="~years_from_baseline",
        ).fit(reml=True)
    return {
        "visits": int(result.nobs),
        "converged": bool(result.converged),
        "warnings": len(caught),
        "time_years": float(result.fe_params["years_from_baseline"]),
        "interaction": float(result.fe_params["years_from_baseline:biomarker_z"]),
    }


def radscl_progression_rules(lung_function, baseline) -> dict:
    from radscl.models.progression import RULES
    from radscl.models.progression import derive_progression

    events = {}
    for name in RULES:
        events[f"{name}_events"] = int(
            derive_progression(lung_function, name)["event"].sum()
        )
    return events


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    stage = f"FVC mixed model, {N_PATIENTS} patients x {VISITS[0]}-{VISITS[1]} visits"
    rows = [
        measure(
            stage,
            "radscl fit_fvc_trajectory",
            radscl_mixed_model,
            setup=make_tables,
            repeat=3,
        ),
        measure(
            stage,
            "statsmodels mixedlm (default start and optimisers)",
            statsmodels_mixed_model,
            setup=make_model_frame,
            repeat=3,
        ),
        measure(
            f"{stage}, no random slope (boundary)",
            "radscl fit_fvc_trajectory",
            radscl_mixed_model,
            setup=make_boundary_tables,
            repeat=3,
        ),
        measure(
            f"{stage}, no random slope (boundary)",
            "statsmodels mixedlm (default start and optimisers)",
            statsmodels_mixed_model,
            setup=make_boundary_frame,
            repeat=3,
        ),
        measure(
            f"4 progression rules, {N_PATIENTS} patients",
            "radscl derive_progression",
            radscl_progression_rules,
            setup=make_tables,
            repeat=3,
        ),
    ]
    path = write_results("longitudinal", rows)
    print(path.read_text())


if __name__ == "__main__":
    main()
