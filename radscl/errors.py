"""Exception and warning types raised by radscl.

Every error caused by bad input subclasses :class:`RadsclError`, itself a
:class:`ValueError`, so callers can catch the whole family or one kind. The
message names the offending file, column or parameter and says what was
expected and what was found.
"""


class RadsclError(ValueError):
    """Bad input to radscl: a scan, a table or a parameter it cannot use."""


class ScanError(RadsclError):
    """A scan cannot be loaded or is not a usable chest CT."""


class DataError(RadsclError):
    """A table (features, clinical data, manifest) is missing or malformed."""


class ParameterError(RadsclError):
    """A parameter file or option has an unknown key or an ill-typed value."""


class SegmentationError(RadsclError):
    """A segmentation step could not find the anatomy it needs."""


class RadsclWarning(UserWarning):
    """Base class of warnings issued by radscl."""
