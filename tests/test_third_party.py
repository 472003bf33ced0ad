"""Third-party generators: the public registry, the ``rngstate.backends`` entry point group
(loaded lazily, never at ``import rngstate``), and ``rngstate.track`` for any object whose
state can be read and written, shown on albumentations' ``Compose`` (it owns its RNG).
"""

from __future__ import annotations

import json
import random
import runpy
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import rngstate
from rngstate.backends import GeneratorKind, Stream, register_kind, register_stream
from rngstate.backends.objects import generator_state, set_generator_state
from rngstate.errors import BackendRegistrationError, InvalidStateError, MissingBackendError
from rngstate.runtime import RUNTIME
from tests.conftest import ROOT, run_python

RAMP = np.arange(32, dtype=np.uint8)[:, None, None]
IMAGES = [np.full((32, 32, 3), 9 * i, dtype=np.uint8) + RAMP for i in range(6)]


def example() -> dict[str, Any]:
    return runpy.run_path(str(ROOT / "examples" / "albumentations_tracked.py"))


def augment(pipeline: Any, images: list[np.ndarray]) -> list[bytes]:
    return [pipeline(image=image)["image"].tobytes() for image in images]


def tracked_compose(name: str = "augment", transforms: int = 3) -> Any:
    ex = example()
    compose = ex["make_compose"]()
    compose.transforms = compose.transforms[:transforms]
    return rngstate.track(
        compose, name, get_state=ex["compose_state"], set_state=ex["set_compose_state"],
        seed=ex["seed_compose"],
    )


def test_compose_seeded_by_scope_path() -> None:
    rngstate.seed_everything(1)
    with rngstate.rng_scope("data"):
        pipeline = tracked_compose()
    first = augment(pipeline, IMAGES)
    random.random()
    np.random.rand()  # the global streams do not matter: Compose owns its generators
    rngstate.seed_everything(1)  # reseeds tracked objects from their path
    assert augment(pipeline, IMAGES) == first
    rngstate.seed_everything(2)
    assert augment(pipeline, IMAGES) != first


def test_compose_capture_restore_and_file_in_fresh_runtime(tmp_path: Path) -> None:
    rngstate.seed_everything(5)
    with rngstate.rng_scope("data"):
        pipeline = tracked_compose()
    augment(pipeline, IMAGES[:2])
    state = rngstate.capture()
    assert state.generators == ("data/augment",)
    assert state.to_dict()["generators"]["data/augment"]["kind"] == "object"
    expected = augment(pipeline, IMAGES)
    rngstate.restore(state)
    assert augment(pipeline, IMAGES) == expected
    rngstate.save(tmp_path / "aug.state", state)
    RUNTIME.reset()  # as in a new process: nothing tracked yet
    rngstate.restore(rngstate.load(tmp_path / "aug.state"))
    with rngstate.rng_scope("data"):
        fresh = tracked_compose()  # gets the saved state when it is tracked
    assert augment(fresh, IMAGES) == expected


def test_compose_state_validated_and_restore_rolled_back() -> None:
    rngstate.seed_everything(5)
    tracked_compose("aug")
    state = rngstate.capture()
    data = state.to_dict()
    data["generators"]["aug"]["state"][0][1]["state"]["state"] = 2**129  # not a PCG64 state
    with pytest.raises(InvalidStateError, match="outside"):
        rngstate.restore(data)
    RUNTIME.tracked.clear()
    other = tracked_compose("aug", transforms=2)  # another configuration under the same name
    augment(other, IMAGES[:1])
    random.random()
    snapshot = (random.getstate(), generator_state(other.py_random))
    with pytest.raises(InvalidStateError, match="rejected its state"):
        rngstate.restore(state)  # captured with 3 transforms: the callable refuses it
    assert (random.getstate(), generator_state(other.py_random)) == snapshot  # rolled back


