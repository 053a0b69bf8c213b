"""pyradiomics features for named regions of a chest CT scan.

:func:`extract_radiomics` runs pyradiomics on each region of interest of a
:class:`~radscl.io.Scan` (whole lung, parenchyma, zones, fibrotic region; the
names are the caller's) and returns one flat dictionary whose keys are
pyradiomics' own feature names prefixed with ``rad_<mask>_``, for example
``rad_parenchyma_original_glcm_Contrast``. pyradiomics' diagnostic entries are
not features and are left out.

Parameters come in pyradiomics' own YAML format (``imageType``,
``featureClass``, ``setting``), so a file written for pyradiomics works here
unchanged. It is checked before any image is touched: an unknown key, feature
class, feature or image type, or an ill-typed value, is a
:class:`~radscl.errors.ParameterError` whose one-line message names the file
and the key. Without a file, ``params/radiomics_lung.yaml`` is used, which
explains each of its choices in comments.

Speed
-----
pyradiomics' defaults (every feature class on the original image at native
resolution) are slow on whole-lung masks; see docs/radiomics.md for the
measurements. The default lung configuration is faster for three reasons, in
order of weight:

- texture is computed on 2 mm isotropic voxels (16 times fewer voxels than a
  0.7 x 0.7 x 1 mm scan), at the price of texture finer than about 2 mm;
- shape features are off (the maximum 3D diameter compares all mesh vertex
  pairs; lung volumes come from the lung extractor at native resolution);
- only the region's neighbourhood is handed to pyradiomics, resampled here
  on exactly the grid pyradiomics would use for the whole scan (anchored at
  the scan's corner, ``padDistance`` voxels around the region), and
  pyradiomics' diagnostics are switched off, which saves memory and seconds
  per region without changing the features.

Empty regions and regions pyradiomics rejects as too small give NaN features
with the reason logged. Any other failure raises :class:`RadiomicsError`
naming the region and the scan (by case id or file name, never by a DICOM
identifier).

Logging
-------
pyradiomics attaches a stderr handler to its ``radiomics`` logger when it is
imported. Importing this module replaces that handler with one that hands
pyradiomics' records to ``radscl.extractors.radiomics.pyradiomics``, one level
quieter: pyradiomics' INFO and DEBUG become DEBUG, its advisory warnings
(such as "GLCM is symmetrical, therefore Sum Average = 2 * Joint Average")
become INFO, errors stay errors. The root logger is not touched. Numerical
warnings raised inside pyradiomics (division by zero on one-grey-level
regions) are logged at DEBUG instead of being printed.

Known shortcomings
------------------
With B-spline interpolation the features agree with pyradiomics run on the
whole scan to about 1e-6 (relative) rather than exactly, because the
B-spline prefilter reaches beyond the neighbourhood that is cut out.
Filtered image types (LoG, wavelet) and ``normalize`` look at the whole scan,
so with them the whole scan is handed over and nothing is saved.
Interpolated CT numbers are kept as floats: neither truncated (as pyradiomics
does for integer images) nor rounded (as IBSI prescribes). The mask is
resampled by nearest neighbour, as in pyradiomics; IBSI interpolates it
linearly (see docs/radiomics.md for what this does to the IBSI check).
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import functools
import json
import logging
import math
import os
import re
import time
import traceback
import warnings
from collections.abc import Iterator
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pykwalify.core
import pykwalify.errors
import radiomics
import SimpleITK as sitk
import yaml
from radiomics import featureextractor

from radscl.errors import ParameterError
from radscl.errors import ScanError
from radscl.extract.params import params_dir
from radscl.io import Scan

logger = logging.getLogger(__name__)

#: File name of the default lung configuration in ``params/``.
DEFAULT_PARAMS_NAME = "radiomics_lung.yaml"

#: Prefix of every radiomics column.
COLUMN_PREFIX = "rad_"

_SECTIONS = ("imageType", "featureClass", "setting", "voxelSetting")
_MASK_NAME = re.compile(r"^[A-Za-z0-9]+(?:_[A-Za-z0-9]+)*$")

# Settings radscl decides for itself: masks are handed over as 0/1 images,
# and diagnostics are not features (radscl records its own provenance).
_FORCED_SETTINGS = {"label": 1, "additionalInfo": False}

# pyradiomics functions whose ValueError means "this region cannot be used",
# as opposed to a failure while computing features.
_ROI_CHECKS = frozenset({"checkMask", "_checkROI", "resegmentMask", "resampleImage"})


class RadiomicsError(RuntimeError):
    """pyradiomics failed on a region for a reason other than its size."""


# --- logging -----------------------------------------------------------------

_pyradiomics_log = logging.getLogger(f"{__name__}.pyradiomics")


class _ForwardToRadscl(logging.Handler):
    """Hand pyradiomics' log records to radscl's logger, one level quieter."""

    def emit(self, record: logging.LogRecord) -> None:
        level = _quieter(record.levelno)
        if not _pyradiomics_log.isEnabledFor(level):
            return
        forwarded = logging.makeLogRecord(record.__dict__)
        forwarded.name = _pyradiomics_log.name
        forwarded.levelno = level
        forwarded.levelname = logging.getLevelName(level)
        _pyradiomics_log.handle(forwarded)


def _quieter(levelno: int) -> int:
    if levelno >= logging.ERROR:
        return levelno
    if levelno >= logging.WARNING:
        return logging.INFO
    return logging.DEBUG


def _route_pyradiomics_logging() -> None:
    pyradiomics_logger = logging.getLogger("radiomics")
    stderr_handler = getattr(radiomics, "handler", None)
    if stderr_handler is not None:
        pyradiomics_logger.removeHandler(stderr_handler)

    # pyradiomics reuses its first handler for pykwalify when nothing else is
    # configured, so the forwarder has to be a handler of its logger, not a
    # filter somewhere else.
    if not any(isinstance(h, _ForwardToRadscl) for h in pyradiomics_logger.handlers):
        pyradiomics_logger.addHandler(_ForwardToRadscl())
    pyradiomics_logger.propagate = False


_route_pyradiomics_logging()


@contextlib.contextmanager
def _silent_pykwalify() -> Iterator[None]:
    # pykwalify logs every validation error at ERROR before raising; with no
    # handler configured Python would print it. The raised error is enough.
    pykwalify_logger = logging.getLogger("pykwalify")
    children = [pykwalify_logger, logging.getLogger("pykwalify.core")]
    before = [child.disabled for child in children]
    for child in children:
        child.disabled = True
    try:
        with warnings.catch_warnings():
            # pykwalify loads pyradiomics' schema functions with importlib's
            # deprecated load_module(); nothing a user can act on.
            warnings.filterwarnings(
                "ignore", message="the load_module", category=DeprecationWarning
            )
            yield
    finally:
        for child, was_disabled in zip(children, before, strict=True):
            child.disabled = was_disabled


# --- parameters --------------------------------------------------------------


def default_params_path() -> Path:
    """Return the path of the default lung configuration."""
    return params_dir() / DEFAULT_PARAMS_NAME


def load_params(
    params: str | os.PathLike[str] | Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Read and validate a pyradiomics parameter file or dictionary.

    Parameters
    ----------
    params : path, mapping or None
        A YAML (or JSON) file in pyradiomics' format, the same structure as a
        mapping, or None for radscl's default lung configuration.

    Returns
    -------
    dict
        The validated parameters, with empty sections removed and empty image
        type entries turned into ``{}``.

    Raises
    ------
    ParameterError
        When the file is missing or unreadable, or has an unknown key or an
        ill-typed value; the message is one line naming the file and the key.
    """
    if params is None:
        params = default_params_path()

    if isinstance(params, Mapping):
        source = "radiomics parameters"
        data: Any = copy.deepcopy(dict(params))
    else:
        path = Path(params)
        source = str(path)
        if not path.is_file():
            raise ParameterError(f"{source}: radiomics parameter file not found")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            first_line = str(error).strip().splitlines()[0]
            raise ParameterError(f"{source}: not a YAML file ({first_line})") from None

    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ParameterError(
            f"{source}: expected a mapping with keys imageType, featureClass and "
            f"setting, found {type(data).__name__}"
        )

    _check_keys(data, source)
    data = _normalise(data)
    _check_values(data, source)
    return data


