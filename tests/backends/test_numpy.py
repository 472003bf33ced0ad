"""The NumPy backend: every bit generator, range checks NumPy itself does not make."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

import rngstate
from rngstate import backends
from rngstate.backends.numpy_backend import decode_bit_generator_state, encode_bit_generator_state
from rngstate.errors import InvalidStateError
from tests.conftest import run_python

BIT_GENERATORS = ["MT19937", "PCG64", "PCG64DXSM", "Philox", "SFC64"]


@pytest.mark.parametrize("name", BIT_GENERATORS)
def test_round_trip_every_bit_generator(name: str) -> None:
    rng = np.random.Generator(getattr(np.random, name)(7))
    rng.integers(0, 10, size=3, dtype=np.uint32)  # leaves a buffered uint32 on some
    plain = encode_bit_generator_state(rng.bit_generator.state, legacy=False)
    expected = rng.random(5)
    rng.bit_generator.state = decode_bit_generator_state(plain, "s", legacy=False)
    assert np.array_equal(rng.random(5), expected)


@pytest.mark.parametrize("name", BIT_GENERATORS)
def test_legacy_random_state_with_gauss(name: str) -> None:
    kind = backends.kind("numpy.RandomState")
    rs = np.random.RandomState(getattr(np.random, name)(3))
    rs.standard_normal()
    plain = kind.encode(kind.get_state(rs))
    expected = rs.standard_normal(3)
    kind.set_state(rs, kind.decode(plain, "s"))
    assert np.array_equal(rs.standard_normal(3), expected)


@pytest.mark.parametrize(
    ("name", "field", "value"),
    [
        ("MT19937", ("state", "pos"), 625),
        ("MT19937", ("state", "pos"), -1),
        ("Philox", ("buffer_pos",), 5),
        ("Philox", ("state", "counter"), b"\0" * 31),
        ("PCG64", ("state", "state"), 2**128),
        ("PCG64", ("has_uint32",), 2),
        ("SFC64", ("uinteger",), 2**32),
    ],
)
def test_out_of_range_fields_rejected(name: str, field: tuple[str, ...], value: object) -> None:
    plain = encode_bit_generator_state(getattr(np.random, name)(1).state, legacy=False)
    target = plain
    for key in field[:-1]:
        target = target[key]
    target[field[-1]] = value
    with pytest.raises(InvalidStateError, match=field[-1]):
        decode_bit_generator_state(plain, "s", legacy=False)


def test_bit_generator_mismatch_is_an_error() -> None:
    kind = backends.kind("numpy.Generator")
    plain = encode_bit_generator_state(np.random.PCG64(1).state, legacy=False)
    with pytest.raises(InvalidStateError, match="same bit generator"):
        kind.set_state(np.random.Generator(np.random.SFC64()), kind.decode(plain, "s"))


# -- exact restore of every bit generator across processes (issue 12, item 1) -------------------

_ACROSS = """
import sys, numpy as np, rngstate
from rngstate.errors import InvalidStateError
mode, path, name, switch_first = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
rngstate.seed_everything(3)
make = getattr(np.random, name)
if mode == "save" or switch_first == "1":
    np.random.set_bit_generator(make(5))  # NumPy's own API: the global uses another generator
rs = rngstate.track(np.random.RandomState(make(6)), "rs")
gen = rngstate.track(np.random.Generator(make(7)), "gen")
if mode == "save":
    np.random.random(7); np.random.standard_normal(); rs.standard_normal(); gen.integers(0, 9, 3)
    rngstate.save(path)
else:
    rngstate.restore(rngstate.load(path))
    assert type(np.random.mtrand._rand._bit_generator).__name__ == name
draws = [np.random.random(3).tolist(), np.random.standard_normal(2).tolist(),
         rs.random(2).tolist(), rs.standard_normal(2).tolist(), gen.random(2).tolist()]
# Stress: a dangling C generator shows as wrong numbers, an abort or "corrupted" heap messages.
for _ in range(3000):
    np.random.random(64); rs.standard_normal(16); gen.random(16)
    junk = [np.zeros(40) for _ in range(8)]
    del junk
