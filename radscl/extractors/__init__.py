"""Feature extractors: lung, airway, vessel, fibrosis and radiomics features."""