def _check_keys(data: dict[str, Any], source: str) -> None:
    _check_known(data, _SECTIONS, "the top level", source)

    setting_keys, voxel_keys = _schema_setting_keys()
    for section, allowed in (("setting", setting_keys), ("voxelSetting", voxel_keys)):
        entries = _section(data, section, source)
        _check_known(entries, allowed, f"'{section}'", source)

    image_types = _section(data, "imageType", source)
    _check_known(image_types, radiomics.getImageTypes(), "'imageType'", source)
    for image_type, custom in image_types.items():
        if custom is None:
            continue
        if not isinstance(custom, dict):
            raise ParameterError(
                f"{source}: imageType '{image_type}' must map settings to values, "
                f"found {type(custom).__name__}"
            )
        _check_known(custom, setting_keys, f"imageType '{image_type}'", source)

    classes = radiomics.getFeatureClasses()
    feature_classes = _section(data, "featureClass", source)
    _check_known(feature_classes, classes, "'featureClass'", source)
    for class_name, features in feature_classes.items():
        if features is None:
            continue
        if not isinstance(features, list):
            raise ParameterError(
                f"{source}: featureClass '{class_name}' must be a list of feature "
                f"names or empty, found {type(features).__name__}"
            )
        allowed = classes[class_name].getFeatureNames()
        _check_known(
            {str(f): None for f in features},
            allowed,
            f"featureClass '{class_name}'",
            source,
            what="feature",
        )