print(repr(draws))
"""


@pytest.mark.parametrize("name", BIT_GENERATORS)
def test_every_bit_generator_restores_exactly_in_a_new_process(name: str, tmp_path: Path) -> None:
    path = str(tmp_path / "np.state")
    saved = run_python(_ACROSS, "save", path, name, "1")
    assert run_python(_ACROSS, "load", path, name, "1") == saved  # same generator type live
    assert run_python(_ACROSS, "load", path, name, "0") == saved  # global switched back by restore


def test_global_switches_back_to_the_saved_bit_generator() -> None:
    rngstate.seed_everything(3)
    state = rngstate.capture()  # MT19937
    expected = np.random.random(3).tolist()
    np.random.set_bit_generator(np.random.SFC64(1))
    try:
        rngstate.restore(state)
        assert type(np.random.mtrand._rand._bit_generator) is np.random.MT19937
        assert np.random.random(3).tolist() == expected
    finally:
        np.random.seed(0)


def test_tracked_random_state_of_another_bit_generator_is_refused() -> None:
    kind = backends.kind("numpy.RandomState")
    plain = kind.encode(kind.get_state(np.random.RandomState(np.random.PCG64(1))))
    rs = np.random.RandomState(np.random.SFC64(2))
    before = rs.get_state(legacy=False)
    with pytest.raises(InvalidStateError, match="same bit generator"):
        kind.set_state(rs, kind.decode(plain, "s"))
    assert type(rs._bit_generator) is np.random.SFC64
    assert np.array_equal(rs.get_state(legacy=False)["state"]["state"], before["state"]["state"])


def test_raw_copies_hold_the_bit_generators_lock_whatever_the_threads() -> None:
    """NumPy's draws release the GIL holding the bit generator's lock: a raw copy waits for
    it too, single-threaded or not (issue 25: no fast path on a guess about threads)."""
    import threading

    import rngstate
    from rngstate import backends

    stream = backends.stream("numpy")
    rngstate.seed_everything(0)
    assert stream._raw() is not None
    snapshots: list[object] = []
    with np.random.mtrand._rand._bit_generator.lock:  # NumPy's own, which its draws hold
        reader = threading.Thread(target=lambda: snapshots.append(stream.exchange(stream.get_state())))
        reader.start()
        reader.join(0.2)
        assert reader.is_alive() and not snapshots  # the raw copy waits for the lock
    reader.join()
    assert type(snapshots[0]).__name__ == "RawSnapshot"


def test_no_collection_runs_while_a_raw_copy_holds_the_lock() -> None:
    """A collection runs finalizers, which may draw from np.random: under the bit generator's
    lock that draw would wait for ever (a Lock) or land between a copy's read and write, and
    be lost (an RLock).  So nothing the collector tracks is made while a raw copy holds it
    (with threshold 1, any such object would collect)."""
    import gc

    import rngstate
    from rngstate import backends

    stream = backends.stream("numpy")
    rngstate.seed_everything(0)
    assert stream._raw() is not None
    lock = np.random.mtrand._rand._bit_generator.lock
    is_held = getattr(lock, "_is_owned", None) or lock.locked  # RLock: held by this thread
    held: list[bool] = []

    def look(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            held.append(is_held())

    with rngstate.rng_scope("a"):
        np.random.rand()
    snapshot = stream.get_state()
    material = bytes(stream.sample_material)
    threshold = gc.get_threshold()
    gc.callbacks.append(look)
    gc.set_threshold(1)
    try:
        for _ in range(50):
            with rngstate.rng_scope("a"):
                np.random.rand()
            stream.exchange(stream.exchange(snapshot))
            stream.set_state(stream.exchange_material(material))
    finally:
        gc.set_threshold(*threshold)
        gc.callbacks.remove(look)
    assert held and not any(held)


def test_state_bytes_are_the_same_raw_or_through_get_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a step trace fingerprints of the global: equal for the raw views, a snapshot, a
    decoded snapshot and get_state(); different after a draw and with a cached Gaussian; None
    for a global of another bit generator (then encode's fingerprint is taken)."""
    stream = backends.stream("numpy")
    np.random.seed(3)
    seen = set()
    for draw in (lambda: None, np.random.random, np.random.standard_normal, lambda: np.random.random(700)):
        draw()
        fast = stream.state_bytes()
        assert fast is not None
        assert stream.state_crc() == zlib.crc32(fast)  # read in place, to the same bytes
        assert fast == stream.snapshot_bytes(stream.get_state())
        assert fast == stream.snapshot_bytes(np.random.get_state(legacy=False))
        assert fast == stream.snapshot_bytes(stream.decode(stream.encode(stream.get_state()), "s"))
        with monkeypatch.context() as patch:  # where the layout is not verified: get_state
            patch.setattr(stream, "_gauss_offset", None)
            patch.setattr(stream, "_owners", (None, None))
            assert stream.state_bytes() == fast
            assert stream.state_crc() == zlib.crc32(fast)
        stream._owners = (None, None)  # type: ignore[attr-defined]
        assert stream.state_crc() == zlib.crc32(fast)  # views made afresh on the way
        seen.add(fast)
    assert len(seen) == 4
    assert stream.snapshot_bytes(np.random.Generator(np.random.PCG64(1)).bit_generator.state) is None
