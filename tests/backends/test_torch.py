"""The torch backend: byte-level validation before torch sees a state, and CUDA streams."""

from __future__ import annotations

import struct
import threading
import zlib

import pytest
import torch

import rngstate
import rngstate.runtime
from rngstate import backends
from rngstate.backends import torch_backend, torch_raw
from rngstate.backends.torch_backend import check_cuda_state
from rngstate.backends.torch_raw import (
    CPU_STATE_SIZE,
    RAW_CPU_SIZE,
    RawCPUState,
    check_cpu_state,
    cpu_state_view,
    legacy_cpu_state,
)
from rngstate.errors import InvalidStateError
from tests.conftest import needs_cuda, run_python


def live_state() -> bytes:
    torch.randn(3)  # leave a cached normal so the flags are exercised
    return torch.get_rng_state().numpy().tobytes()


def test_layout_matches_torch() -> None:
    assert len(live_state()) == CPU_STATE_SIZE
    assert check_cpu_state(live_state(), "s")


@pytest.mark.parametrize(
    ("offset", "value", "fmt"),
    [(8, 0, "<i"), (8, 625, "<i"), (12, 0, "<i"), (16, 625, "<Q"), (24, 2**32, "<Q"), (5040, 2, "<i")],
)
def test_invalid_fields_rejected_before_torch(offset: int, value: int, fmt: str) -> None:
    data = bytearray(live_state())
    struct.pack_into(fmt, data, offset, value)
    with pytest.raises(InvalidStateError):
        check_cpu_state(bytes(data), "s")


def test_bad_float_flag_rejected() -> None:
    data = bytearray(live_state())
    data[5052] = 7  # a C++ bool holding 7 is undefined behaviour
    with pytest.raises(InvalidStateError, match="float-normal"):
        check_cpu_state(bytes(data), "s")


def test_accepted_states_are_accepted_by_torch() -> None:
    # Everything the validator lets through, torch must take and draw from without error.
    stream = backends.stream("torch.cpu")
    data = bytearray(live_state())
    struct.pack_into("<iiQ", data, 8, 1, 1, 624)  # the last word is next; then a twist
    stream.set_state(stream.decode(bytes(data), "s"))
    torch.rand(1000)


@pytest.mark.parametrize("draws", [0, 1, 2, 623, 624, 625, 1000, 1248, 1249])
def test_every_position_torch_produces_passes(draws: int) -> None:
    generator = torch.Generator().manual_seed(11)
    torch.rand(draws, generator=generator)
    check_cpu_state(generator.get_state().numpy().tobytes(), "s")


@pytest.mark.parametrize(("left", "next_index"), [(624, 624), (2, 624), (300, 400), (1, 5), (624, 0)])
def test_positions_reading_past_the_table_are_refused(left: int, next_index: int) -> None:
    # torch's own check (1 <= left <= 624, next <= 624) accepts these; draws would then read
    # words past the 624-word table (left + next must be 625, or left 1 and next 0).
    data = bytearray(live_state())
    struct.pack_into("<iiQ", data, 8, left, 1, next_index)
    with pytest.raises(InvalidStateError, match="mt19937"):
        check_cpu_state(bytes(data), "s")


def test_cuda_state_validation() -> None:
    assert check_cuda_state(struct.pack("<Qq", 5, 8), "c")
    for bad in (struct.pack("<Qq", 5, 6), struct.pack("<Qq", 5, -4), b"\0" * 15):
        with pytest.raises(InvalidStateError):
            check_cuda_state(bad, "c")


def test_generator_device_mismatch() -> None:
    rngstate.seed_everything(1)
    kind = backends.kind("torch.Generator")
    snapshot = kind.decode({"device": "cuda:0", "state": struct.pack("<Qq", 1, 0)}, "g")
    with pytest.raises(InvalidStateError, match="same kind of device"):
        kind.set_state(torch.Generator(), snapshot)