def _section(data: dict[str, Any], section: str, source: str) -> dict[str, Any]:
    entries = data.get(section)
    if entries is None:
        return {}
    if not isinstance(entries, dict):
        raise ParameterError(
            f"{source}: '{section}' must be a mapping, found {type(entries).__name__}"
        )
    return entries


def _check_known(
    entries: Mapping[str, Any],
    allowed: Any,
    where: str,
    source: str,
    what: str = "key",
) -> None:
    allowed_names = [str(name) for name in allowed]
    for key in entries:
        if key in allowed_names:
            continue
        close = difflib.get_close_matches(str(key), allowed_names, n=1, cutoff=0.6)
        if close:
            hint = f" (did you mean '{close[0]}'?)"
        elif len(allowed_names) <= 12:
            hint = f" (expected one of {', '.join(sorted(allowed_names))})"
        else:
            hint = ""
        raise ParameterError(f"{source}: unknown {what} '{key}' in {where}{hint}")


@functools.cache
def _schema_setting_keys() -> tuple[frozenset[str], frozenset[str]]:
    schema_file, _ = radiomics.getParameterValidationFiles()
    with open(schema_file, encoding="utf-8") as handle:
        schema = yaml.safe_load(handle)
    mapping = schema["mapping"]
    return (
        frozenset(mapping["setting"]["mapping"]),
        frozenset(mapping["voxelSetting"]["mapping"]),
    )


def _normalise(data: dict[str, Any]) -> dict[str, Any]:
    normalised = {key: value for key, value in data.items() if value is not None}
    if "imageType" in normalised:
        normalised["imageType"] = {
            name: ({} if custom is None else custom)
            for name, custom in normalised["imageType"].items()
        }
    return normalised


def _check_values(data: dict[str, Any], source: str) -> None:
    schema_file, schema_functions = radiomics.getParameterValidationFiles()
    try:
        with _silent_pykwalify():
            core = pykwalify.core.Core(
                source_data=data,
                schema_files=[schema_file],
                extensions=[schema_functions],
            )
            core.validate(raise_exception=True)
    except pykwalify.errors.SchemaError:
        problems = core.validation_errors or ["invalid value"]
        raise ParameterError(f"{source}: {_describe(problems[0])}") from None
    except (ValueError, TypeError) as error:
        message = " ".join(str(error).split())
        raise ParameterError(f"{source}: {message}") from None


