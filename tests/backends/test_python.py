"""The Python backend: encoding of random's state, Gaussian cache included."""

from __future__ import annotations

import random
import struct
import zlib

import pytest

from rngstate import backends
from rngstate.errors import InvalidStateError


def test_round_trip_with_and_without_gauss() -> None:
    stream = backends.stream("python")
    for warm_gauss in (False, True):
        random.seed(5)
        if warm_gauss:
            random.gauss(0, 1)
        plain = stream.encode(stream.get_state())
        expected = [random.gauss(0, 1), random.random()]
        stream.set_state(stream.decode(plain, "s"))
        assert [random.gauss(0, 1), random.random()] == expected


def test_bad_fields() -> None:
    stream = backends.stream("python")
    plain = stream.encode(stream.get_state())
    for key, value in (("pos", 625), ("version", 2), ("mt", b"1"), ("has_gauss", 3), ("gauss", 1.0)):
        broken = {**plain, key: value}
        with pytest.raises(InvalidStateError, match=key):
            stream.decode(broken, "s")


def test_seeding_from_material_writes_the_whole_table() -> None:
    stream = backends.stream("python")
    material = bytes(range(4, 256)) + bytes(range(256)) * 8 + bytes(range(204))  # a table at 4-2499
    words = list(struct.unpack("<624I", material[4:2500]))  # word 0 has its top bit clear
    random.gauss(0, 1)  # leaves a cached Gaussian that seeding must clear
    stream.seed_from_material(material)
    assert random.getstate() == (3, (words[0] | 0x80000000, *words[1:], 1), None)
    with pytest.raises(InvalidStateError, match="2504 bytes"):
        stream.seed_from_material(material[:32])


def test_no_raw_copies_on_a_free_threaded_build(monkeypatch: pytest.MonkeyPatch) -> None:
    # random's C methods lock the object there instead of relying on the GIL: a copy cannot.
    from rngstate.backends import python_raw

    assert python_raw._raw_layout_verified() is (not python_raw.free_threaded())
    monkeypatch.setattr(python_raw.sysconfig, "get_config_var", {"Py_GIL_DISABLED": 1}.get)
    assert python_raw.free_threaded() and not python_raw._raw_layout_verified()


def test_state_bytes_are_the_same_raw_or_through_getstate(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a step trace fingerprints: equal for the raw view, a snapshot, a decoded snapshot
    and random.getstate(); different after a draw and with a cached Gaussian."""
    stream = backends.stream("python")
    random.seed(3)
    seen = set()
    for draw in (lambda: None, random.random, lambda: random.gauss(0, 1), lambda: random.getrandbits(20000)):
        draw()
        fast = stream.state_bytes()
        assert fast is not None
        assert stream.state_crc() == zlib.crc32(fast)  # read in place, to the same bytes
        assert fast == stream.snapshot_bytes(stream.get_state()) == stream.snapshot_bytes(random.getstate())
        assert fast == stream.snapshot_bytes(stream.decode(stream.encode(stream.get_state()), "s"))
        monkeypatch.setattr(stream, "_fast", False)
        monkeypatch.setattr(stream, "_instance", None)  # look again: no raw view now
        assert stream.state_bytes() == fast
        assert stream.state_crc() == zlib.crc32(fast)
        monkeypatch.undo()
        stream._instance = None  # type: ignore[attr-defined]
        seen.add(fast)
    assert len(seen) == 4
    assert stream.snapshot_bytes((2, (1, 2, 3), None)) is None  # not version 3: encode's fingerprint
