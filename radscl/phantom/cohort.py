"""A synthetic multi-centre SSc-ILD cohort with a documented, known truth.

The cohort is what the modelling layer is tested against: every patient has
baseline lung function, CT biomarkers drawn from a stated generative model,
survival and pulmonary-hypertension outcomes from a stated hazard model, a
lung-function series with a known rate of decline, and, for a subset, a repeat
CT scan. Each centre has its own scanner, reconstruction kernel and HU offset,
which shift the *measured* CT features the way real scanners do. The true
coefficients are returned with the data (:attr:`SyntheticCohort.truth`) so that
tests can check that a model recovers them.

The generative model (time in years, ``z(.)`` a standardised value):

* fibrosis extent (% of lung) ~ log-normal, median 12 %, clipped to [0, 70];
* intrapulmonary airway-to-lung ratio (%) = 0.9 + 0.025 * extent + noise (sd 0.2);
* vessel volume (ml) = 150 + 1.2 * extent + noise (sd 25);
* FVC % predicted = 100 - 0.7 * extent + noise (sd 13);
* DLco % predicted = 82 - 0.75 * extent - 6 * z(vessel) + noise (sd 12);
* death: Weibull hazard (shape 1.3) with log hazard ratio
  ``0.045 * (extent - 15) + 0.35 * z(airway ratio) + 0.30 * z(vessel)
  + 0.035 * (age - 55) + 0.25 * male``;
* pulmonary hypertension: cause-specific exponential hazard with log hazard
  ratio ``0.65 * z(vessel) - 0.025 * (DLco - 60)``, competing with death;
* FVC % predicted over time: patient intercept plus slope
  ``-1.0 - 0.8 * z(airway ratio)`` % predicted per year, with a random slope
  (sd 1.2) and visit noise (sd 3) at every visit after the first; visits come
  every 4 to 14 months until death or censoring (at most 12), or, with
  ``n_visits=(low, high)``, between ``low`` and ``high`` visits regardless of
  follow-up;
* measured CT features = true value + measurement noise + the centre's
  scanner effect (HU offset, kernel-dependent histogram shape, extent bias);
* age ~ normal (mean 55, sd 12) clipped to [20, 85]; with
  ``centre_age_gap_years`` the centres differ in case mix, centre k's mean age
  being ``55 + (k - (n_centres - 1) / 2) * centre_age_gap_years``. Age acts on
  outcome and, through predicted FVC, on lung volume, so a site difference in
  lung volume is then partly biological: the case harmonisation must keep.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any

import numpy as np
import pandas as pd

from radscl.errors import RadsclError

logger = logging.getLogger(__name__)

#: Scanner profiles of the synthetic centres. ``kernel_style`` drives the
#: phantom's image formation; ``hu_offset`` is a calibration offset added to
#: every voxel; ``extent_bias_pct`` is the systematic shift a sharp kernel adds
#: to a texture-based fibrosis score.
CENTRE_PROFILES: tuple[dict[str, Any], ...] = (
    dict(
        centre="centre_A",
        manufacturer="SIEMENS",
        model="SOMATOM Definition AS",
        kernel="B70f",
        kernel_style="sharp",
        hu_offset=0.0,
        noise_hu=45.0,
        extent_bias_pct=2.0,
    ),
    dict(
        centre="centre_B",
        manufacturer="Philips",
        model="Brilliance 64",
        kernel="B",
        kernel_style="soft",
        hu_offset=14.0,
        noise_hu=20.0,
        extent_bias_pct=0.0,
    ),
    dict(
        centre="centre_C",
        manufacturer="GE MEDICAL SYSTEMS",
        model="LightSpeed VCT",
        kernel="LUNG",
        kernel_style="sharp",
        hu_offset=-10.0,
        noise_hu=35.0,
        extent_bias_pct=1.5,
    ),
    dict(
        centre="centre_D",
        manufacturer="TOSHIBA",
        model="Aquilion ONE",
        kernel="FC13",
        kernel_style="soft",
        hu_offset=6.0,
        noise_hu=18.0,
        extent_bias_pct=-0.5,
    ),
    dict(
        centre="centre_E",
        manufacturer="SIEMENS",
        model="Sensation 16",
        kernel="B45f",
        kernel_style="soft",
        hu_offset=-16.0,
        noise_hu=25.0,
        extent_bias_pct=0.5,
    ),
)

#: True coefficients of the generative model (documented in the module text).
COHORT_TRUTH: dict[str, Any] = {
    "death_log_hr": {
        "fibrosis_extent_pct": 0.045,
        "airway_lung_ratio_pct_z": 0.35,
        "vessel_volume_ml_z": 0.30,
        "age": 0.035,
        "male": 0.25,
    },
    "death_weibull_shape": 1.3,
    "death_weibull_scale_years": 11.0,
    "ph_log_hr": {"vessel_volume_ml_z": 0.65, "dlco_pct": -0.025},
    "ph_baseline_rate_per_year": 0.03,
    "fvc_slope_pct_per_year": {"intercept": -1.0, "airway_lung_ratio_pct_z": -0.8},
    "fvc_random_slope_sd": 1.2,
    "fvc_visit_noise_sd": 3.0,
    "extent_progression_pct_per_year": {
        "intercept": 0.8,
        "airway_lung_ratio_pct_z": 0.9,
    },
}


@dataclasses.dataclass
class SyntheticCohort:
    """A synthetic cohort: patients, scans, lung-function visits and the truth.

    Attributes
    ----------
    patients : pandas.DataFrame
        One row per patient: ``patient_id``, ``centre``, ``age``, ``sex``,
        ``height_cm``, ``fvc_pct``, ``fvc_ml``, ``dlco_pct``, ``fev1_pct``,
        outcomes (``time_years``, ``death``; ``ph_time_years``, ``ph_status``
        with 0 censored, 1 pulmonary hypertension, 2 death first) and the true
        baseline biomarkers with a ``true_`` prefix.
    scans : pandas.DataFrame
        One row per CT scan: ``case_id``, ``patient_id``, ``scan_date``,
        ``scan_index`` (0 for baseline), scanner columns (``centre``,
        ``manufacturer``, ``model``, ``kernel``, ``contiguous``,
        ``slice_thickness_mm``, ``slice_interval_mm``), the phantom parameters
        that render the scan (``phantom_*``) and measured feature columns with
        the names of ``features.csv``.
    lung_function : pandas.DataFrame
        One row per visit: ``patient_id``, ``date``, ``years_from_baseline``,
        ``fvc_pct``, ``fvc_ml``, ``dlco_pct``.
    truth : dict
        The coefficients of the generative model.
    """

    patients: pd.DataFrame
    scans: pd.DataFrame
    lung_function: pd.DataFrame
    truth: dict[str, Any]

    def baseline_table(self) -> pd.DataFrame:
        """Return one row per patient: clinical data joined to the baseline scan.

        Returns
        -------
        pandas.DataFrame
            The patient table with the measured features of each patient's
            first scan (``scan_index == 0``).
        """
        baseline = self.scans[self.scans["scan_index"] == 0]
        feature_columns = [
            c for c in baseline.columns if c not in self.patients.columns
        ]
        return self.patients.merge(
            baseline[["patient_id", *feature_columns]], on="patient_id", how="left"
        )


def _standardise(values: np.ndarray) -> np.ndarray:
    return (values - values.mean()) / values.std()


def _weibull_times(
    rng: np.random.Generator, linear_predictor: np.ndarray, shape: float, scale: float
) -> np.ndarray:
    # Inverse of S(t) = exp(-(t / scale) ** shape * exp(lp))
    uniform = rng.uniform(size=linear_predictor.shape)
    return scale * (-np.log(uniform) * np.exp(-linear_predictor)) ** (1.0 / shape)


def _measured_features(
    rng: np.random.Generator,
    extent: np.ndarray,
    airway_ratio: np.ndarray,
    vessel_ml: np.ndarray,
    lung_ml: np.ndarray,
    profiles: list[dict[str, Any]],
    contiguous: np.ndarray,
) -> dict[str, np.ndarray]:
    """Features as a scanner would measure them, including centre effects."""
    n = extent.shape[0]
    hu_offset = np.array([p["hu_offset"] for p in profiles])
    sharp = np.array([p["kernel_style"] == "sharp" for p in profiles])
    extent_bias = np.array([p["extent_bias_pct"] for p in profiles])

    measured_extent = np.clip(extent + extent_bias + rng.normal(0, 1.0, n), 0, 100)
    haa = np.clip(4.0 + 0.6 * extent + 0.12 * hu_offset + rng.normal(0, 1.0, n), 0, 100)
    laa950 = np.clip(
        3.0 - 0.03 * extent - 0.08 * hu_offset + 2.5 * sharp + rng.gamma(2.0, 0.5, n),
        0,
        100,
    )
    mld = -860.0 + 4.0 * extent + hu_offset + rng.normal(0, 8, n)
    skewness = 2.6 - 0.045 * extent - 0.5 * sharp + rng.normal(0, 0.15, n)
    kurtosis = (9.0 - 0.16 * extent) * np.where(sharp, 0.6, 1.0) + rng.normal(0, 0.4, n)

    lung_left = lung_ml * rng.normal(0.46, 0.01, n)
    airway_intra = airway_ratio / 100.0 * lung_ml * rng.normal(1.0, 0.03, n)
    airway_total = airway_intra + rng.normal(55.0, 6.0, n)
    small_share = np.clip(0.42 - 0.004 * extent + rng.normal(0, 0.03, n), 0.05, 0.9)
    mid_share = np.clip(0.25 + rng.normal(0, 0.02, n), 0.05, 0.9)
    vessel_measured = vessel_ml * rng.normal(1.0, 0.04, n)

    features = {
        "lung_volume_ml": lung_ml,
        "lung_left_volume_ml": lung_left,
        "lung_right_volume_ml": lung_ml - lung_left,
        "airway_volume_ml": airway_total,
        "airway_intrapulmonary_volume_ml": airway_intra,
        "airway_lung_ratio_pct": 100.0 * airway_intra / lung_ml,
        "vessel_volume_ml": vessel_measured,
        "vessel_volume_csa_lt5_ml": vessel_measured * small_share,
        "vessel_volume_csa_5to10_ml": vessel_measured * mid_share,
        "vessel_volume_csa_gt10_ml": vessel_measured * (1 - small_share - mid_share),
        "vessel_lung_ratio_pct": 100.0 * vessel_measured / lung_ml,
        "fibrosis_extent_pct": measured_extent,
        "haa_pct": haa,
        "laa950_pct": laa950,
        "mld_hu": mld,
        "hist_skewness": skewness,
        "hist_kurtosis": kurtosis,
    }

    # Gapped HRCT cannot measure tree-dependent values: empty, never zero.
    for name in (
        "airway_volume_ml",
        "airway_intrapulmonary_volume_ml",
        "airway_lung_ratio_pct",
        "vessel_volume_ml",
        "vessel_volume_csa_lt5_ml",
        "vessel_volume_csa_5to10_ml",
        "vessel_volume_csa_gt10_ml",
        "vessel_lung_ratio_pct",
    ):
        features[name] = np.where(contiguous, features[name], np.nan)
    return features


def synthetic_cohort(
    n_patients: int = 200,
    *,
    n_centres: int = 3,
    repeat_fraction: float = 0.25,
    gapped_fraction: float = 0.15,
    seed: int = 0,
    n_visits: tuple[int, int] | None = None,
    centre_age_gap_years: float = 0.0,
) -> SyntheticCohort:
    """Draw a synthetic multi-centre SSc-ILD cohort with a known truth.

    Parameters
    ----------
    n_patients : int
        Number of patients.
    n_centres : int
        Number of centres, 1 to 5; each has its own scanner profile from
        :data:`CENTRE_PROFILES`.
    repeat_fraction : float
        Share of patients with a repeat CT scan, in [0, 1].
    gapped_fraction : float
        Share of scans that are gapped (incremental) HRCT, in [0, 1].
    seed : int
        Seed of the random generator; the same seed gives the same cohort.
    n_visits : tuple of int, optional
        ``(low, high)``: give every patient between ``low`` and ``high``
        lung-function visits (inclusive) at irregular 4- to 14-month intervals,
        not cut at death or censoring, for tables of a fixed size. By default
        visits stop at the end of follow-up (at most 12). The patients and
        scans do not depend on this argument.
    centre_age_gap_years : float
        Difference in mean age between successive centres (case mix). The
        default 0 gives the same cohort as before this option existed.

    Returns
    -------
    SyntheticCohort
        Patients, scans, lung-function visits and the generating truth.

    Raises
    ------
    RadsclError
        If an argument is out of range.
    """
    if n_patients < 1:
        raise RadsclError(f"n_patients must be at least 1, but found {n_patients}")
    if not 1 <= n_centres <= len(CENTRE_PROFILES):
        raise RadsclError(
            f"n_centres must be between 1 and {len(CENTRE_PROFILES)}, "
            f"but found {n_centres}"
        )
    for name, value in (
        ("repeat_fraction", repeat_fraction),
        ("gapped_fraction", gapped_fraction),
    ):
        if not 0.0 <= value <= 1.0:
            raise RadsclError(f"{name} must be in [0, 1], but found {value}")
    if n_visits is not None and not 1 <= n_visits[0] <= n_visits[1]:
        raise RadsclError(
            f"n_visits must be (low, high) with 1 <= low <= high, but found {n_visits}"
        )

    rng = np.random.default_rng(seed)
    patients = _draw_patients(rng, n_patients, n_centres, centre_age_gap_years)
    scans = _draw_scans(rng, patients, repeat_fraction, gapped_fraction)
    lung_function = _draw_lung_function(rng, patients, n_visits)

    logger.debug(
        "synthetic cohort: %d patients, %d scans, %d visits",
        len(patients),
        len(scans),
        len(lung_function),
    )
    truth = {
        **COHORT_TRUTH,
        "centres": [p["centre"] for p in CENTRE_PROFILES[:n_centres]],
    }
    return SyntheticCohort(patients, scans, lung_function, truth)


def _draw_patients(
    rng: np.random.Generator, n: int, n_centres: int, centre_age_gap_years: float = 0.0
) -> pd.DataFrame:
    centre_index = rng.integers(0, n_centres, n)
    # The shift is deterministic so that the default draws the same numbers.
    age_shift = (centre_index - (n_centres - 1) / 2) * centre_age_gap_years
    age = np.clip(rng.normal(55, 12, n) + age_shift, 20, 85)
    male = rng.uniform(size=n) < 0.18
    height_cm = np.where(male, rng.normal(176, 7, n), rng.normal(163, 6, n))

    extent = np.clip(rng.lognormal(np.log(12.0), 0.75, n), 0.0, 70.0)
    airway_ratio = np.clip(0.9 + 0.025 * extent + rng.normal(0, 0.2, n), 0.3, None)
    vessel_ml = np.clip(150.0 + 1.2 * extent + rng.normal(0, 25, n), 60, None)
    vessel_z = _standardise(vessel_ml)
    airway_z = _standardise(airway_ratio)

    fvc_pct = np.clip(100.0 - 0.7 * extent + rng.normal(0, 13, n), 30, 140)
    dlco_pct = np.clip(
        82.0 - 0.75 * extent - 6.0 * vessel_z + rng.normal(0, 12, n), 15, 130
    )
    fev1_pct = np.clip(fvc_pct * rng.normal(0.95, 0.06, n), 25, 140)
    predicted_fvc_ml = _predicted_fvc_ml(age, male, height_cm)
    fvc_ml = fvc_pct / 100.0 * predicted_fvc_ml
    lung_ml = np.clip(5200.0 * fvc_pct / 100.0 * predicted_fvc_ml / 3800.0, 2000, 8000)
    lung_ml = lung_ml * rng.normal(1.0, 0.08, n)

    truth = COHORT_TRUTH["death_log_hr"]
    death_lp = (
        truth["fibrosis_extent_pct"] * (extent - 15.0)
        + truth["airway_lung_ratio_pct_z"] * airway_z
        + truth["vessel_volume_ml_z"] * vessel_z
        + truth["age"] * (age - 55.0)
        + truth["male"] * male
    )
    death_time = _weibull_times(
        rng,
        death_lp,
        COHORT_TRUTH["death_weibull_shape"],
        COHORT_TRUTH["death_weibull_scale_years"],
    )
    ph_truth = COHORT_TRUTH["ph_log_hr"]
    ph_lp = ph_truth["vessel_volume_ml_z"] * vessel_z + ph_truth["dlco_pct"] * (
        dlco_pct - 60.0
    )
    ph_time = rng.exponential(
        1.0 / (COHORT_TRUTH["ph_baseline_rate_per_year"] * np.exp(ph_lp))
    )

    # Administrative censoring between 2 and 12 years, plus loss to follow-up.
    censor_time = np.minimum(rng.uniform(2.0, 12.0, n), rng.exponential(25.0, n))
    time_years = np.minimum(death_time, censor_time)
    death = (death_time <= censor_time).astype(int)
    ph_observed = np.minimum(ph_time, time_years)
    ph_status = np.where(ph_time <= time_years, 1, np.where(death == 1, 2, 0))

    baseline_date = [
        dt.date(1995, 1, 1) + dt.timedelta(days=int(d))
        for d in rng.integers(0, 8000, n)
    ]
    width = len(str(n))
    return pd.DataFrame(
        {
            "patient_id": [f"P{i + 1:0{width}d}" for i in range(n)],
            "centre": [CENTRE_PROFILES[i]["centre"] for i in centre_index],
            "age": np.round(age, 1),
            "sex": np.where(male, "M", "F"),
            "height_cm": np.round(height_cm, 1),
            "fvc_pct": np.round(fvc_pct, 1),
            "fvc_ml": np.round(fvc_ml, 0),
            "dlco_pct": np.round(dlco_pct, 1),
            "fev1_pct": np.round(fev1_pct, 1),
            "baseline_date": pd.to_datetime(baseline_date),
            "time_years": np.round(time_years, 3),
            "death": death,
            "ph_time_years": np.round(ph_observed, 3),
            "ph_status": ph_status,
            "true_fibrosis_extent_pct": extent,
            "true_airway_lung_ratio_pct": airway_ratio,
            "true_vessel_volume_ml": vessel_ml,
            "true_lung_volume_ml": lung_ml,
            "true_fvc_slope_pct_per_year": np.nan,
        }
    )


def _predicted_fvc_ml(
    age: np.ndarray, male: np.ndarray, height_cm: np.ndarray
) -> np.ndarray:
    """A simple linear reference equation for FVC (litres to ml).

    Adequate for synthetic data only; real analyses use GLI-2012 predictions
    from the lung-function laboratory.
    """
    litres = np.where(
        male,
        0.0576 * height_cm - 0.0269 * age - 4.34,
        0.0443 * height_cm - 0.0260 * age - 2.89,
    )
    return np.clip(litres, 1.5, None) * 1000.0


def _draw_scans(
    rng: np.random.Generator,
    patients: pd.DataFrame,
    repeat_fraction: float,
    gapped_fraction: float,
) -> pd.DataFrame:
    n = len(patients)
    airway_z = _standardise(patients["true_airway_lung_ratio_pct"].to_numpy())
    vessel_z = _standardise(patients["true_vessel_volume_ml"].to_numpy())
    has_repeat = rng.uniform(size=n) < repeat_fraction
    progression_rate = COHORT_TRUTH["extent_progression_pct_per_year"]

    rows = []
    for i, patient in enumerate(patients.itertuples(index=False)):
        profile = next(p for p in CENTRE_PROFILES if p["centre"] == patient.centre)
        n_scans = 2 if has_repeat[i] else 1
        interval_years = rng.uniform(1.0, 3.0)
        for scan_index in range(n_scans):
            years = interval_years * scan_index
            if scan_index == 1 and years > patient.time_years:
                break
            rate = max(
                progression_rate["intercept"]
                + progression_rate["airway_lung_ratio_pct_z"] * airway_z[i]
                + rng.normal(0, 0.5),
                0.0,
            )
            extent = min(patient.true_fibrosis_extent_pct + rate * years, 70.0)
            airway_ratio = patient.true_airway_lung_ratio_pct + 0.025 * rate * years
            gapped = rng.uniform() < gapped_fraction
            rows.append(
                {
                    "case_id": f"{patient.patient_id}_S{scan_index + 1}",
                    "patient_id": patient.patient_id,
                    "scan_index": scan_index,
                    "scan_date": patient.baseline_date
                    + pd.Timedelta(days=round(365.25 * years)),
                    "years_from_baseline": round(years, 3),
                    "centre": patient.centre,
                    "manufacturer": profile["manufacturer"],
                    "model": profile["model"],
                    "kernel": profile["kernel"],
                    "contiguous": not gapped,
                    "slice_thickness_mm": 1.0,
                    "slice_interval_mm": 10.0 if gapped else 1.0,
                    "phantom_fibrosis_pct": round(extent, 2),
                    "phantom_airway_dilation": round(
                        1.0 + max(airway_ratio - 0.9, 0.0) * 0.35, 3
                    ),
                    "phantom_vessel_scale": round(1.0 + 0.08 * vessel_z[i], 3),
                    "phantom_kernel_style": profile["kernel_style"],
                    "phantom_hu_offset": profile["hu_offset"],
                    "phantom_noise_hu": profile["noise_hu"],
                    "phantom_seed": int(rng.integers(0, 2**31 - 1)),
                    "_extent": extent,
                    "_airway_ratio": airway_ratio,
                    "_vessel_ml": patient.true_vessel_volume_ml * (1 + 0.01 * years),
                    "_lung_ml": patient.true_lung_volume_ml * (1 - 0.01 * rate * years),
                    "_profile": profile,
                }
            )

    scans = pd.DataFrame(rows)
    features = _measured_features(
        rng,
        scans["_extent"].to_numpy(),
        scans["_airway_ratio"].to_numpy(),
        scans["_vessel_ml"].to_numpy(),
        scans["_lung_ml"].to_numpy(),
        list(scans["_profile"]),
        scans["contiguous"].to_numpy(),
    )
    scans = scans.drop(columns=[c for c in scans.columns if c.startswith("_")])
    for name, values in features.items():
        scans[name] = np.round(values, 4)
    return scans


def _draw_lung_function(
    rng: np.random.Generator,
    patients: pd.DataFrame,
    n_visits: tuple[int, int] | None = None,
) -> pd.DataFrame:
    airway_z = _standardise(patients["true_airway_lung_ratio_pct"].to_numpy())
    slope_truth = COHORT_TRUTH["fvc_slope_pct_per_year"]
    slopes = (
        slope_truth["intercept"]
        + slope_truth["airway_lung_ratio_pct_z"] * airway_z
        + rng.normal(0, COHORT_TRUTH["fvc_random_slope_sd"], len(patients))
    )
    patients["true_fvc_slope_pct_per_year"] = slopes
    predicted_ml = patients["fvc_ml"] / (patients["fvc_pct"] / 100.0)

    rows = []
    for i, patient in enumerate(patients.itertuples(index=False)):
        # Irregular visits roughly every 4 to 14 months during follow-up.
        visit_years = [0.0]
        if n_visits is None:
            while True:
                next_visit = visit_years[-1] + rng.uniform(0.33, 1.2)
                if next_visit > patient.time_years or len(visit_years) >= 12:
                    break
                visit_years.append(next_visit)
        else:
            wanted = int(rng.integers(n_visits[0], n_visits[1] + 1))
            while len(visit_years) < wanted:
                visit_years.append(visit_years[-1] + rng.uniform(0.33, 1.2))
        dlco_slope = 0.8 * slopes[i] + rng.normal(0, 0.8)
        for years in visit_years:
            fvc_pct = (
                patient.fvc_pct
                + slopes[i] * years
                + rng.normal(0, COHORT_TRUTH["fvc_visit_noise_sd"]) * (years > 0)
            )
            dlco_pct = (
                patient.dlco_pct + dlco_slope * years + rng.normal(0, 3.0) * (years > 0)
            )
            rows.append(
                {
                    "patient_id": patient.patient_id,
                    "date": patient.baseline_date
                    + pd.Timedelta(days=round(365.25 * years)),
                    "years_from_baseline": round(years, 3),
                    "fvc_pct": round(max(fvc_pct, 15.0), 1),
                    "fvc_ml": round(
                        max(fvc_pct, 15.0) / 100.0 * predicted_ml.iloc[i], 0
                    ),
                    "dlco_pct": round(max(dlco_pct, 5.0), 1),
                }
            )
    return pd.DataFrame(rows)