def _describe(problem: str) -> str:
    # pykwalify: "Value 'a' is not of type 'float'. Path: '/setting/binWidth'"
    match = re.match(r"^(?P<what>.*?)\.? Path: '(?P<path>[^']*)'", str(problem))
    if match is None:
        return " ".join(str(problem).split())
    what = match["what"]
    where = match["path"].strip("/")
    return f"{where}: {what[0].lower()}{what[1:]}" if where else what


# --- extraction --------------------------------------------------------------


def extract_radiomics(
    scan: Scan,
    masks: Mapping[str, np.ndarray],
    params: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    *,
    case_id: str | None = None,
) -> dict[str, float]:
    """Extract pyradiomics features for named regions of a scan.

    Parameters
    ----------
    scan : radscl.io.Scan
        The CT scan; ``hounsfield`` is ``[z, y, x]``.
    masks : mapping of str to numpy.ndarray
        Region name (letters, digits and single underscores, e.g.
        ``"parenchyma"`` or ``"zone_lower"``) to a boolean or label array of
        the scan's shape; every non-zero voxel belongs to the region.
    params : path, mapping or None
        pyradiomics parameters (see :func:`load_params`); radscl's default lung
        configuration when None. ``label`` and ``additionalInfo`` are set by
        radscl and ignored here.
    case_id : str, optional
        How to name the scan in log messages and errors; the file name of
        ``scan.source`` when omitted.

    Returns
    -------
    dict of str to float
        ``rad_<mask>_<pyradiomics feature name>`` for every region and every
        feature the parameters enable, in the order of ``masks``. The features
        of an empty region, or of one pyradiomics rejects (too small, too few
        dimensions, nothing left after re-segmentation), are NaN and the
        reason is logged.

    Raises
    ------
    ParameterError
        Bad parameters, or a region name unfit for a column name.
    ScanError
        A mask whose shape differs from the scan's.
    RadiomicsError
        pyradiomics failed on a region for another reason; the message names
        the region and the scan.
    """
    scan_name = _scan_name(scan, case_id)
    config = load_params(params)
    _check_masks(scan, masks, scan_name)
    extractors = _Extractors(config)

    per_mask: dict[str, dict[str, float] | None] = {}
    for mask_name, mask in masks.items():
        per_mask[mask_name] = _extract_region(
            extractors, scan, mask_name, mask, scan_name
        )

    names: list[str] | None = None
    for values in per_mask.values():
        if values is not None:
            names = list(values)
            break
    if names is None and per_mask:
        names = radiomics_feature_names(config)

    columns: dict[str, float] = {}
    for mask_name, values in per_mask.items():
        for feature in names or []:
            value = math.nan if values is None else values.get(feature, math.nan)
            columns[f"{COLUMN_PREFIX}{mask_name}_{feature}"] = value
    return columns


def radiomics_feature_names(
    params: str | os.PathLike[str] | Mapping[str, Any] | None = None,
) -> list[str]:
    """Return the pyradiomics feature names a configuration produces.

    The names are those of a run on a small synthetic region, so they follow
    pyradiomics exactly (filtered image names included). Useful to build
    empty columns for scans where radiomics cannot run.

    Parameters
    ----------
    params : path, mapping or None
        As for :func:`extract_radiomics`.

    Returns
    -------
    list of str
        Feature names without the ``rad_<mask>_`` prefix, in pyradiomics'
        order.
    """
    config = load_params(params)
    return list(_feature_names(json.dumps(config)))


