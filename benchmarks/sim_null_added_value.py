"""How often does a pure-noise biomarker look like "added value"?

Each of 100 synthetic cohorts (1,000 patients, hazard driven by fibrosis
extent, airway and vessel measures, age and sex) gets one extra column of
standard normal noise. ``compare_models`` then adds it to a baseline Cox model
of FVC and DLco (5 x 5-fold cross-validation, 200 bootstrap resamples), and we
count three kinds of false call at the 5 % level:

* likelihood-ratio test of the nested Cox models, p < 0.05;
* the change in cross-validated C with a 95 % interval entirely above 0;
* both at once.

The likelihood-ratio test should reject about 5 % of the time; the interval
of the change in C is deliberately conservative (see
:mod:`radscl.models.evaluation`) and should reject far less than 5 %.

Run from the repository root (about 10-20 minutes on 2 cores)::

    python -m benchmarks.sim_null_added_value [--cohorts 100] [--jobs 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def one_null_cohort(index: int) -> dict:
    """Run the comparison on null cohort ``index`` and return its calls."""
    from threadpoolctl import threadpool_limits

    from radscl.models.comparison import compare_models
    from radscl.phantom import synthetic_cohort

    with threadpool_limits(1):
        table = synthetic_cohort(1000, seed=10_000 + index).baseline_table()
        table["noise"] = np.random.default_rng(index).normal(size=len(table))
        comparison = compare_models(
            table,
            time="time_years",
            event="death",
            baseline=["fvc_pct", "dlco_pct"],
            biomarkers=["noise"],
            estimators=("cox",),
            folds=5,
            repeats=5,
            n_bootstrap=200,
            seed=index,
            n_jobs=1,
            biomarkers_alone=False,
        )
    row = comparison.table.set_index("role").loc["baseline+biomarkers"]
    return {
        "cohort": index,
        "events": int(row["events"]),
        "harrell_c_baseline": float(comparison.table["harrell_c"].iloc[0]),
        "delta_c": float(row["delta_c"]),
        "delta_c_lower95": float(row["delta_c_lower95"]),
        "delta_c_upper95": float(row["delta_c_upper95"]),
        "lr_p": float(row["lr_p"]),
    }


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """False-call rates with exact binomial 95 % intervals."""
    from scipy.stats import binomtest

    calls = {
        "likelihood-ratio p < 0.05": results["lr_p"] < 0.05,
        "delta C interval above 0": results["delta_c_lower95"] > 0,
        "both": (results["lr_p"] < 0.05) & (results["delta_c_lower95"] > 0),
        "delta C interval excludes 0 (either side)": (results["delta_c_lower95"] > 0)
        | (results["delta_c_upper95"] < 0),
    }
    rows = []
    for name, flags in calls.items():
        k = int(flags.sum())
        interval = binomtest(k, len(flags)).proportion_ci(0.95, method="exact")
        rows.append(
            {
                "call": name,
                "false_calls": k,
                "cohorts": len(flags),
                "rate_pct": 100.0 * k / len(flags),
                "rate_lower95_pct": 100.0 * interval.low,
                "rate_upper95_pct": 100.0 * interval.high,
            }
        )
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    from joblib import Parallel
    from joblib import delayed

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohorts", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    results = pd.DataFrame(
        Parallel(n_jobs=args.jobs)(
            delayed(one_null_cohort)(i) for i in range(args.cohorts)
        )
    )
    wall_s = time.perf_counter() - start
    summary = summarise(results)

    RESULTS_DIR.mkdir(exist_ok=True)
    results.to_csv(RESULTS_DIR / "null_added_value_cohorts.csv", index=False)
    summary.to_csv(RESULTS_DIR / "null_added_value.csv", index=False)
    lines = [
        "# Simulation: false 'added value' calls for a pure-noise biomarker",
        "",
        f"{args.cohorts} synthetic cohorts of 1,000 patients; baseline Cox model "
        "FVC + DLco, "
        "added standard normal noise; 5 x 5-fold CV, 200 bootstrap resamples; "
        f"{wall_s:.0f} s wall time on {args.jobs} processes.",
        "",
        "| call | false calls | cohorts | rate (%) | exact 95 % CI (%) |",
        "|---|---:|---:|---:|---|",
    ]
    for row in summary.itertuples(index=False):
        lines.append(
            f"| {row.call} | {row.false_calls} | {row.cohorts} | {row.rate_pct:.1f} | "
            f"{row.rate_lower95_pct:.1f}-{row.rate_upper95_pct:.1f} |"
        )
    lines += [
        "",
        f"Mean change in C {results['delta_c'].mean():+.4f} "
        f"(sd {results['delta_c'].std():.4f}); mean interval width "
        f"{(results['delta_c_upper95'] - results['delta_c_lower95']).mean():.4f}.",
    ]
    (RESULTS_DIR / "null_added_value.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