@needs_cuda
def test_cuda_seeded_scoped_and_restored() -> None:
    rngstate.seed_everything(5)
    torch.cuda.init()
    first = torch.rand(3, device="cuda")
    torch.cuda.manual_seed_all(5)
    assert torch.equal(first, torch.rand(3, device="cuda"))
    rngstate.seed_everything(5)
    before = torch.rand(3, device="cuda")
    rngstate.seed_everything(5)
    with rngstate.rng_scope("gpu"):
        inside = torch.rand(3, device="cuda")
    assert torch.equal(torch.rand(3, device="cuda"), before)  # outer CUDA stream untouched
    assert not torch.equal(inside, before)
    state = rngstate.capture()
    assert "torch.cuda" in state.streams and state.metadata["cuda_devices"]
    expected = torch.rand(3, device="cuda")
    rngstate.restore(state)
    assert torch.equal(torch.rand(3, device="cuda"), expected)


@needs_cuda
def test_cuda_initialized_inside_scope_follows_substream() -> None:
    code = """
    import rngstate, torch
    rngstate.seed_everything(5)
    with rngstate.rng_scope("gpu"):
        inside = torch.rand(3, device="cuda").tolist()   # CUDA initializes here
    print(inside, torch.rand(3, device="cuda").tolist())
    """
    early = code.replace("rngstate.seed_everything(5)", "torch.cuda.init(); rngstate.seed_everything(5)")
    assert run_python(code) == run_python(early)


