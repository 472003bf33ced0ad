"""The Paddle backend: exact state round trips, pure-Python validation before Paddle sees a
state, seeding, scopes, files across processes, the import hook and the unused-layer story.

Paddle is imported in this process; TensorFlow never is (importing TensorFlow before Paddle
crashes the process in this environment), so TensorFlow checks run in subprocesses.
"""

from __future__ import annotations

import json
import random
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import paddle
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rngstate
from rngstate import backends
from rngstate.backends import paddle_backend, paddle_raw
from rngstate.backends.paddle_backend import MT_WORDS, PaddleState
from rngstate.errors import InvalidStateError, MissingBackendError, RNGStateWarning
from rngstate.runtime import RUNTIME
from tests.conftest import PRELOAD_PADDLE, ROOT, python_command, run_python


def gpu_available() -> bool:
    return bool(paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0)


gpu = pytest.mark.gpu
needs_gpu = pytest.mark.skipif(not gpu_available(), reason="needs Paddle built with CUDA and a GPU")
CPU = backends.stream("paddle.cpu")


def draws() -> list[float]:
    """Something of everything Paddle draws on CPU from its global generator."""
    dropped = paddle.nn.functional.dropout(paddle.ones([16]), p=0.5, training=True)
    return [
        *paddle.rand([3]).numpy().tolist(),
        *paddle.randn([3]).numpy().tolist(),
        *paddle.randint(0, 1000, [3]).numpy().tolist(),
        *dropped.numpy().tolist(),
    ]


def valid_plain(**changes: Any) -> dict[str, Any]:
    paddle.seed(11)
    paddle.rand([5])
    plain = CPU.encode(CPU.get_state())
    plain.update(changes)
    return plain


def test_encoding_is_plain_bytes_and_ints() -> None:
    plain = valid_plain()
    assert sorted(plain) == ["device", "mt", "offset", "pos", "seed"]
    assert plain["device"] == -1 and plain["seed"] == 11 and plain["pos"] == 5
    assert isinstance(plain["mt"], bytes) and len(plain["mt"]) == MT_WORDS * 8
    assert all(type(plain[key]) is int for key in ("device", "seed", "offset", "pos"))


@pytest.mark.parametrize("seed", [0, 7, 2**63 - 1, 2**63, 2**64 - 1])
def test_round_trip_is_exact(seed: int) -> None:
    paddle.seed(seed)  # Paddle reports seeds >= 2**63 unsigned but reads them signed
    paddle.randn([7])
    live = CPU.get_state()
    expected = draws()
    decoded = CPU.decode(CPU.encode(live), "s")
    assert decoded.build().__getstate__() == live.__getstate__()
    CPU.set_state(decoded)
    assert draws() == expected
    CPU.set_state(decoded)  # a decoded state can be applied again (Paddle copies it)
    assert draws() == expected


@settings(max_examples=40, deadline=None)
@given(
    words=st.lists(st.integers(0, 2**64 - 1), min_size=MT_WORDS, max_size=MT_WORDS),
    pos=st.integers(0, MT_WORDS),
    seed=st.integers(0, 2**64 - 1),
    offset=st.integers(0, 2**64 - 1),
)
def test_every_accepted_state_is_taken_by_paddle_exactly(
    words: list[int], pos: int, seed: int, offset: int
) -> None:
    # Whatever the validator lets through, Paddle parses back to the same state and draws from.
    words[1] |= 1  # keep it off the rejected all-zero state
    plain = {"device": -1, "seed": seed, "offset": offset, "mt": struct.pack("<312Q", *words), "pos": pos}
    CPU.set_state(CPU.decode(plain, "s"))
    assert CPU.encode(CPU.get_state()) == plain
    paddle.rand([400])
    paddle.randn([3])


def zero_state() -> bytes:
    words = [0] * MT_WORDS
    words[0] = 2**31 - 1  # only the low bits of word 0, which the twist never reads
    return struct.pack("<312Q", *words)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"device": 0}, "belongs to device 0"),
        ({"device": True}, "integer"),
        ({"seed": -1}, "outside"),
        ({"seed": 2**64}, "outside"),
        ({"offset": -4}, "outside"),
        ({"mt": b"\0" * 100}, "expected 2496 bytes"),
        ({"mt": "text"}, "expected bytes"),
        ({"pos": 313}, "outside"),
        ({"pos": -1}, "outside"),
        ({"mt": struct.pack("<312Q", *([0] * MT_WORDS))}, "all-zero"),
        ({"mt": zero_state()}, "all-zero"),  # would make paddle.randn loop forever
        ({"extra": 1}, "unexpected"),
    ],
)
def test_malformed_states_raise_before_paddle(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidStateError, match=match):
        CPU.decode(valid_plain(**changes), "streams.paddle.cpu")