def test_tracked_state_must_be_plain_data() -> None:
    rngstate.seed_everything(1)
    box = {"value": 0.5}
    rngstate.track(box, "box", get_state=lambda b: b["value"], set_state=lambda b, s: None)
    with pytest.raises(InvalidStateError, match="float is not plain data"):
        rngstate.capture()
    RUNTIME.tracked.clear()
    with pytest.raises(rngstate.RNGStateError, match="needs both callables"):
        rngstate.track(box, "box", get_state=lambda b: 1)
    with pytest.raises(MissingBackendError, match="get_state= and set_state="):
        rngstate.track(box, "box")
    with pytest.raises(InvalidStateError):
        set_generator_state(random.Random(), {"version": 3})


class Shuffler:
    """A user class with its own generator that speaks the protocol."""

    def __init__(self) -> None:
        self.rng = random.Random()

    def __rngstate_get__(self) -> Any:
        return generator_state(self.rng)

    def __rngstate_set__(self, state: Any) -> None:
        set_generator_state(self.rng, state)

    def __rngstate_seed__(self, seed: int) -> None:
        self.rng.seed(seed)


def test_protocol_objects() -> None:
    rngstate.seed_everything(3)
    with rngstate.rng_scope("loader"):
        shuffler = rngstate.track(Shuffler(), "order")
    first = [shuffler.rng.random() for _ in range(3)]
    rngstate.seed_everything(3)
    assert [shuffler.rng.random() for _ in range(3)] == first
    state = rngstate.capture()
    expected = shuffler.rng.random()
    rngstate.restore(state)
    assert shuffler.rng.random() == expected


def test_registration_is_checked() -> None:
    class NoName(Stream):
        framework = "mylib"

    class Taken(Stream):
        name, framework = "numpy", "numpy"

    class BadFramework(GeneratorKind):
        kind, framework = "mylib.Thing", "my.lib"

    for bad, match in [(NoName, "name ''"), (Taken, "already taken by rngstate"), (object(), "subclass")]:
        with pytest.raises(BackendRegistrationError, match=match):
            register_stream(bad)  # type: ignore[arg-type]
    with pytest.raises(BackendRegistrationError, match="top-level module"):
        register_kind(BadFramework)


def test_albumentations_example() -> None:
    script = ROOT / "examples" / "albumentations_tracked.py"
    out = run_python(f"import runpy; runpy.run_path({str(script)!r}, run_name='__main__')")
    assert "without rngstate, two identical pipelines augment differently: True" in out
    assert "same root seed, same augmentations: True" in out
    assert "restored mid-epoch, same augmentations afterwards: True" in out


# -- a real distribution on sys.path that declares entry points --------------------------------

LIBRARY = '''
"""A library with a module-level generator of its own."""
import random
_rng = random.Random()

def jitter():
    return _rng.random()
'''

PLUGIN = '''
"""rngstate plugin for thirdlib and albumentations; imports neither at import time."""
import sys
from rngstate.backends.objects import generator_state, set_generator_state
from rngstate.backends import GeneratorKind, Stream, kind


class ThirdLibStream(Stream):
    name = "thirdlib.global"
    framework = "thirdlib"

    def _rng(self):
        return sys.modules["thirdlib"]._rng

    def seed(self, seed):
        self._rng().seed(seed)

    def seed_derived(self, material):
        self._rng().seed(int.from_bytes(material, "big"))

    def get_state(self):
        return self._rng().getstate()

    def set_state(self, snapshot):
        self._rng().setstate(snapshot)

    def encode(self, snapshot):
        return kind("python.Random").encode(snapshot)

    def decode(self, plain, where):
        return kind("python.Random").decode(plain, where)


def _nodes(compose):
    yield compose
    for transform in getattr(compose, "transforms", ()):
        yield from _nodes(transform)


class ComposeKind(GeneratorKind):
    kind = "albumentations.Compose"
    framework = "albumentations"

    def matches(self, obj):
        return isinstance(obj, sys.modules["albumentations"].Compose)

    def seed_derived(self, obj, material):
        obj.set_random_seed(int.from_bytes(material[:4], "big"))

    def get_state(self, obj):
        return [[generator_state(n.py_random), generator_state(n.random_generator)] for n in _nodes(obj)]

    def set_state(self, obj, snapshot):
        for node, (python_state, numpy_state) in zip(_nodes(obj), snapshot, strict=True):
            set_generator_state(node.py_random, python_state)
            set_generator_state(node.random_generator, numpy_state)

    def encode(self, snapshot):
        return snapshot

    def decode(self, plain, where):
        if not isinstance(plain, list) or not all(isinstance(n, list) and len(n) == 2 for n in plain):
            from rngstate.errors import InvalidStateError
            raise InvalidStateError(f"{where}: expected [[python state, numpy state], ...]")
        return plain
'''