def test_per_sample_seeding_writes_the_engine_as_set_state_would(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = backends.stream("torch.cpu")
    if stream._raw() is None:
        pytest.skip("this torch's CPU generator layout is not the verified one: set_state only")
    material = bytes(range(255, -1, -1)) * 9 + bytes(range(240))
    torch.randn(3, dtype=torch.float64)  # leaves a cached normal that seeding must drop
    stream.seed_from_material(material)  # straight into the engine
    fast = bytes(torch.get_rng_state().numpy()), torch.randn(5, dtype=torch.float64), torch.rand(700)
    monkeypatch.setattr(stream, "_raw", lambda: None)
    torch.randn(3, dtype=torch.float64)
    stream.seed_from_material(material)  # through set_state
    slow = bytes(torch.get_rng_state().numpy()), torch.randn(5, dtype=torch.float64), torch.rand(700)
    assert fast[0] == slow[0] and torch.equal(fast[1], slow[1]) and torch.equal(fast[2], slow[2])
    assert torch.initial_seed() == int.from_bytes(material[:8], "little") & (2**63 - 1)


def test_per_sample_seeding_writes_a_whole_table_torch_accepts() -> None:
    import torch

    stream = backends.stream("torch.cpu")
    material = bytes(range(256)) * 9 + bytes(range(240))  # seed at 0-7, table at 20-2515
    stream.seed_from_material(material)
    state = bytes(torch.get_rng_state().numpy())
    check_cpu_state(state, "seeded")
    assert torch.initial_seed() == int.from_bytes(material[:8], "little") & (2**63 - 1)
    words = struct.unpack_from("<624Q", state, 24)
    expected = struct.unpack("<624I", material[20:2516])
    assert words == (expected[0] | 0x80000000, *expected[1:])
    first = torch.rand(4)
    stream.seed_from_material(material)
    assert torch.equal(torch.rand(4), first)
    with pytest.raises(InvalidStateError, match="2544 bytes"):
        stream.seed_from_material(material[:32])
# -- the raw CPU state copy (the scope fast path) ------------------------------------------------


def busy_generator(seed: int) -> torch.Generator:
    """A CPU generator past a twist, holding a cached double normal."""
    generator = torch.Generator().manual_seed(seed)
    torch.rand(700, generator=generator)
    torch.randn(1, dtype=torch.float64, generator=generator)
    return generator


def state_bytes(generator: torch.Generator) -> bytes:
    return bytes(generator.get_state().numpy().tobytes())


def test_raw_view_reads_what_get_state_says() -> None:
    generator = busy_generator(3)
    raw = cpu_state_view(generator)
    assert raw is not None and raw.view.nbytes == RAW_CPU_SIZE  # verified on this torch
    assert legacy_cpu_state(RawCPUState(raw.view.tobytes())) == state_bytes(generator)


def test_raw_copy_equals_set_state() -> None:
    source = busy_generator(4)
    fast, slow = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    fast_raw, source_raw = cpu_state_view(fast), cpu_state_view(source)
    assert fast_raw is not None and source_raw is not None
    fast_raw.view[:] = source_raw.view
    slow.set_state(source.get_state())
    assert state_bytes(fast) == state_bytes(slow) == state_bytes(source)
    for draw in (lambda g: torch.randn(3, dtype=torch.float64, generator=g),  # the cached double first
                 lambda g: torch.rand(2000, generator=g)):
        assert torch.equal(draw(fast), draw(slow))


def test_stream_exchange_fast_path_equals_slow_path(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = backends.stream("torch.cpu")
    outer, inner = busy_generator(5).get_state(), busy_generator(6).get_state()
    results = []
    for fast in (True, False):
        if not fast:  # as where the layout is not verified: get_state/set_state
            monkeypatch.setattr(stream, "_engine", None)
            monkeypatch.setattr(stream, "_generator", torch.default_generator)
        torch.set_rng_state(outer)
        previous = stream.exchange(inner)  # a tensor, as get_state gives and restore installs
        assert type(previous) is (RawCPUState if fast else torch.Tensor)
        assert torch.get_rng_state().equal(inner)
        back = stream.exchange(previous)
        assert torch.get_rng_state().equal(outer)
        again = stream.exchange(back)  # a raw snapshot on the fast path
        assert torch.get_rng_state().equal(inner)
        swapped = stream.exchange(stream.decode(stream.encode(again), "s"))  # bytes, as from a file
        assert torch.get_rng_state().equal(outer)
        stream.set_state(swapped)
        assert torch.get_rng_state().equal(inner)
        results.append([stream.encode(snapshot) for snapshot in (previous, back, again, swapped)])
    expected = [state_bytes_of(outer), state_bytes_of(inner)] * 2
    assert results[0] == results[1] == expected


def state_bytes_of(tensor: torch.Tensor) -> bytes:
    return bytes(tensor.numpy().tobytes())


def test_layout_check_failing_falls_back_to_get_and_set_state(monkeypatch: pytest.MonkeyPatch) -> None:
    # The float cache one word early (in the engine's padding): the check must notice.
    monkeypatch.setattr(torch_raw, "_FLOAT_CACHE_AT", torch_raw._FLOAT_CACHE_AT - 4)
    assert torch_raw._find_engine(torch) is None
    monkeypatch.setattr(torch_raw, "_LAYOUT", [None])
    stream = backends.stream("torch.cpu")
    monkeypatch.setattr(stream, "_generator", None)  # look again
    monkeypatch.setattr(stream, "_engine", None)
    assert cpu_state_view(torch.default_generator) is None
    rngstate.seed_everything(2)
    expected = torch.rand(3)
    rngstate.seed_everything(2)
    with rngstate.rng_scope("a"):
        inside = torch.rand(3)
    with rngstate.rng_scope("a"):
        torch.rand(3)
    assert torch.equal(torch.rand(3), expected)
    assert type(rngstate.runtime.RUNTIME.substreams["a"]["torch.cpu"]) is torch.Tensor
    rngstate.seed_everything(2)
    with rngstate.rng_scope("a"):
        assert torch.equal(torch.rand(3), inside)


def test_raw_copies_hold_the_generator_mutex_and_leave_it_to_torch_when_busy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A raw copy takes the mutex torch's draws take; one that finds it held goes the public
    way (get_state / set_state, which wait for it)."""
    stream = backends.stream("torch.cpu")
    rngstate.seed_everything(0)
    engine = stream._raw()
    if engine is None:
        pytest.skip("this torch's CPU generator layout is not the verified one: no raw copies")
    raw = stream.get_state()
    assert type(raw) is RawCPUState and type(stream.exchange(raw)) is RawCPUState
    assert torch_raw.trylock(engine.mutex)  # what a copy holds: torch's draws wait for it
    try:
        drawn: list[torch.Tensor] = []
        drawer = threading.Thread(target=lambda: drawn.append(torch.rand(3)))  # without the GIL
        drawer.start()
        drawer.join(0.3)
        assert drawer.is_alive() and not drawn
    finally:
        torch_raw.unlock(engine.mutex)
    drawer.join()
    assert drawn
    torch.rand(5)
    before = stream.encode(stream.get_state())
    monkeypatch.setattr(torch_backend, "_trylock", lambda address: 16)  # EBUSY: as if torch drew now
    previous = stream.exchange(raw)
    assert isinstance(previous, torch.Tensor) and stream.encode(previous) == before
    assert stream.encode(stream.get_state()) == stream.encode(raw)


def test_the_mutex_check_refuses_a_region_torch_does_not_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    probe = torch.Generator()
    impl = torch_raw._impl_address(probe)
    assert torch_raw._find_mutex(torch, probe, impl) == impl + torch_raw._MUTEX_AT
    monkeypatch.setattr(torch_raw, "_MUTEX_AT", torch_raw._MUTEX_AT + 8)  # inside the mutex
    assert torch_raw._find_mutex(torch, probe, impl) is None


def test_no_torn_state_while_a_torch_thread_draws() -> None:
    """Issue 25: scopes swapping the CPU generator while a torch.jit.fork task draws on torch's
    inter-op thread (invisible to Python's thread count) tore (left, next) in about 1 of 12
    captures here; every state kept or saved must be one torch can load."""
    rngstate.seed_everything(0)
    future = _launch(100_000)
    captures, scopes = [], 0
    while not future.done() or scopes < 500:
        with rngstate.rng_scope(f"s{scopes % 7}"):
            torch.rand(2)
        if scopes % 5 == 0:
            captures.append(rngstate.capture())
        scopes += 1
    torch.jit.wait(future)
    for state in [*captures, rngstate.capture()]:
        rngstate.RNGState.from_dict(state.to_dict())  # every torch state checked in full


@torch.jit.script
def _draw_many(n: int) -> torch.Tensor:
    total = torch.zeros(1)
    for _ in range(n):
        total += torch.rand(50).sum()
    return total


@torch.jit.script
def _launch(n: int) -> torch.jit.Future[torch.Tensor]:
    return torch.jit.fork(_draw_many, n)  # forked from TorchScript: runs on the inter-op pool


def test_no_collection_runs_while_a_raw_copy_holds_the_mutex() -> None:
    """torch's mutex is not reentrant: a finalizer drawing from torch under it would wait for
    ever, so the raw copies make nothing the cyclic collector tracks while they hold it."""
    import gc

    stream = backends.stream("torch.cpu")
    rngstate.seed_everything(0)
    engine = stream._raw()
    if engine is None:
        pytest.skip("this torch's CPU generator layout is not the verified one: no raw copies")
    held: list[bool] = []

    def look(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            free = torch_raw.trylock(engine.mutex)
            if free:
                torch_raw.unlock(engine.mutex)
            held.append(not free)

    with rngstate.rng_scope("a"):
        torch.rand(1)
    raw = stream.get_state()
    material = bytes(stream.sample_material)
    threshold = gc.get_threshold()
    gc.callbacks.append(look)
    gc.set_threshold(1)
    try:
        for _ in range(50):
            with rngstate.rng_scope("a"):
                torch.rand(1)
            stream.exchange(stream.exchange_outer(raw))
            stream.set_state(stream.exchange_material(material))
    finally:
        gc.set_threshold(*threshold)
        gc.callbacks.remove(look)
    assert held and not any(held)


def test_an_impossible_outer_state_is_never_kept_or_written() -> None:
    """Entering a scope leaves checking the outer state to where it is kept or written
    (issue 25): a capture inside the scope refuses it, exiting puts the very same bytes back,
    and the substream a scope keeps is checked as it leaves the generator."""
    stream = backends.stream("torch.cpu")
    rngstate.seed_everything(0)
    engine = stream._raw()
    if engine is None:
        pytest.skip("this torch's CPU generator layout is not the verified one: no raw copies")
    with rngstate.rng_scope("a"):
        torch.rand(1)
    good = engine.view.tobytes()
    bad = bytearray(good)
    struct.pack_into("<i", bad, 8, 624)  # left = 624 with next = 624: reads past the table
    struct.pack_into("<I", bad, 16, 624)
    engine.view[:] = bad
    try:
        with rngstate.rng_scope("a"), pytest.raises(InvalidStateError):
            rngstate.capture()
        assert engine.view.tobytes() == bytes(bad)  # put back as it was, not kept anywhere
        with pytest.raises(InvalidStateError, match="impossible state"), rngstate.rng_scope("b"):
            engine.view[:] = bad  # the substream itself goes bad inside the scope
    finally:
        engine.view[:] = good
    assert stream.encode(stream.get_state()) == check_cpu_state(stream.encode(stream.get_state()), "s")


def test_state_bytes_are_the_same_raw_or_through_get_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """A step trace fingerprints torch's state as state_bytes: the raw engine's fields and the
    get_state bytes' must give the same bytes, caches engaged or not, and differ when any
    field does; padding and stale cache values do not count."""
    stream = backends.stream("torch.cpu")
    seen = set()
    for draw in (lambda: None, lambda: torch.rand(3), lambda: torch.randn(1, dtype=torch.float64),
                 lambda: torch.rand(700)):
        draw()
        fast = stream.state_bytes()
        assert stream.state_crc() == zlib.crc32(fast)  # read in place, to the same bytes
        assert fast == stream.snapshot_bytes(stream.get_state())
        assert fast == stream.snapshot_bytes(torch.default_generator.get_state())
        assert fast == stream.snapshot_bytes(stream.decode(stream.encode(stream.get_state()), "s"))
        assert fast == torch_raw.legacy_fingerprint_bytes(state_bytes_of(torch.default_generator.get_state()))
        with monkeypatch.context() as patch:  # where the layout is not verified: get_state
            patch.setattr(stream, "_engine", None)
            patch.setattr(stream, "_generator", torch.default_generator)
            assert stream.state_bytes() == fast
            assert stream.state_crc() == zlib.crc32(fast)
        seen.add(fast)
    assert len(seen) == 4
    engine = cpu_state_view(torch.default_generator)
    assert engine is not None
    raw = bytearray(engine.view.tobytes())
    before = torch_raw.engine_fingerprint_bytes(bytes(raw))
    for at in (13, 14, 15, 2516, 2519):  # padding
        raw[at] ^= 0xFF
    raw[2524] = raw[2536] = 0  # both caches disengaged: their values are stale bytes
    raw[2520] ^= 1
    raw[2528] ^= 1
    assert torch_raw.engine_fingerprint_bytes(bytes(raw)) == torch_raw.engine_fingerprint_bytes(
        bytes(raw[:2520]) + bytes(24))
    raw[20] ^= 1  # a word of the table
    assert torch_raw.engine_fingerprint_bytes(bytes(raw)) != before
    for float_valid, double_valid in ((0, 0), (1, 0), (0, 1), (1, 1)):  # in place, each cache
        raw[2524], raw[2536] = float_valid, double_valid
        expected = zlib.crc32(torch_raw.engine_fingerprint_bytes(bytes(raw)))
        assert torch_raw.engine_crc(torch_raw.engine_pieces(memoryview(raw))) == expected