@functools.lru_cache(maxsize=16)
def _feature_names(config_json: str) -> tuple[str, ...]:
    config = json.loads(config_json)
    settings = config.get("setting", {})
    spacing = [
        float(s) if s else 1.0 for s in settings.get("resampledPixelSpacing") or []
    ]
    spacing_xyz = tuple(spacing) if len(spacing) == 3 else (1.0, 1.0, 1.0)

    # Grey values inside any absolute re-segmentation range, so that the region
    # survives it; a ball of radius 12 voxels on the target grid.
    low, high = -1000.0, 200.0
    reseg = settings.get("resegmentRange")
    if reseg and settings.get("resegmentMode", "absolute") == "absolute":
        low = float(min(reseg))
        high = float(max(reseg)) if len(reseg) == 2 else low + 1000.0
    rng = np.random.default_rng(0)
    hounsfield = rng.uniform(low, high, size=(32, 32, 32)).astype(np.float32)
    z, y, x = np.ogrid[:32, :32, :32]
    ball = ((z - 15.5) ** 2 + (y - 15.5) ** 2 + (x - 15.5) ** 2) < 12.0**2

    image = sitk.GetImageFromArray(hounsfield)
    image.SetSpacing(spacing_xyz)
    mask = sitk.GetImageFromArray(ball.astype(np.uint8))
    mask.CopyInformation(image)

    extractor = _make_extractor(
        config, minimumROISize=None, minimumROIDimensions=1, resampledPixelSpacing=None
    )
    try:
        with _numerical_warnings_logged("feature names", "synthetic region"):
            result = extractor.execute(image, mask)
    except Exception as error:
        raise RadiomicsError(
            "pyradiomics could not list the features of these parameters on a "
            f"synthetic region: {type(error).__name__}: {_one_line(error)}"
        ) from error
    return tuple(name for name in result if not name.startswith("diagnostics_"))


def _make_extractor(
    config: dict[str, Any], **overrides: Any
) -> featureextractor.RadiomicsFeatureExtractor:
    user_settings = config.get("setting", {})
    for key, value in _FORCED_SETTINGS.items():
        if key in user_settings and user_settings[key] != value:
            logger.debug(
                "radiomics setting %s=%r is ignored (radscl uses %r)",
                key,
                user_settings[key],
                value,
            )
    with _silent_pykwalify():
        return featureextractor.RadiomicsFeatureExtractor(
            copy.deepcopy(config), **{**_FORCED_SETTINGS, **overrides}
        )


def _scan_name(scan: Scan, case_id: str | None) -> str:
    if case_id:
        return str(case_id)
    source = str(getattr(scan, "source", "") or "")
    return Path(source).name or "unnamed scan"


def _check_masks(scan: Scan, masks: Mapping[str, np.ndarray], scan_name: str) -> None:
    shape = tuple(scan.hounsfield.shape)
    for mask_name, mask in masks.items():
        if not isinstance(mask_name, str) or not _MASK_NAME.match(mask_name):
            raise ParameterError(
                f"mask name {mask_name!r} cannot be part of a column name: use "
                "letters and digits, joined by single underscores"
            )
        mask_shape = tuple(np.shape(mask))
        if mask_shape != shape:
            raise ScanError(
                f"{scan_name}: mask '{mask_name}' has shape {mask_shape}, "
                f"the scan has {shape}"
            )


