import numpy as np, time, cProfile, pstats
from radscl.phantom import synthetic_cohort
from radscl.models.comparison import compare_models
t=synthetic_cohort(1000, seed=0).baseline_table()
t["noise"]=np.random.default_rng(0).normal(size=len(t))
compare_models(t.iloc[:200],time="time_years",event="death",baseline=["fvc_pct"],biomarkers=["noise"],estimators=["cox"],n_bootstrap=20,n_jobs=1,repeats=1,biomarkers_alone=False)
cProfile.run('compare_models(t,time="time_years",event="death",baseline=["fvc_pct"],biomarkers=["fibrosis_extent_pct","noise"],estimators=["cox"],n_bootstrap=50,n_jobs=1,repeats=2,biomarkers_alone=False)','/tmp/prof')
pstats.Stats('/tmp/prof').sort_stats('cumtime').print_stats(25)
