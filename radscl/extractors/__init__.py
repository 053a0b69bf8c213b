"""Feature extractors: lung, airway, vessel, fibrosis and density, radiomics.

Each extractor takes a scan and the masks it needs and returns a flat mapping
of feature names (as in ``features.csv``) to numbers.
"""
