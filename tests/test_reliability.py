"""Reliability (issue 5): bad files, bad states, missing pieces, crashes, threads and forks.

The fuzz tests live in ``tests/test_fuzz.py``; the long fuzz run in ``scripts/fuzz_long.py``.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import signal
import struct
import subprocess
import sys
import sysconfig
import textwrap
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import torch

import rngstate
import rngstate.numpy
import rngstate.torch
from rngstate import backends, fileformat
from rngstate.errors import InvalidStateError, MissingBackendError, RNGStateWarning, ScopeError, TopologyError
from rngstate.runtime import RUNTIME
from tests.backends.fake_cuda import FakeCuda, FakeCudaGenerator
from tests.conftest import ROOT, gpu_available, needs_cuda, run_python
from tests.test_state import rich_state

DATA = Path(__file__).resolve().parent / "data"


def blob_of(state: rngstate.RNGState) -> bytes:
    return fileformat.pack(state.to_dict())


def temporaries(folder: Path) -> list[str]:
    return [name for name in os.listdir(folder) if name.endswith(".rngstate-tmp")]


# -- files -----------------------------------------------------------------------------------


class _Trap:
    """Unpickling this creates ``path``: proof that a loader executed code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.path,))


def test_pickles_are_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    payload = pickle.dumps(_Trap(marker))
    assert pickle.loads(payload) is None and marker.exists()  # the trap works...
    marker.unlink()
    disguised = container(payload)  # a valid header and checksum around the pickle
    for name, blob in {"pickle": payload, "pickle in a valid container": disguised}.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(rngstate.StateFileError) as info:
            rngstate.load(tmp_path / name)
        assert not marker.exists(), name  # ...and loading never ran it
        assert "pickle" in str(info.value) or "msgpack" in str(info.value) or "state" in str(info.value)


def test_torch_checkpoint_named_as_such(tmp_path: Path) -> None:
    torch.save({"model": {"w": torch.ones(3)}, "rng": torch.get_rng_state()}, tmp_path / "ckpt.pt")
    with pytest.raises(rngstate.StateFileError, match="pickle or torch.save"):
        rngstate.load(tmp_path / "ckpt.pt")


def test_every_truncation_and_header_bit_flip_is_refused(tmp_path: Path) -> None:
    good = blob_of(rich_state())
    # Every bit of the header, and a spread of payload bits (the checksum covers all of them).
    flips = [(i, bit) for i in range(fileformat.HEADER_SIZE) for bit in range(8)]
    flips += [(i, i % 8) for i in range(fileformat.HEADER_SIZE, len(good), 97)]
    for index, bit in flips:
        bad = bytearray(good)
        bad[index] ^= 1 << bit
        with pytest.raises(rngstate.StateFileError):
            fileformat.unpack(bytes(bad))
    for size in [*range(0, fileformat.HEADER_SIZE + 2), *range(fileformat.HEADER_SIZE, len(good), 61)]:
        with pytest.raises(rngstate.StateFileError, match="truncated|bad magic"):
            fileformat.unpack(good[:size])
    path = tmp_path / "s"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(rngstate.StateFileError, match=r"header announces \d+ payload bytes"):
        rngstate.load(path)


def container(payload: bytes) -> bytes:
    """A valid header (version, length, checksum) around any payload."""
    fields = fileformat._FIELDS.pack(fileformat.FORMAT_VERSION, 0, len(payload))
    return fileformat.MAGIC + fields + fileformat._checksum(fields, payload) + payload


JUNK_PAYLOADS = {
    "ext type 2": msgpack.packb(msgpack.ExtType(2, b"\x80\x04N.")),
    "oversized big int": msgpack.packb(msgpack.ExtType(1, b"\x01" * 65)),
    "float": msgpack.packb({"schema": 1.0}),
    "nil": msgpack.packb(None),
    "int map key": msgpack.packb({1: 2}),
    "deep nesting": b"\x91" * 100_000 + b"\xc0",
    "trailing bytes": msgpack.packb({}) + b"\x00",
    "array claims 2**32-1 items": b"\xdd\xff\xff\xff\xff",
    "list": msgpack.packb([1, 2]),
    "empty map": msgpack.packb({}),
    "collective, bad shard name": msgpack.packb(
        {"rngstate_collective": 1, "world_size": 1, "shards": [{"file": "", "digest": b"0" * 32}]}),
    "collective, NUL in shard name": msgpack.packb(
        {"rngstate_collective": 1, "world_size": 1, "shards": [{"file": "a\0b", "digest": b"0" * 32}]}),
    "collective, rank entry junk": msgpack.packb(
        {"rngstate_collective": 1, "world_size": 1, "ranks": [b"\x89RNG"]}),
}


@pytest.mark.parametrize("case", sorted(JUNK_PAYLOADS))
def test_valid_container_with_junk_payload(case: str, tmp_path: Path) -> None:
    (tmp_path / "s").write_bytes(container(JUNK_PAYLOADS[case]))
    with pytest.raises(rngstate.StateFileError):
        rngstate.load(tmp_path / "s")