class _Extractors:
    """pyradiomics extractors for one configuration, made when first needed."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self._as_configured: featureextractor.RadiomicsFeatureExtractor | None = None
        self._on_resampled: featureextractor.RadiomicsFeatureExtractor | None = None

    def get(self, resampled: bool) -> featureextractor.RadiomicsFeatureExtractor:
        """The extractor as configured, or one for images radscl resampled."""
        if not resampled:
            if self._as_configured is None:
                self._as_configured = _make_extractor(self.config)
            return self._as_configured
        if self._on_resampled is None:
            self._on_resampled = _make_extractor(
                self.config, resampledPixelSpacing=None
            )
        return self._on_resampled


def _extract_region(
    extractors: _Extractors,
    scan: Scan,
    mask_name: str,
    mask: np.ndarray,
    scan_name: str,
) -> dict[str, float] | None:
    in_region = np.asarray(mask) != 0
    n_voxels = int(np.count_nonzero(in_region))
    if n_voxels == 0:
        logger.info(
            "radiomics features of mask '%s' in scan '%s' are empty: the mask is empty",
            mask_name,
            scan_name,
        )
        return None

    start = time.perf_counter()
    image, label_image, resampled = _region_images(scan, in_region, extractors.config)
    extractor = extractors.get(resampled)
    try:
        with _numerical_warnings_logged(mask_name, scan_name):
            result = extractor.execute(image, label_image)
    except ValueError as error:
        if not _raised_by_roi_check(error):
            raise RadiomicsError(
                f"pyradiomics failed on mask '{mask_name}' of scan '{scan_name}': "
                f"{type(error).__name__}: {_one_line(error)}"
            ) from error
        logger.warning(
            "radiomics features of mask '%s' in scan '%s' are empty: pyradiomics "
            "rejected the region of %d voxels (%s)",
            mask_name,
            scan_name,
            n_voxels,
            _one_line(error),
        )
        return None
    except Exception as error:
        raise RadiomicsError(
            f"pyradiomics failed on mask '{mask_name}' of scan '{scan_name}': "
            f"{type(error).__name__}: {_one_line(error)}"
        ) from error

    logger.debug(
        "radiomics on mask '%s' of scan '%s': %d voxels in %.1f s",
        mask_name,
        scan_name,
        n_voxels,
        time.perf_counter() - start,
    )
    return {
        name: float(value)
        for name, value in result.items()
        if not name.startswith("diagnostics_")
    }


def _region_images(
    scan: Scan, in_region: np.ndarray, config: dict[str, Any]
) -> tuple[sitk.Image, sitk.Image, bool]:
    """The image and 0/1 label image pyradiomics gets for one region.

    Returns the two images and whether they are already resampled. The result
    is what pyradiomics computes from the whole scan, made from the region's
    neighbourhood only: pyradiomics converts the whole mask to 32-bit labels
    and scans it several times, which costs more than the features of a small
    region.
    """
    settings = config.get("setting", {})
    shape = in_region.shape
    if set(config.get("imageType", {"Original": {}})) != {"Original"} or settings.get(
        "normalize"
    ):
        # filters and normalisation look at the whole scan
        whole = tuple(slice(0, n) for n in shape)
        return (*_to_images(scan, in_region, whole), False)

    first, last = _bounding_box(in_region)
    interpolator = settings.get("interpolator", "sitkBSpline")
    grid = None
    if settings.get("resampledPixelSpacing") and interpolator is not None:
        grid = _resampling_grid(scan, first, last, settings)
    if grid is None:
        # pyradiomics crops to the bounding box (plus padDistance when its
        # resampling turns out to be a no-op) and looks no further
        pad = int(settings.get("padDistance", 5))
        window = tuple(
            slice(max(lo - pad, 0), min(hi + pad + 1, n))
            for lo, hi, n in zip(first, last, shape, strict=True)
        )
        return (*_to_images(scan, in_region, window), False)

    origin_xyz, size_xyz, spacing_xyz, support = grid
    method = _sitk_interpolator(interpolator)
    # beyond linear, interpolation kernels (and the B-spline prefilter, whose
    # weight falls by 0.27 per voxel) reach further than one voxel
    margin = 1 if method in (sitk.sitkNearestNeighbor, sitk.sitkLinear) else 16
    window = tuple(
        slice(max(lo - margin, 0), min(hi + margin + 1, n))
        for lo, hi, n in zip(support[0], support[1], shape, strict=True)
    )
    image, label_image = _to_images(scan, in_region, window)
    output = (
        [int(n) for n in size_xyz],
        sitk.Transform(),
        method,
        origin_xyz.tolist(),
        spacing_xyz.tolist(),
        list(scan.direction),
    )
    resampled_image = sitk.Resample(image, *output, 0.0, image.GetPixelID())
    output = (output[0], output[1], sitk.sitkNearestNeighbor, *output[3:])
    resampled_label = sitk.Resample(label_image, *output, 0.0, label_image.GetPixelID())
    return resampled_image, resampled_label, True


def _resampling_grid(
    scan: Scan, first: np.ndarray, last: np.ndarray, settings: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]] | None:
    """The grid pyradiomics resamples a region to, or None if it would not.

    pyradiomics covers the region's bounding box plus ``padDistance`` new
    voxels with a grid whose corner is the scan's corner, keeps the spacing
    of axes the region spans in one slice, and skips interpolation when the
    spacing does not change. Returns the grid's origin, size and spacing (x,
    y, z) and the first and last source voxel (z, y, x) it samples between.
    """
    spacing = np.asarray(scan.spacing_mm, dtype=float)[::-1]
    scan_size = np.asarray(scan.hounsfield.shape)[::-1]
    low = np.asarray(first)[::-1].astype(float)
    size = (np.asarray(last) - np.asarray(first) + 1)[::-1]

    target = np.asarray(settings["resampledPixelSpacing"], dtype=float)
    target = np.where(target == 0, spacing, target)
    target = np.where(size != 1, target, spacing)
    if np.allclose(spacing, target):
        return None

    pad = int(settings.get("padDistance", 5))
    ratio = spacing / target
    lower = np.maximum(np.floor((low - 0.5) * ratio - pad), 0)
    upper = np.minimum(
        np.ceil((low + size - 0.5) * ratio + pad), np.ceil(scan_size * ratio) - 1
    )
    new_size = (upper - lower + 1).astype(int)

    # continuous source index of the first new voxel centre
    start = 0.5 * (target - spacing) / spacing + lower / ratio
    end = start + (new_size - 1) / ratio
    direction = np.asarray(scan.direction, dtype=float).reshape(3, 3)
    origin = np.asarray(scan.origin_mm, dtype=float) + direction @ (start * spacing)
    support = (
        np.floor(start).astype(int)[::-1],
        np.ceil(end).astype(int)[::-1],
    )
    return origin, new_size, target, support


def _sitk_interpolator(value: Any) -> int:
    if isinstance(value, str):
        return int(getattr(sitk, value))
    return int(value)


def _bounding_box(in_region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last index (z, y, x) of a non-empty region."""
    first = np.empty(3, dtype=int)
    last = np.empty(3, dtype=int)
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        present = np.flatnonzero(np.any(in_region, axis=others))
        first[axis], last[axis] = present[0], present[-1]
    return first, last


