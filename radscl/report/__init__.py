"""Pictures and the self-contained HTML report.

:mod:`radscl.report.plots` draws survival figures with matplotlib's Agg
canvas (no display, no global pyplot state); :mod:`radscl.report.html` builds
one HTML file with every picture embedded, so a report can be mailed or
archived as it is.
"""
