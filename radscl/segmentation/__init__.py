"""Classical segmentation of chest CT: body, lungs, airways, vessels and zones.

Every mask lives on the scan's own grid (``[z, y, x]``, LPS). The combined label
map that radscl writes (``labels.nii.gz``) uses :data:`LABELS`.
"""

#: Values of the combined anatomical label map.
LABELS: dict[int, str] = {
    0: "background",
    1: "right lung",
    2: "left lung",
    3: "trachea and main bronchi",
    4: "airway lumen",
    5: "airway wall",
    6: "vessel",
}

RIGHT_LUNG = 1
LEFT_LUNG = 2
TRACHEA = 3
AIRWAY_LUMEN = 4
AIRWAY_WALL = 5
VESSEL = 6
