"""QC pictures, plots and the self-contained HTML report."""