def test_not_a_regular_file_fails_fast(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []

    def load() -> None:
        try:
            rngstate.load(fifo)
            outcome.append(None)
        except BaseException as exc:  # collected for the assertion below
            outcome.append(exc)

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "loading a FIFO with no writer hung"
    assert isinstance(outcome[0], rngstate.StateFileError) and "regular file" in str(outcome[0])
    with pytest.raises(rngstate.StateFileError, match="regular file"):
        rngstate.load("/dev/null")


@pytest.mark.parametrize("path", [3, None, b"", "bad\0name", 1.5])
def test_load_refuses_what_is_not_a_path(path: Any) -> None:
    with pytest.raises(rngstate.StateFileError):
        rngstate.load(path)


def test_unreadable_file(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their mode")
    path = tmp_path / "s"
    rngstate.seed_everything(1)
    rngstate.save(path)
    path.chmod(0)
    with pytest.raises(rngstate.StateFileError, match="cannot read"):
        rngstate.load(path)


def test_newer_schema_names_both_versions(tmp_path: Path) -> None:
    data = rich_state().to_dict()
    data["schema"] = 7
    (tmp_path / "s").write_bytes(fileformat.pack(data))
    with pytest.raises(rngstate.StateFileError, match="schema 7, newer than the schema 1"):
        rngstate.load(tmp_path / "s")


# -- older files stay readable ---------------------------------------------------------------


def expected_draws() -> dict[str, Any]:
    from tests.data.make_fixtures import draws

    return draws()


def test_committed_file_still_loads_and_resumes_exactly() -> None:
    state = rngstate.load(DATA / "v1.rngstate")
    assert state.root_seed == 1234 and state.substreams == ("model", "model/encoder")
    assert state.generators == ("loader", "noise")
    RUNTIME.refresh()  # strict unless another test imported a framework the file predates
    strict = set(RUNTIME.active) <= {"python", "numpy", "torch.cpu"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore" if not strict else "error", RNGStateWarning)
        rngstate.restore(state, strict=strict)  # the tracked generators are created in draws()
    assert expected_draws() == json.loads((DATA / "expected.json").read_text())


@pytest.mark.parametrize("schema", [-1, 0])
def test_schema_older_than_the_first_release_is_refused(schema: int) -> None:
    data = rich_state().to_dict()
    data["schema"] = schema
    with pytest.raises(InvalidStateError, match=r"state.schema: .* outside \[1, 1\]"):
        rngstate.RNGState.from_dict(data)


def test_other_container_versions_are_refused(tmp_path: Path) -> None:
    blob = bytearray(fileformat.pack(rich_state().to_dict()))
    blob[13:15] = (0).to_bytes(2, "big")
    (tmp_path / "v0").write_bytes(bytes(blob))
    with pytest.raises(rngstate.StateFileError, match=r"unknown file format version 0 \(this .* reads 1\)"):
        rngstate.load(tmp_path / "v0")


# -- states ----------------------------------------------------------------------------------


HUGE = 10**5000  # str() of it raises ValueError: messages must not try


@pytest.mark.parametrize(
    "path",
    [("root_seed",), ("schema",), ("streams", "python", "pos"), ("metadata", "x"),
     ("generators", "pcg", "state", "state", "state"), ("streams", "jax.cpu")],
)
def test_huge_integers_are_refused_with_a_readable_message(path: tuple[str, ...]) -> None:
    data = rich_state().to_dict()
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = -HUGE if path[-1] == "pos" else HUGE
    with pytest.raises(InvalidStateError) as info:
        rngstate.RNGState.from_dict(data)
    assert len(str(info.value)) < 400
    with pytest.raises(rngstate.RNGStateError):
        rngstate.restore(data)


def test_huge_integer_as_a_key() -> None:
    data = rich_state().to_dict()
    data["substreams"][HUGE] = {}  # type: ignore[index]
    with pytest.raises(InvalidStateError, match="integer of 16610 bits"):
        rngstate.RNGState.from_dict(data)


def test_accepted_states_can_always_be_saved(tmp_path: Path) -> None:
    data = rich_state().to_dict()
    data["metadata"]["widest"] = 2**fileformat.MAX_INT_BITS - 1
    data["metadata"]["negative"] = -(2**fileformat.MAX_INT_BITS - 1)
    state = rngstate.RNGState.from_dict(data)
    rngstate.save(tmp_path / "s", state)
    assert rngstate.load(tmp_path / "s").metadata["widest"] == data["metadata"]["widest"]
    data["metadata"]["widest"] = 2**fileformat.MAX_INT_BITS  # one bit too wide for any file
    with pytest.raises(InvalidStateError, match="at most 511"):
        rngstate.RNGState.from_dict(data)


@pytest.mark.parametrize("metadata", [3, [], "x", b"y"])
def test_metadata_must_be_a_dict(metadata: Any) -> None:
    data = rich_state().to_dict()
    data["metadata"] = metadata
    with pytest.raises(InvalidStateError, match="state.metadata"):
        rngstate.RNGState.from_dict(data)
    with pytest.raises(InvalidStateError):
        rngstate.restore(data, strict=False)


class Hostile:
    def __repr__(self) -> str:
        raise RuntimeError("repr is booby-trapped")


@pytest.mark.parametrize("junk", [Hostile(), {Hostile(): 1}, [Hostile()], float("nan"), None, True, {1, 2}])
def test_non_plain_junk_anywhere(junk: Any) -> None:
    data = rich_state().to_dict()
    data["streams"]["numpy"]["state"]["key"] = junk
    with pytest.raises(InvalidStateError):
        rngstate.RNGState.from_dict(data)


ZERO_MT = b"\x00" * 2496
LOW_MT = b"\xff\xff\xff\x7f" + b"\x00" * 2492  # zero but for bits of word 0 a twist never reads


def zero_torch_state(words: bytes) -> bytes:
    state = bytearray(torch.get_rng_state().numpy().tobytes())
    state[24:24 + 624 * 8] = b"".join(words[i:i + 4] + bytes(4) for i in range(0, 2496, 4))
    return bytes(state)


DEGENERATE = {  # found by scripts/fuzz_long.py: np.random.standard_normal() then never returned
    "python": lambda d, mt: d["streams"]["python"].update(mt=mt),
    "numpy global": lambda d, mt: d["streams"]["numpy"]["state"].update(key=mt),
    "numpy RandomState": lambda d, mt: d["generators"]["rs"]["state"]["state"].update(key=mt),
    "numpy Generator MT19937": lambda d, mt: d["generators"]["mt"]["state"]["state"].update(key=mt),
    "python.Random": lambda d, mt: d["generators"]["py"]["state"].update(mt=mt),
    "torch.cpu": lambda d, mt: d["streams"].update({"torch.cpu": zero_torch_state(mt)}),
    "torch.Generator": lambda d, mt: d["generators"]["tg"]["state"].update(state=zero_torch_state(mt)),
}


@pytest.mark.parametrize("mt", [ZERO_MT, LOW_MT], ids=["zero", "zero-but-unread-bits"])
@pytest.mark.parametrize("where", sorted(DEGENERATE))
def test_degenerate_mt19937_states_are_refused(where: str, mt: bytes) -> None:
    """An all-zero Mersenne Twister draws zeros forever: NumPy's legacy standard_normal and
    random.normalvariate then loop forever (a hang, as bad as a crash)."""
    rngstate.seed_everything(2)
    rngstate.track(random.Random(), "py")
    rngstate.numpy.random_state("rs")
    rngstate.track(np.random.Generator(np.random.MT19937()), "mt")
    rngstate.torch.generator("tg")
    data = rngstate.capture().to_dict()
    DEGENERATE[where](data, mt)
    with pytest.raises(InvalidStateError, match="all-zero mt19937"):
        rngstate.RNGState.from_dict(data)
    good = bytearray(mt)
    good[3] |= 0x80  # the top bit of word 0 alone makes it a valid, if odd, state
    DEGENERATE[where](data, bytes(good))
    rngstate.restore(data)
    random.normalvariate(0, 1)  # these return
    np.random.standard_normal()


@pytest.mark.skipif("tensorflow.ops" not in backends.stream_names(), reason="no TensorFlow backend")
def test_tensorflow_seed_without_its_op_seed_generator_is_refused() -> None:
    """Found by the long fuzz: such a state made every later tf.random op raise AttributeError.
    Checked in pure Python, TensorFlow is not imported."""
    ops = backends.stream("tensorflow.ops")
    python = backends.stream("python")
    rng = python.encode(python.get_state())
    assert ops.decode({"seed": [7], "rng": [rng]}, "s")[0] == 7
    assert ops.decode({"seed": [], "rng": []}, "s") == (None, None)  # never seeded: fine
    for bad in ({"seed": [7], "rng": []}, {"seed": [], "rng": [rng]}):
        with pytest.raises(InvalidStateError, match="both empty or both set"):
            ops.decode(bad, "s")


def test_even_pcg_increment_is_refused() -> None:
    rngstate.seed_everything(2)
    rngstate.numpy.generator("pcg")
    data = rngstate.capture().to_dict()
    data["generators"]["pcg"]["state"]["state"]["inc"] &= ~1
    with pytest.raises(InvalidStateError, match="increment must be odd"):
        rngstate.RNGState.from_dict(data)


# -- restore is all or nothing ---------------------------------------------------------------


def everything_tracked() -> dict[str, Any]:
    return {
        "py": rngstate.track(random.Random(), "py"),
        "np": rngstate.numpy.generator("np"),
        "rs": rngstate.numpy.random_state("rs"),
        "tg": rngstate.torch.generator("tg"),
    }


def live_draws(generators: dict[str, Any]) -> list[Any]:
    return [
        random.random(), np.random.rand(), torch.rand(2).tolist(),
        generators["py"].random(), generators["np"].random(), generators["rs"].rand(),
        torch.rand(2, generator=generators["tg"]).tolist(),
    ]


def snapshot_runtime() -> tuple[Any, ...]:
    return (RUNTIME.root, dict(RUNTIME.substreams), dict(RUNTIME.pending_streams),
            dict(RUNTIME.pending_generators))


class InjectedError(Exception):
    pass


def count_set_state_calls(monkeypatch: pytest.MonkeyPatch, fail_at: int | None,
                          failure: BaseException) -> list[str]:
    """Wrap every stream's and generator kind's set_state; raise ``failure`` at call ``fail_at``."""
    calls: list[str] = []

    def wrap(owner: Any, name: str) -> None:
        original = owner.set_state

        def set_state(*args: Any) -> None:
            calls.append(name)
            if len(calls) - 1 == fail_at:
                raise failure
            original(*args)

        monkeypatch.setattr(owner, "set_state", set_state)

    for name in ("python", "numpy", "torch.cpu"):
        wrap(RUNTIME.active[name], name)
    for kind in ("python.Random", "numpy.Generator", "numpy.RandomState", "torch.Generator"):
        wrap(backends.kind(kind), kind)
    return calls


@pytest.mark.parametrize("failure", [InjectedError("C++ said no"), KeyboardInterrupt()],
                         ids=["error", "interrupt"])
def test_restore_failing_at_any_point_changes_nothing(monkeypatch: pytest.MonkeyPatch,
                                                      failure: BaseException) -> None:
    rngstate.seed_everything(1)
    generators = everything_tracked()
    with rngstate.rng_scope("a"):
        torch.rand(1)
    live_draws(generators)
    target = rngstate.capture()

    rngstate.seed_everything(2)  # reseeds the tracked generators too
    with rngstate.rng_scope("b"):
        torch.rand(1)
    live_draws(generators)
    before = rngstate.capture()
    expected = live_draws(generators)

    with monkeypatch.context() as patch:
        calls = count_set_state_calls(patch, None, failure)
        rngstate.restore(before)  # a successful restore, counted
    points = len(calls)
    assert points == 7, calls  # 3 global streams + 4 tracked generators
    for point in range(points):
        rngstate.restore(before)
        runtime_before = snapshot_runtime()
        with monkeypatch.context() as patch:
            calls = count_set_state_calls(patch, point, failure)
            with pytest.raises(type(failure) if isinstance(failure, KeyboardInterrupt)
                               else InvalidStateError) as info:
                rngstate.restore(target)
        assert calls[point + 1:], "the rollback must have run"
        if not isinstance(failure, KeyboardInterrupt):
            assert "rolled back" in str(info.value) and "C++ said no" in str(info.value)
        assert rngstate.capture() == before, f"failure at {calls[point]} leaked"
        assert snapshot_runtime() == runtime_before
        assert live_draws(generators) == expected, calls[point]
    rngstate.restore(target)  # and nothing is stuck afterwards
    assert rngstate.capture() == target


def test_failed_validation_changes_nothing() -> None:
    rngstate.seed_everything(4)
    generators = everything_tracked()
    data = rngstate.capture().to_dict()
    data["generators"]["tg"]["kind"] = "numpy.Generator"  # the live "tg" is a torch.Generator
    data["generators"]["tg"]["state"] = data["generators"]["np"]["state"]
    torch.rand(3)
    before = rngstate.capture()
    expected = live_draws(generators)
    rngstate.restore(before)
    with pytest.raises(InvalidStateError, match="live generator is a torch.Generator"):
        rngstate.restore(data)
    assert live_draws(generators) == expected


# -- missing pieces: frameworks, CUDA devices, GPU models ------------------------------------


def site_without(tmp_path: Path, *prefixes: str) -> Path:
    """A site-packages look-alike: links to every installed package but those named ``prefixes``."""
    site = Path(sysconfig.get_paths()["purelib"])
    links = tmp_path / "site"
    links.mkdir()
    for entry in site.iterdir():
        if not entry.name.lower().startswith(prefixes):
            (links / entry.name).symlink_to(entry)
    return links


WITHOUT_TORCH = """
import importlib.util, json, random, sys, warnings
import numpy as np
import rngstate
from rngstate.errors import MissingBackendError, RNGStateWarning

assert importlib.util.find_spec("torch") is None, "torch must be missing here"
state = rngstate.load(sys.argv[1])   # torch states are validated without torch
out = {"streams": list(state.streams)}
try:
    rngstate.restore(state)
except MissingBackendError as exc:
    out["strict"] = str(exc)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    rngstate.restore(state, strict=False)
out["warnings"] = [str(w.message) for w in caught if issubclass(w.category, RNGStateWarning)]
out["draws"] = [random.random(), np.random.rand()]
with rngstate.rng_scope("model"):
    out["scoped"] = [random.random(), np.random.rand()]
out["torch imported"] = "torch" in sys.modules
print(json.dumps(out))
"""


def test_framework_not_installed_strict_and_lenient(tmp_path: Path) -> None:
    rngstate.seed_everything(8)
    with rngstate.rng_scope("model"):
        torch.rand(2)
        random.random()
    np.random.standard_normal()
    state = rngstate.save(tmp_path / "s.rngstate")
    rngstate.restore(state)
    draws = [random.random(), np.random.rand()]
    with rngstate.rng_scope("model"):
        scoped = [random.random(), np.random.rand()]

    site = site_without(tmp_path, "torch", "functorch", "nvidia", "triton")
    result = subprocess.run(
        [sys.executable, "-S", "-c", textwrap.dedent(WITHOUT_TORCH), str(tmp_path / "s.rngstate")],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{site}"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    assert {"numpy", "python", "torch.cpu"} <= set(out["streams"])
    assert "torch is not installed" in out["strict"] and "pip install 'rngstate[torch]'" in out["strict"]
    assert any("torch is not installed" in w and "rngstate[torch]" in w for w in out["warnings"])
    assert out["draws"] == draws and out["scoped"] == scoped  # everything else restored exactly
    assert out["torch imported"] is False


@pytest.mark.parametrize("framework", ["torch", "paddle", "tensorflow", "keras"])
def test_every_framework_names_its_extra(framework: str) -> None:
    extra = backends.extra_for(framework)
    assert extra in ("torch", "paddle", "tensorflow")
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f"\n{extra} = [" in pyproject, f"rngstate[{extra}] is not an extra in pyproject.toml"


def test_framework_missing_with_monkeypatch_leaves_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    rngstate.seed_everything(1)
    data = rngstate.capture().to_dict()
    del data["streams"]["torch.cpu"]  # as if captured where torch was missing...
    data["streams"]["torch.cuda"] = [struct.pack("<Qq", 9, 0)]  # ...but with a CUDA state
    monkeypatch.setattr(backends, "is_installed", lambda framework: framework != "torch")
    torch_before = torch.get_rng_state()
    with pytest.raises(MissingBackendError, match=r"torch.cuda.*rngstate\[torch\]"):
        rngstate.restore(data)
    with pytest.warns(RNGStateWarning) as record:
        rngstate.restore(data, strict=False)
    messages = " | ".join(str(w.message) for w in record)
    assert "torch is not installed" in messages and "'torch.cpu' is not in the state" in messages
    assert torch.equal(torch.get_rng_state(), torch_before)
    assert "torch.cuda" not in RUNTIME.pending_streams  # nothing waits for a missing framework


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[FakeCudaGenerator, ...]]:
    """Start ``count`` fake CUDA devices named ``name`` through torch's own lazy init (only its
    C++ entry points are faked: tests/backends/fake_cuda.py); returns their generators."""

    def install(count: int, name: str = "Fake GPU") -> tuple[FakeCudaGenerator, ...]:
        cuda = FakeCuda(count, name).install(monkeypatch.setattr)
        torch.cuda.init()
        return cuda.generators

    return install


def cuda_draws(generators: tuple[FakeCudaGenerator, ...]) -> list[tuple[int, int]]:
    return [generator.draw() for generator in generators]


def test_fake_cuda_round_trip(fake_cuda: Callable[..., tuple[FakeCudaGenerator, ...]]) -> None:
    gpus = fake_cuda(2)
    rngstate.seed_everything(3)
    assert "torch.cuda" in RUNTIME.active
    with rngstate.rng_scope("gpu"):
        cuda_draws(gpus)
    cuda_draws(gpus)
    state = rngstate.capture()
    assert len(state.to_dict()["streams"]["torch.cuda"]) == 2
    assert state.metadata["cuda_devices"] == ["Fake GPU", "Fake GPU"]
    expected = cuda_draws(gpus)
    with rngstate.rng_scope("gpu"):
        expected_inside = cuda_draws(gpus)
    rngstate.restore(state)
    assert cuda_draws(gpus) == expected
    with rngstate.rng_scope("gpu"):
        assert cuda_draws(gpus) == expected_inside


@pytest.mark.parametrize(("saved", "live"), [(2, 1), (2, 3), (1, 4)])
def test_cuda_device_count_differs(fake_cuda: Callable[..., tuple[FakeCudaGenerator, ...]],
                                   saved: int, live: int) -> None:
    old = fake_cuda(saved)
    rngstate.seed_everything(3)
    with rngstate.rng_scope("gpu"):
        cuda_draws(old)
    cuda_draws(old)
    state = rngstate.capture()
    saved_states = [g.state for g in old]
    with rngstate.rng_scope("gpu"):
        saved_inside = cuda_draws(old)

    gpus = fake_cuda(live)
    for gpu in gpus:
        gpu.draw()
    random.random()
    before, live_states = rngstate.capture(), [g.state for g in gpus]
    with pytest.raises(MissingBackendError, match=f"states for {saved} device.* sees {live}"):
        rngstate.restore(state)
    assert rngstate.capture() == before and [g.state for g in gpus] == live_states  # untouched

    with pytest.warns(RNGStateWarning, match="device i gets the state saved for device i"):
        rngstate.restore(state, strict=False)
    shared = min(saved, live)
    # The documented mapping: device i takes saved device i; the others keep their state.
    assert [g.state for g in gpus] == saved_states[:shared] + live_states[shared:]
    with rngstate.rng_scope("gpu"):  # substreams follow the same mapping
        inside = cuda_draws(gpus)
    assert inside[:shared] == saved_inside[:shared]
    assert [g.state for g in gpus][:shared] == saved_states[:shared]  # outer put back on exit
    assert rngstate.capture().to_dict()["streams"]["torch.cuda"] == [g.state for g in gpus]


@pytest.mark.skipif(gpu_available(), reason="needs a machine without CUDA")
def test_cuda_state_on_a_machine_without_cuda() -> None:
    rngstate.seed_everything(5)
    data = rngstate.capture().to_dict()
    data["streams"]["torch.cuda"] = [struct.pack("<Qq", 5, 8)]  # saved on a 1-GPU machine
    expected = [random.random(), torch.rand(2).tolist()]
    with pytest.raises(MissingBackendError, match="states for 1 device.* sees 0"):
        rngstate.restore(data)
    with pytest.warns(RNGStateWarning, match="sees 0"):
        rngstate.restore(data, strict=False)
    assert [random.random(), torch.rand(2).tolist()] == expected


def test_other_gpu_model_warns(fake_cuda: Callable[..., tuple[FakeCudaGenerator, ...]]) -> None:
    fake_cuda(1, "NVIDIA A100-SXM4-80GB")
    rngstate.seed_everything(3)
    state = rngstate.capture()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RNGStateWarning)
        rngstate.restore(state)  # same model: no warning
    gpus = fake_cuda(1, "NVIDIA H100 80GB HBM3")
    with pytest.warns(RNGStateWarning, match="A100.*H100.*same GPU model"):
        rngstate.restore(state)  # strict, yet only a warning: the state itself is fine
    assert [g.state for g in gpus] == state.to_dict()["streams"]["torch.cuda"]


@needs_cuda
def test_real_cuda_device_count_mapping() -> None:
    rngstate.seed_everything(5)
    torch.cuda.init()
    RUNTIME.activate("torch.cuda")
    torch.rand(3, device="cuda")
    data = rngstate.capture().to_dict()
    count = torch.cuda.device_count()
    assert len(data["streams"]["torch.cuda"]) == count
    expected = torch.rand(3, device="cuda")
    data["streams"]["torch.cuda"].append(data["streams"]["torch.cuda"][0])  # one device too many
    torch.rand(7, device="cuda")
    with pytest.raises(MissingBackendError, match=f"states for {count + 1} device"):
        rngstate.restore(data)
    with pytest.warns(RNGStateWarning, match="device i gets the state saved for device i"):
        rngstate.restore(data, strict=False)
    assert torch.equal(torch.rand(3, device="cuda"), expected)


# -- crashes while saving --------------------------------------------------------------------


class FaultyOS:
    """Stands in for ``os`` inside fileformat: ``hook(name, index, when)`` runs around each
    call of the functions a save uses, and may raise or kill the process."""

    WATCHED = ("open", "ftruncate", "write", "fsync", "replace", "close")

    def __init__(self, hook: Callable[[str, int, str], None]) -> None:
        self.hook = hook
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        function = getattr(os, name)
        if name not in self.WATCHED:
            return function

        def watched(*args: Any, **kwargs: Any) -> Any:
            index = len(self.calls)
            self.calls.append(name)
            self.hook(name, index, "before")
            result = function(*args, **kwargs)
            self.hook(name, index, "after")
            return result

        return watched


def states_for_crash_tests() -> tuple[rngstate.RNGState, rngstate.RNGState]:
    rngstate.seed_everything(12)
    for i in range(40):  # about 250 KB, so writes take a while
        rngstate.torch.generator(f"g{i}")
    first = rngstate.capture()
    np.random.rand()
    return first, rngstate.capture()


def save_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, state: rngstate.RNGState) -> list[str]:
    recorder = FaultyOS(lambda name, index, when: None)
    with monkeypatch.context() as patch:
        patch.setattr(fileformat, "os", recorder)
        rngstate.save(tmp_path / "probe", state)
    (tmp_path / "probe").unlink()
    return recorder.calls


def test_injected_failures_at_every_write_fsync_and_rename(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    previous, new = states_for_crash_tests()
    path = tmp_path / "rng.state"
    calls = save_calls(tmp_path, monkeypatch, new)
    assert {"open", "write", "fsync", "replace", "close"} <= set(calls), calls
    replace_at = calls.index("replace")
    tried = 0
    for failure in (OSError(28, "No space left on device"), KeyboardInterrupt()):
        for point in range(len(calls)):
            for when in ("before", "after"):
                rngstate.save(path, previous)

                def hook(name: str, index: int, moment: str, point: int = point, when: str = when,
                         failure: BaseException = failure) -> None:
                    if (index, moment) == (point, when):
                        raise failure

                with monkeypatch.context() as patch:
                    patch.setattr(fileformat, "os", FaultyOS(hook))
                    try:
                        rngstate.save(path, new)
                        raised = False
                    except (OSError, KeyboardInterrupt) as exc:
                        assert type(exc) is type(failure)
                        if isinstance(exc, OSError):  # names the user's path, not the temporary
                            assert repr(str(path)) in str(exc) and "rngstate-tmp" not in str(exc)
                        raised = True
                tried += 1
                done = point > replace_at or (point == replace_at and when == "after")
                where = f"{type(failure).__name__} {when} {calls[point]} #{point}"
                # Opening the folder (for its lock and fsync) may fail: the save goes on.
                folder_open = point == 0 and isinstance(failure, OSError)
                assert rngstate.load(path) == (new if done or folder_open else previous), where
                assert raised or done or folder_open, where
                assert len(temporaries(tmp_path)) <= 1, where
                rngstate.save(path, new)  # the next save works and cleans up
                assert os.listdir(tmp_path) == [path.name], where
    assert tried == 2 * 2 * len(calls)


def forked(body: Callable[[], None]) -> int:
    """Run ``body`` in a forked child (which never returns into pytest); return the pid."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            body()
        finally:
            os._exit(0)
    return pid


def test_sigkill_at_every_step_of_a_save(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    previous, new = states_for_crash_tests()
    path = tmp_path / "rng.state"
    calls = save_calls(tmp_path, monkeypatch, new)
    replace_at = calls.index("replace")
    for point in range(len(calls)):
        for when in ("before", "after"):
            rngstate.save(path, previous)

            def body(point: int = point, when: str = when) -> None:
                def hook(name: str, index: int, moment: str) -> None:
                    if (index, moment) == (point, when):
                        os.kill(os.getpid(), signal.SIGKILL)

                fileformat.os = FaultyOS(hook)  # type: ignore[attr-defined]  # the child only
                rngstate.save(path, new)

            _, status = os.waitpid(forked(body), 0)
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
            done = point > replace_at or (point == replace_at and when == "after")
            where = f"killed {when} {calls[point]} #{point}"
            assert rngstate.load(path) == (new if done else previous), where
            assert len(temporaries(tmp_path)) <= 1, where
            rngstate.save(path, previous)
            assert os.listdir(tmp_path) == [path.name], where  # the next save cleaned up


@pytest.mark.slow
def test_sigkill_at_random_moments(tmp_path: Path) -> None:
    states = states_for_crash_tests()
    parts = [fileformat.pack_parts(s.to_dict()) for s in states]
    path = tmp_path / "rng.state"
    rngstate.save(path, states[0])
    chooser = random.Random(5)
    left_behind = 0
    for _ in range(40):

        def body() -> None:
            for i in range(10**9):
                fileformat.write_atomic(path, *parts[i % 2])

        pid = forked(body)
        time.sleep(chooser.uniform(0.001, 0.03))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        assert rngstate.load(path) in states
        left = temporaries(tmp_path)
        assert len(left) <= 1
        left_behind += bool(left)
    rngstate.save(path, states[1])
    assert os.listdir(tmp_path) == [path.name]
    assert left_behind >= 1, "no kill landed inside a save: make the state bigger"


def test_concurrent_saves_to_one_path(tmp_path: Path) -> None:
    """Every rank of a job saving to the same path: saves take turns, the file is always whole."""
    states = states_for_crash_tests()
    parts = [fileformat.pack_parts(s.to_dict()) for s in states]
    path = tmp_path / "rng.state"
    rngstate.save(path, states[0])

    def saver(which: int) -> Callable[[], None]:
        def body() -> None:
            try:
                for _ in range(40):
                    fileformat.write_atomic(path, *parts[which])
            except BaseException:
                os._exit(3)

        return body

    pids = [forked(saver(0)), forked(saver(1))]
    statuses: dict[int, int] = {}
    loads, deadline = 0, time.monotonic() + 120
    while len(statuses) < len(pids) and time.monotonic() < deadline:
        assert rngstate.load(path) in states  # never a mix of two saves
        loads += 1
        for pid in pids:
            if pid not in statuses:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    statuses[pid] = status
    assert len(statuses) == 2 and loads > 0
    assert all(os.WIFEXITED(s) and os.WEXITSTATUS(s) == 0 for s in statuses.values()), "a save failed"
    assert os.listdir(tmp_path) == [path.name]


def test_save_onto_a_directory_replaces_nothing(tmp_path: Path) -> None:
    rngstate.seed_everything(1)
    (tmp_path / "d").mkdir()
    with pytest.raises(OSError):
        rngstate.save(tmp_path / "d")
    assert (tmp_path / "d").is_dir() and os.listdir(tmp_path) == ["d"]


# -- threads, fork and spawn ----------------------------------------------------------------


def test_owner_keeps_its_scope_when_another_thread_races_in() -> None:
    """Regression: leaving the last scope reset the owner *after* letting go of the frames, so a
    thread that entered in between lost ownership of its own scope (its nested scope failed)."""

    class WideWindow(list):  # type: ignore[type-arg]
        def __len__(self) -> int:
            length = super().__len__()
            if length == 0 and sys._getframe(1).f_code.co_name == "_put_back":
                time.sleep(0.001)  # widen the window between "last frame gone" and the reset
            return length

    RUNTIME.frames = WideWindow()
    rngstate.seed_everything(1)
    problems: list[str] = []

    def work(name: str) -> None:
        entered = 0
        while entered < 60:
            outer = rngstate.rng_scope(name)
            try:
                outer.__enter__()
            except ScopeError:
                time.sleep(0.0005)  # the other thread is inside: documented, try again
                continue
            entered += 1
            time.sleep(0.002)
            try:
                with rngstate.rng_scope("inner"):
                    random.random()
            except ScopeError as exc:
                problems.append(str(exc))
            finally:
                outer.__exit__(None, None, None)

    threads = [threading.Thread(target=work, args=(name,)) for name in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert problems == []
    assert list(RUNTIME.frames) == [] and RUNTIME.owner is None


def test_refused_thread_does_not_disturb_the_owner() -> None:
    rngstate.seed_everything(1)
    with rngstate.rng_scope("main"):
        expected = [random.random(), np.random.rand(), torch.rand(2).tolist()]
    rngstate.seed_everything(1)
    errors: list[BaseException] = []

    def intruder() -> None:
        for _ in range(50):
            try:
                with rngstate.rng_scope("intruder"):
                    random.random()
            except ScopeError as exc:
                errors.append(exc)

    with rngstate.rng_scope("main"):
        thread = threading.Thread(target=intruder)
        thread.start()
        thread.join()
        got = [random.random(), np.random.rand(), torch.rand(2).tolist()]
    assert len(errors) == 50 and got == expected
    assert "intruder" not in rngstate.capture().substreams


def in_fork(body: Callable[[], Any]) -> Any:
    """Run ``body`` in a forked child and return its JSON-able result."""
    read, write = os.pipe()

    def child() -> None:
        os.close(read)
        try:
            payload = json.dumps({"ok": body()})
        except BaseException as exc:
            payload = json.dumps({"error": f"{type(exc).__name__}: {exc}"})
        with os.fdopen(write, "w") as pipe:
            pipe.write(payload)

    pid = forked(child)
    os.close(write)
    with os.fdopen(read) as pipe:
        result = json.loads(pipe.read() or '{"error": "child died"}')
    os.waitpid(pid, 0)
    if "error" in result:
        raise AssertionError(result["error"])
    return result["ok"]


def three_draws() -> list[Any]:
    return [random.random(), float(np.random.rand()), torch.rand(2).tolist()]


def test_fork_inside_a_scope_continues_it() -> None:
    rngstate.seed_everything(6)
    with rngstate.rng_scope("loader"):
        three_draws()

        def child() -> Any:
            inside = three_draws()
            with rngstate.rng_scope("worker"):  # nested: "loader/worker"
                nested = three_draws()
            return [inside, nested]

        got = in_fork(child)
        assert got[0] == three_draws()  # the child continued the parent's substream
        with rngstate.rng_scope("worker"):
            assert got[1] == three_draws()


def test_fork_while_another_thread_is_inside_a_scope() -> None:
    rngstate.seed_everything(6)
    inside, leave = threading.Event(), threading.Event()

    def worker() -> None:
        with rngstate.rng_scope("t"):
            three_draws()
            inside.set()
            leave.wait(30)

    thread = threading.Thread(target=worker)
    thread.start()
    inside.wait(30)

    def child() -> Any:
        assert not RUNTIME.frames and RUNTIME.owner is None, "the dead thread's scopes stay open"
        outer = three_draws()
        with rngstate.rng_scope("x"):  # allowed, and not nested under "t"
            fresh = three_draws()
        with rngstate.rng_scope("t"):  # continues where the thread was
            continued = three_draws()
        return [outer, fresh, continued]

    try:
        got = in_fork(child)
    finally:
        leave.set()
        thread.join()
    assert got[0] == three_draws()
    with rngstate.rng_scope("t"):
        assert got[2] == three_draws()
    rngstate.seed_everything(6)
    with rngstate.rng_scope("x"):
        assert got[1] == three_draws()


class Samples(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Each sample: noise drawn inside a scope (optional), then a draw from the worker's stream."""

    def __init__(self, scoped: bool) -> None:
        self.scoped = scoped

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> list[float]:
        noise = [-1.0, -1.0]
        if self.scoped:
            with rngstate.rng_scope("augment"):
                noise = torch.rand(2).tolist()
                with rngstate.rng_scope("flip"):
                    noise[1] = random.random()
        return [*noise, torch.rand(1).item(), random.random()]


def loader_epochs(scoped: bool, inside_scope: bool) -> list[list[list[float]]]:
    rngstate.seed_everything(9)
    loader = torch.utils.data.DataLoader(
        Samples(scoped), batch_size=2, num_workers=2, multiprocessing_context="fork",
        generator=rngstate.torch.generator("loader"), collate_fn=lambda batch: batch,
    )
    epochs = []
    for _ in range(2):
        if inside_scope:
            with rngstate.rng_scope("data"):  # workers are forked inside the scope
                epochs.append([sample for batch in loader for sample in batch])
        else:
            epochs.append([sample for batch in loader for sample in batch])
    return epochs


@pytest.mark.parametrize("inside_scope", [False, True], ids=["outside", "inside"])
def test_dataloader_fork_workers_use_scopes(inside_scope: bool) -> None:
    scoped = loader_epochs(True, inside_scope)
    after = three_draws()
    assert loader_epochs(True, inside_scope) == scoped and three_draws() == after  # reproducible
    plain = loader_epochs(False, inside_scope)
    # In every worker the scopes left the worker's own streams exactly as without them.
    assert [[s[2:] for s in epoch] for epoch in scoped] == [[s[2:] for s in epoch] for epoch in plain]
    assert all(s[:2] != [-1.0, -1.0] for epoch in scoped for s in epoch)


SPAWN = """
import json, multiprocessing, random
import numpy as np
import rngstate

def child(queue):
    rngstate.seed_everything()  # RNGSTATE_SEED, exported by the parent
    with rngstate.rng_scope("worker"):
        queue.put([random.random(), float(np.random.rand())])

if __name__ == "__main__":
    rngstate.seed_everything(77)
    with rngstate.rng_scope("worker"):
        expected = [random.random(), float(np.random.rand())]
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    with rngstate.rng_scope("outer"):  # spawning from inside a scope
        process = context.Process(target=child, args=(queue,))
        process.start()
        got = queue.get(timeout=120)
        process.join(120)
    print(json.dumps({"expected": expected, "got": got, "exitcode": process.exitcode}))
"""


def test_spawned_processes(tmp_path: Path) -> None:
    script = tmp_path / "spawner.py"
    script.write_text(textwrap.dedent(SPAWN))
    env = {key: value for key, value in os.environ.items() if key != "RNGSTATE_SEED"}
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=300, env={**env, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    assert out["exitcode"] == 0 and out["got"] == out["expected"]


@pytest.fixture(autouse=True)
def _no_leaked_scopes() -> Iterator[None]:
    yield
    assert not RUNTIME.frames, "a test left a scope open"


# -- hostile files, paths and arguments (issue 12) ------------------------------------------------


def test_a_file_truncated_while_it_loads_never_kills_the_reader(tmp_path: Path) -> None:
    """load() used to memory-map the file: truncating it under the reader raised SIGBUS."""
    path = tmp_path / "big.state"
    blob = container(msgpack.packb({"x": b"\1" * 40_000_000}))
    path.write_bytes(blob)
    reader = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import sys, time, rngstate
            from rngstate.errors import StateFileError
            end, loads = time.monotonic() + 4, 0
            while time.monotonic() < end:
                try:
                    rngstate.load(sys.argv[1])
                except StateFileError:
                    pass
                loads += 1
            print(loads)
        """), str(path)],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    chooser = random.Random(1)
    while reader.poll() is None:
        with open(path, "r+b") as file:  # in place: a mapping of this inode sees the cut
            file.truncate(chooser.randrange(len(blob)))
            time.sleep(0.002)
            file.seek(0)
            file.write(blob)
    out, err = reader.communicate()
    assert reader.returncode == 0, f"reader ended with {reader.returncode}: {err.decode()[-500:]}"
    assert int(out) > 0


def test_save_never_writes_through_a_planted_link(tmp_path: Path) -> None:
    rngstate.seed_everything(4)
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    folder = tmp_path / "run"
    folder.mkdir()
    path = folder / "rng.state"
    (folder / ".rng.state.rngstate-tmp").symlink_to(victim)  # the old, predictable name
    for _ in range(3):
        saved = rngstate.save(path)
    assert victim.read_bytes() == b"precious"
    assert path.is_file() and not path.is_symlink() and rngstate.load(path) == saved
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~fileformat._umask())


def test_failed_save_names_the_users_path(tmp_path: Path) -> None:
    rngstate.seed_everything(4)
    with pytest.raises(FileNotFoundError) as caught:
        rngstate.save(tmp_path / "missing" / "rng.state")
    assert repr(str(tmp_path / "missing" / "rng.state")) in str(caught.value)
    assert "rngstate-tmp" not in str(caught.value)


def sharded_index(folder: Path, name: str) -> Path:
    index = folder / "rng.state"
    index.write_bytes(container(msgpack.packb(
        {"rngstate_collective": 1, "world_size": 1, "shards": [{"file": name, "digest": b"0" * 32}]})))
    return index


def test_shards_get_the_same_checks_as_the_main_file(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "zero").symlink_to("/dev/zero")
    for name in ("fifo", "zero"):
        outcome: list[BaseException | None] = []

        def load(name: str = name, outcome: list[BaseException | None] = outcome) -> None:
            try:
                rngstate.load(sharded_index(tmp_path, name), rank=0)
                outcome.append(None)
            except BaseException as exc:  # collected for the assertion below
                outcome.append(exc)

        thread = threading.Thread(target=load, daemon=True)
        thread.start()
        thread.join(20)
        assert not thread.is_alive(), f"loading a shard that is a {name} hung"
        assert isinstance(outcome[0], rngstate.StateFileError) and "regular file" in str(outcome[0])


def test_oversized_files_are_refused_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s"
    path.write_bytes(container(msgpack.packb({"x": b"1" * 5000})))
    monkeypatch.setattr(fileformat, "MAX_FILE_BYTES", 4096)
    with pytest.raises(rngstate.StateFileError, match="more than any state file"):
        rngstate.load(path)


_PEAK = """
import resource, sys, rngstate
from rngstate.errors import StateFileError
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    rngstate.load(sys.argv[1])
    outcome = "loaded"
except StateFileError as exc:
    outcome = str(exc)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024, outcome)
"""


@pytest.mark.parametrize(
    "payload",
    [
        b"\xdd" + (10_000_000).to_bytes(4, "big") + b"\x80" * 10_000_000,  # 10M empty maps
        b"\xdd" + (5_000_000).to_bytes(4, "big") + b"\x91\x90" * 5_000_000,  # 5M [[]]
        b"\xdf" + (2_500_000).to_bytes(4, "big") + b"\xa1a\x90" * 2_500_000,  # dup keys: 1 entry
    ],
    ids=["empty maps", "nested lists", "repeated keys"],
)
def test_tiny_containers_cannot_amplify_memory(payload: bytes, tmp_path: Path) -> None:
    """A 10 MB file of millions of tiny containers took ~1.4 GB to parse."""
    path = tmp_path / "hostile"
    path.write_bytes(container(payload))
    grown, _, outcome = run_python(_PEAK, str(path)).partition(" ")
    assert "more than 16 times its size" in outcome
    assert int(grown) < 3 * len(payload) + 20_000_000  # the file's bytes, not its objects


def test_load_rank_must_be_a_rank(tmp_path: Path) -> None:
    rngstate.seed_everything(1)
    first = rngstate.capture()
    random.random()
    second = rngstate.capture()
    path = tmp_path / "collective"
    path.write_bytes(container(msgpack.packb(
        {"rngstate_collective": 1, "world_size": 2, "ranks": [blob_of(first), blob_of(second)]})))
    assert rngstate.load(path, rank=1) == second and rngstate.load(path, rank=0) == first
    for rank in (-1, True, "0", 1.0):
        with pytest.raises(TopologyError, match="takes a rank"):
            rngstate.load(path, rank=rank)  # type: ignore[arg-type]
