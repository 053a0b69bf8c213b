"""Shared fixtures: paths to the optional real data and cached phantoms."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(
    os.environ.get("RADSCL_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


def shared_data(*parts: str) -> Path:
    """Return a path under ../shared/data, skipping the test when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path}")
    return path


@pytest.fixture
def shared_data_path():
    """The ``shared_data`` helper as a fixture."""
    return shared_data


@pytest.fixture(scope="session")
def phantom_factory(request):
    """Return ``make(size, **params) -> Phantom``, cached for the whole session.

    Phantoms are also kept in pytest's cache folder between runs (keyed by
    their parameters and the phantom code's version), so a full-size phantom is
    drawn once per machine rather than once per test.
    """
    import hashlib
    import inspect
    import pickle

    import radscl.phantom.chest as chest
    import radscl.phantom.geometry as geometry
    import radscl.phantom.trees as trees
    from radscl.phantom import make_phantom

    code = "".join(inspect.getsource(module) for module in (chest, geometry, trees))
    version = hashlib.sha1(code.encode()).hexdigest()[:12]
    folder = request.config.cache.mkdir("radscl-phantoms")
    memory: dict = {}

    def make(size: str = "small", **params):
        key = (size, tuple(sorted(params.items())))
        if key in memory:
            return memory[key]
        digest = hashlib.sha1(repr((version, key)).encode()).hexdigest()[:16]
        path = folder / f"{size}-{digest}.pkl"
        if path.exists():
            with path.open("rb") as handle:
                phantom = pickle.load(handle)
        else:
            phantom = make_phantom(size, **params)
            temporary = path.with_suffix(".tmp")
            with temporary.open("wb") as handle:
                pickle.dump(phantom, handle, protocol=pickle.HIGHEST_PROTOCOL)
            temporary.replace(path)
        memory[key] = phantom
        return phantom

    return make