ENTRY_POINTS = """
[rngstate.backends]
thirdlib = thirdlib_rngstate:ThirdLibStream
albumentations = thirdlib_rngstate:ComposeKind
broken = thirdlib_rngstate:no_such_name
"""

FIRST = """
import json, sys, warnings
import rngstate
assert "thirdlib_rngstate" not in sys.modules, "entry points loaded at import rngstate"
import albumentations as albu, thirdlib
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    rngstate.seed_everything(3)
assert any("skipped the backend plugin 'broken'" in str(w.message) for w in caught)
import random
assert thirdlib.jitter() == random.Random(3).random(), "not seeded like the library's own seed()"
rngstate.seed_everything(3)
with rngstate.rng_scope("noise"):
    inner = thirdlib.jitter()
assert thirdlib.jitter() == random.Random(3).random(), "a scope shifted the library's stream"
pipeline = rngstate.track(albu.Compose([albu.HorizontalFlip(), albu.RandomCrop(16, 16)]), "aug")
image = __import__("numpy").arange(32 * 32 * 3, dtype="uint8").reshape(32, 32, 3)
state = rngstate.capture()
assert "thirdlib.global" in state.streams and state.generators == ("aug",)
expected = [thirdlib.jitter(), pipeline(image=image)["image"].tolist()]
rngstate.restore(state)
assert [thirdlib.jitter(), pipeline(image=image)["image"].tolist()] == expected
rngstate.restore(state)
rngstate.save(sys.argv[1])
with rngstate.rng_scope("noise"):
    scoped = thirdlib.jitter()
print(json.dumps([scoped, thirdlib.jitter(), pipeline(image=image)["image"].tolist(), inner]))
"""

SECOND = """
import json, sys, warnings
import numpy as np
import rngstate
warnings.simplefilter("ignore")
rngstate.restore(rngstate.load(sys.argv[1]))  # names thirdlib.global: the plugin loads now
import albumentations as albu, thirdlib  # the restored stream is applied at import
pipeline = rngstate.track(albu.Compose([albu.HorizontalFlip(), albu.RandomCrop(16, 16)]), "aug")
image = np.arange(32 * 32 * 3, dtype="uint8").reshape(32, 32, 3)
with rngstate.rng_scope("noise"):
    scoped = thirdlib.jitter()
print(json.dumps([scoped, thirdlib.jitter(), pipeline(image=image)["image"].tolist()]))
"""


@pytest.mark.slow
def test_entry_point_plugins_across_processes(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "thirdlib").mkdir(parents=True)
    (site / "thirdlib" / "__init__.py").write_text(textwrap.dedent(LIBRARY))
    (site / "thirdlib_rngstate.py").write_text(textwrap.dedent(PLUGIN))
    info = site / "thirdlib_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdlib-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    env = {"PYTHONPATH": f"{ROOT}:{site}"}
    path = str(tmp_path / "third.state")
    first = json.loads(run_python(FIRST, path, env=env).strip().splitlines()[-1])
    second = json.loads(run_python(SECOND, path, env=env).strip().splitlines()[-1])
    assert second == first[:3]
    assert first[0] != first[3]  # the scope continued: re-entry after restore is not a restart