def test_missing_field_and_wrong_type() -> None:
    plain = valid_plain()
    del plain["offset"]
    with pytest.raises(InvalidStateError, match="missing"):
        CPU.decode(plain, "s")
    with pytest.raises(InvalidStateError):
        CPU.decode([1, 2], "s")
    with pytest.raises(InvalidStateError, match=r"\[0\]"):
        backends.stream("paddle.gpu").decode([valid_plain()], "s")  # device -1 in a GPU slot


def test_corrupt_state_in_a_file_never_reaches_paddle(tmp_path: Path) -> None:
    rngstate.seed_everything(1)
    data = rngstate.capture().to_dict()
    data["streams"]["paddle.cpu"]["mt"] = struct.pack("<312Q", *([0] * MT_WORDS))
    before = draws()
    rngstate.seed_everything(1)
    with pytest.raises(InvalidStateError, match="all-zero"):
        rngstate.restore(data)
    assert draws() == before  # nothing was applied


def test_seed_everything_matches_paddle_seed_and_scopes() -> None:
    rngstate.seed_everything(3)
    seeded = draws()
    paddle.seed(3)
    assert draws() == seeded
    rngstate.seed_everything(3)
    with rngstate.rng_scope("encoder"):
        inner = draws()
    assert draws() == seeded  # the scope left the outer stream exactly where it was
    with rngstate.rng_scope("encoder"):
        continued = draws()
    with rngstate.rng_scope("decoder"):
        other = draws()
    assert len({tuple(seeded), tuple(inner), tuple(continued), tuple(other)}) == 4
    rngstate.seed_everything(3)
    paddle.rand([1000])  # unrelated draws outside do not matter
    with rngstate.rng_scope("encoder"):
        assert draws() == inner


def test_capture_restore_inside_scope_is_exact() -> None:
    rngstate.seed_everything(9)
    with rngstate.rng_scope("model"):
        draws()
        state = rngstate.capture()
        rest_inner = draws()
    rest_outer = draws()
    rngstate.restore(state)
    with rngstate.rng_scope("model"):
        assert draws() == rest_inner
    assert draws() == rest_outer


@pytest.mark.slow
def test_state_saved_in_one_process_restores_in_another(tmp_path: Path) -> None:
    path = tmp_path / "rng.state"
    code = """
    import json, sys, paddle, rngstate
    rngstate.seed_everything(21)
    paddle.rand([10])
    with rngstate.rng_scope("aug"):
        paddle.randn([4])
    rngstate.save(sys.argv[1])
    with rngstate.rng_scope("aug"):
        inner = paddle.randn([4]).numpy().tolist()
    print(json.dumps([paddle.rand([4]).numpy().tolist(), inner]))
    """
    outer, inner = json.loads(run_python(code, str(path), preload=PRELOAD_PADDLE).strip().splitlines()[-1])
    with warnings.catch_warnings():  # other tests may have imported torch here, not there
        warnings.filterwarnings("ignore", "rngstate.restore: the live stream 'torch", RNGStateWarning)
        rngstate.restore(rngstate.load(path), strict="torch" not in sys.modules)
    with rngstate.rng_scope("aug"):
        assert paddle.randn([4]).numpy().tolist() == inner
    assert paddle.rand([4]).numpy().tolist() == outer


@pytest.mark.slow
def test_import_hook_seeds_paddle_imported_after_seed_everything() -> None:
    code = """
    import json, rngstate
    rngstate.seed_everything(8)
    import paddle
    print(json.dumps(paddle.rand([3]).numpy().tolist()))
    """
    after = json.loads(run_python(code).strip().splitlines()[-1])
    rngstate.seed_everything(8)  # paddle imported first here
    assert paddle.rand([3]).numpy().tolist() == after


def test_resnet_weights_survive_an_unused_layer() -> None:
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import paddle_unused_layer as example
    finally:
        sys.path.remove(str(ROOT / "examples"))
    assert all(example.compare(by_name=True).values())
    assert not all(example.compare(by_name=False).values())


@pytest.mark.slow
def test_paddle_example_runs() -> None:
    result = subprocess.run(
        python_command(str(ROOT / "examples" / "paddle_unused_layer.py"), preload=PRELOAD_PADDLE),
        capture_output=True, text=True, timeout=300, check=True,
    )
    rows = [line.split() for line in result.stdout.splitlines()[1:]]
    assert [name for name, *_ in rows][-1] == "head" and len(rows) == 7
    assert all(after == "identical" for *_, after in rows)
    assert ["backbone.layer1", "DIFFERENT", "identical"] in rows


