"""The NumPy backend: every bit generator, range checks NumPy itself does not make."""

from __future__ import annotations

import numpy as np
import pytest

from rngstate import backends
from rngstate.backends.numpy import decode_bit_generator_state, encode_bit_generator_state
from rngstate.errors import InvalidStateError

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