def _to_images(
    scan: Scan, in_region: np.ndarray, window: tuple[slice, ...]
) -> tuple[sitk.Image, sitk.Image]:
    """SimpleITK image and 0/1 label image of a window of the scan."""
    # float32 so that interpolated CT numbers are not truncated to integers
    image = sitk.Cast(sitk.GetImageFromArray(scan.hounsfield[window]), sitk.sitkFloat32)
    spacing_xyz = np.asarray(scan.spacing_mm, dtype=float)[::-1]
    direction = np.asarray(scan.direction, dtype=float).reshape(3, 3)
    corner_xyz = np.asarray([w.start for w in window], dtype=float)[::-1]
    origin = np.asarray(scan.origin_mm, dtype=float) + direction @ (
        corner_xyz * spacing_xyz
    )
    image.SetSpacing(tuple(spacing_xyz.tolist()))
    image.SetOrigin(tuple(origin.tolist()))
    image.SetDirection(tuple(direction.ravel().tolist()))

    label_image = sitk.GetImageFromArray(in_region[window].view(np.uint8))
    label_image.CopyInformation(image)
    return image, label_image


def _raised_by_roi_check(error: BaseException) -> bool:
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return False
    last = frames[-1]
    return last.name in _ROI_CHECKS and Path(last.filename).name == "imageoperations.py"


@contextlib.contextmanager
def _numerical_warnings_logged(mask_name: str, scan_name: str) -> Iterator[None]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        yield
    for warning in caught:
        if issubclass(warning.category, RuntimeWarning):
            logger.debug(
                "pyradiomics on mask '%s' of scan '%s': %s",
                mask_name,
                scan_name,
                warning.message,
            )
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())