def test_state_bytes_are_the_same_raw_or_through_getstate(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a step trace fingerprints of the CPU generator: its get_state() copy read in place
    (the layout verified on this platform), __getstate__'s text parsed, a decoded state and a
    state built from it all give the same bytes; different after every kind of draw."""
    assert paddle_raw.layout_verified()  # glibc x86-64 CPython: the raw path must be taken here
    paddle.seed(7)
    seen = set()
    for draw in (lambda: None, lambda: paddle.rand([3]), lambda: paddle.randn([1000]),
                 lambda: paddle.seed(8), lambda: paddle.nn.functional.dropout(paddle.ones([64]), 0.5)):
        draw()
        fast = CPU.state_bytes()
        assert fast is not None and len(fast) == 24 + 8 * MT_WORDS + 8
        assert CPU.state_crc() == zlib.crc32(fast)
        live = CPU.get_state()
        decoded = CPU.decode(CPU.encode(live), "s")
        assert CPU.snapshot_bytes(live) == CPU.snapshot_bytes(decoded) == fast
        assert CPU.snapshot_bytes(decoded.build()) == fast  # a state rngstate built, read raw or not
        with monkeypatch.context() as patch:  # where the layout is not verified: __getstate__
            patch.setattr(paddle_raw, "_VERIFIED", [False])
            assert CPU.state_bytes() == fast
        seen.add(fast)
    assert len(seen) == 5
    kept = CPU.get_state()  # read without a lock because get_state() copies the engine:
    before = CPU.snapshot_bytes(kept)
    paddle.rand([700])  # later draws leave the copy alone
    assert CPU.snapshot_bytes(kept) == before != CPU.state_bytes()
    assert paddle_raw.state_bytes(object()) is None  # only GeneratorState objects are read raw
    no_engine = paddle_backend.check_state({"device": 0, "seed": 1, "offset": 0}, "s", 0)
    assert CPU.snapshot_bytes(no_engine) is None  # a GPU-style state: encode's fingerprint
    for name, wrong in (("_VALUE_AT", 24), ("_CONTROL_SIZE", 24)):  # another layout: refused
        with monkeypatch.context() as patch:
            patch.setattr(paddle_raw, name, wrong)
            assert not paddle_raw._verify()


def test_python_random_untouched_by_paddle_stream() -> None:
    rngstate.seed_everything(2)
    expected = random.random()
    rngstate.seed_everything(2)
    CPU.set_state(CPU.decode(CPU.encode(CPU.get_state()), "s"))
    assert random.random() == expected


@gpu
@needs_gpu
def test_gpu_generators_seeded_scoped_and_restored() -> None:
    stream = backends.stream("paddle.gpu")
    assert stream.is_active()
    paddle.set_device("gpu")
    try:
        rngstate.seed_everything(5)
        first = paddle.rand([4]).numpy().tolist()
        paddle.seed(5)
        assert paddle.rand([4]).numpy().tolist() == first
        rngstate.seed_everything(5)
        with rngstate.rng_scope("gpu"):
            inner = paddle.randn([4]).numpy().tolist()
        assert paddle.rand([4]).numpy().tolist() == first
        state = rngstate.capture()
        plain = state.to_dict()["streams"]["paddle.gpu"]
        assert [entry["device"] for entry in plain] == list(range(len(plain)))
        expected = paddle.rand([4]).numpy().tolist()
        rngstate.restore(rngstate.RNGState.from_dict(state.to_dict()))
        assert paddle.rand([4]).numpy().tolist() == expected
        with rngstate.rng_scope("gpu"):
            assert paddle.randn([4]).numpy().tolist() != inner  # continues, not restarts
        assert np.isfinite(paddle.randn([1000]).numpy()).all()
    finally:
        paddle.set_device("cpu")


class FakeGPUGenerator:
    """Stands in for ``core.default_cuda_generator(i)`` on a CPU build: real ``GeneratorState``
    objects with device ``i``; a draw moves the Philox offset, as a GPU kernel does."""

    def __init__(self, device: int, seed: int) -> None:
        self.device = device
        self.manual_seed(seed)

    def manual_seed(self, seed: int) -> None:
        words = struct.pack(f"<{MT_WORDS}Q", *range(seed + 1, seed + 1 + MT_WORDS))
        self.state = PaddleState(self.device, seed, 0, words, MT_WORDS).build()

    def get_state(self) -> Any:
        return self.state

    def set_state(self, state: Any) -> None:
        self.state = state

    def draw(self) -> tuple[int, int]:
        device, seed, offset, engine = self.state.__getstate__()
        self.state = paddle.base.core.GeneratorState.__new__(paddle.base.core.GeneratorState)
        self.state.__setstate__((device, seed, offset + 4, engine))
        return seed & (2**64 - 1), offset


def fake_gpus(monkeypatch: pytest.MonkeyPatch, count: int) -> list[FakeGPUGenerator]:
    generators = [FakeGPUGenerator(i, 100 + i) for i in range(count)]
    real_core = paddle.base.core

    class Core:
        GeneratorState = real_core.GeneratorState

        def __getattr__(self, name: str) -> Any:
            return getattr(real_core, name)

        def default_cuda_generator(self, i: int) -> FakeGPUGenerator:
            return generators[i]

    stream = backends.stream("paddle.gpu")
    monkeypatch.setattr(stream, "_count", count)
    monkeypatch.setattr(paddle_backend, "_core", Core)
    monkeypatch.setattr(paddle.device.cuda, "get_device_name", lambda i=None: "Fake GPU")
    RUNTIME.activate("paddle.gpu")
    return generators


def offsets(generators: list[FakeGPUGenerator]) -> list[tuple[int, int]]:
    return [generator.draw() for generator in generators]


@pytest.mark.parametrize(("saved", "live"), [(2, 1), (1, 3)])
def test_gpu_device_count_differs(monkeypatch: pytest.MonkeyPatch, saved: int, live: int) -> None:
    old = fake_gpus(monkeypatch, saved)
    rngstate.seed_everything(3)
    with rngstate.rng_scope("gpu"):
        offsets(old)
    offsets(old)
    state = rngstate.capture()
    assert state.metadata["paddle_gpu_devices"] == ["Fake GPU"] * saved
    saved_plain = state.to_dict()["streams"]["paddle.gpu"]

    gpus = fake_gpus(monkeypatch, live)
    offsets(gpus)
    before = [paddle_backend.encode_state(g.state) for g in gpus]
    problem = f"paddle.gpu generator states for {saved} device.* sees {live}"
    with pytest.raises(MissingBackendError, match=problem):
        rngstate.restore(state)
    assert [paddle_backend.encode_state(g.state) for g in gpus] == before  # untouched
    with pytest.warns(RNGStateWarning, match="device i gets the state saved for device i"):
        rngstate.restore(state, strict=False)
    shared = min(saved, live)
    after = [paddle_backend.encode_state(g.state) for g in gpus]
    assert after == saved_plain[:shared] + before[shared:]
    with rngstate.rng_scope("gpu"):  # substreams follow the same mapping
        offsets(gpus)


def test_gpu_model_change_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpus(monkeypatch, 1)
    rngstate.seed_everything(3)
    state = rngstate.capture()
    monkeypatch.setattr(paddle.device.cuda, "get_device_name", lambda i=None: "Other GPU")
    with pytest.warns(RNGStateWarning, match="Fake GPU.*Other GPU.*Paddle GPU random streams"):
        rngstate.restore(state)


class PhiloxOnlyState:
    """A GeneratorState as Paddle 3.x GPU builds pickle it: ``(device, seed, offset)``, no
    engine (paddle/fluid/pybind/generator_py.cc under PADDLE_WITH_CUDA)."""

    def __init__(self, device: int, seed: int, offset: int) -> None:
        self.fields = (device, seed, offset)

    def __getstate__(self) -> tuple[int, int, int]:
        return self.fields


def test_gpu_state_without_engine_round_trips() -> None:
    stream = backends.stream("paddle.gpu")
    live = [PhiloxOnlyState(0, 2**64 - 5, 40), PhiloxOnlyState(1, 9, 0)]
    plain = stream.encode(live)
    assert plain == [{"device": 0, "seed": 2**64 - 5, "offset": 40}, {"device": 1, "seed": 9, "offset": 0}]
    decoded = stream.decode(plain, "s")
    assert stream.encode(decoded) == plain
    built = decoded[0].build()  # a real GeneratorState: Paddle takes the 3-field form too
    device, seed, offset = built.__getstate__()[:3]
    assert (device, seed & (2**64 - 1), offset) == (0, 2**64 - 5, 40)


@pytest.mark.parametrize(
    ("plain", "match"),
    [
        ({"device": 0, "seed": 1, "offset": -4}, "offset"),
        ({"device": 0, "seed": 2**64, "offset": 0}, "seed"),
        ({"device": 0, "seed": 1, "offset": 0, "pos": 3}, "missing"),
        ({"device": 0, "seed": "1", "offset": 0}, "integer"),
        ({"device": 1, "seed": 1, "offset": 0}, "device 1"),
    ],
)
def test_gpu_state_without_engine_is_validated(plain: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidStateError, match=match):
        paddle_backend.check_state(plain, "s", 0)


def test_cpu_state_needs_its_engine() -> None:
    with pytest.raises(InvalidStateError, match="missing"):
        paddle_backend.check_state({"device": -1, "seed": 1, "offset": 0}, "s", -1)
    with pytest.raises(rngstate.RNGStateError, match="3-field"):
        paddle_backend.encode_state(PhiloxOnlyState(-1, 1, 0))
