"""Fuzzing (issue 5): files and state dicts, mutated from valid ones or made up from scratch.

The properties, checked for every case:

- a file loads, or raises ``StateFileError`` (``TopologyError`` for a well-formed collective
  file without this rank) saying what is wrong; nothing else escapes, nothing hangs;
- a dict is accepted by ``RNGState.from_dict``, or refused with ``InvalidStateError``;
- every accepted state survives ``to_dict``/``from_dict`` and the file format unchanged;
- restoring an accepted state either works or raises an ``RNGStateError`` and changes nothing;
  when it works, restoring it again gives the very same draws (no garbage read by C++ code).

The suite runs a quick pass (``RNGSTATE_FUZZ_EXAMPLES``, default 150 per test); the mutators
and checks are shared with ``scripts/fuzz_long.py``, which runs 100,000+ cases.
"""

from __future__ import annotations

import copy
import os
import random
import struct
import sys
import warnings
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rngstate
from rngstate import backends, fileformat
from rngstate.errors import InvalidStateError, TopologyError
from rngstate.runtime import RUNTIME

DATA = Path(__file__).resolve().parent / "data"
EXAMPLES = int(os.environ.get("RNGSTATE_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class FuzzError(AssertionError):
    """A case broke a property; the message says which."""


# -- valid starting points -------------------------------------------------------------------


def synthetic_paddle_cpu() -> dict[str, Any]:
    """A plain ``paddle.cpu`` state Paddle would produce, made without importing Paddle."""
    words = random.Random(3).getrandbits(64 * 312).to_bytes(8 * 312, "little")
    return {"device": -1, "seed": 5, "offset": 0, "mt": words, "pos": 312}


@cache
def base_states() -> tuple[dict[str, Any], ...]:
    """Valid plain states: a rich current one, and the committed file of rngstate 0.1.0."""
    from tests.test_state import rich_state

    rich = rich_state().to_dict()
    if "paddle.cpu" in backends.stream_names():  # decode-level coverage, Paddle not imported
        rich["streams"]["paddle.cpu"] = synthetic_paddle_cpu()
        rich["substreams"]["a"]["paddle.cpu"] = synthetic_paddle_cpu()
    old = fileformat.read(DATA / "v1.rngstate")
    return rich, old


@cache
def base_files() -> tuple[bytes, ...]:
    """Valid files: the states above, and collective files (every rank's file in one)."""
    rich, old = base_states()
    rich_blob, old_blob = fileformat.pack(rich), fileformat.pack(old)
    collective = {"rngstate_collective": 1, "world_size": 2, "ranks": [rich_blob, old_blob]}
    return rich_blob, old_blob, fileformat.pack(collective)


# -- mutators (a random.Random drives them: hypothesis' or a seeded one) ---------------------


INTS = [0, 1, -1, 2, 3, 4, 311, 312, 313, 623, 624, 625, 2**31 - 1, 2**31, 2**32 - 1, 2**32,
        2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 2**127, 2**128 - 1, 2**128,
        2**511 - 1, 2**511, 10**5000]
TEXTS = ["", "x", "python", "numpy", "torch.cpu", "torch.cuda", "paddle.cpu", "paddle.gpu", "jax.cpu",
         "MT19937", "PCG64", "Philox", "SFC64", "Evil", "cpu", "cuda:0", "tpu", "a//b", "/a", "#rank1",
         "#x", "torch.Generator", "numpy.Generator", "numpy.RandomState", "python.Random", "x" * 300,
         "\x00", "new\nline"]


def junk(rng: random.Random, depth: int = 0) -> Any:
    """A random value, plain or not."""
    choice = rng.randrange(14 if depth < 3 else 10)
    if choice == 0:
        return rng.choice(INTS)
    if choice == 1:
        return rng.randint(-(2**70), 2**70)
    if choice == 2:
        return rng.choice(TEXTS)
    if choice == 3:
        return rng.randbytes(rng.choice([0, 1, 8, 15, 16, 17, 100, 2496, 2500, 5056]))
    if choice == 4:
        return rng.choice([None, True, False, 1.5, float("nan"), float("inf")])
    if choice == 5:
        return b"\x00" * rng.choice([16, 2496, 5056])
    if choice == 6:
        return struct.pack("<Qq", rng.getrandbits(64), rng.choice([0, 4, 6, -4]))
    if choice == 7:
        return {}
    if choice == 8:
        return []
    if choice == 9:
        return rng.getrandbits(rng.choice([8, 32, 64, 128]))
    if choice == 10:
        return [junk(rng, depth + 1) for _ in range(rng.randrange(4))]
    if choice == 11:
        return {rng.choice(TEXTS): junk(rng, depth + 1) for _ in range(rng.randrange(4))}
    if choice == 12:
        return {rng.choice(INTS[:5]): junk(rng, depth + 1)}  # non-str keys
    nested: Any = junk(rng, depth + 1)
    for _ in range(rng.randrange(1, 80)):
        nested = [nested]
    return nested


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths(item, (*prefix, index))
    return found


def get(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


def tweak(rng: random.Random, value: Any, donor: Any) -> Any:
    """A near miss of ``value``: the kind of damage a bug or a bad edit does."""
    if isinstance(value, bool) or value is None:
        return junk(rng)
    if isinstance(value, int):
        small = value.bit_length() < 64
        return rng.choice([value + 1, value - 1, -value, value * 2**rng.randrange(1, 70), value ^ 1,
                           rng.choice(INTS), str(value) if small else "big", float(value) if small else 0.5])
    if isinstance(value, bytes):
        data = bytearray(value)
        op = rng.randrange(5)
        if op == 0 and data:
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif op == 1 and data:
            data[rng.randrange(len(data))] = rng.choice([0, 1, 2, 0x7F, 0x80, 0xFF])
        elif op == 2:
            del data[rng.randrange(len(data) + 1):]
        elif op == 3:
            data += rng.randbytes(rng.randint(1, 8))
        else:
            return list(value[:8]) if rng.random() < 0.5 else value.decode("latin-1")
        return bytes(data)
    if isinstance(value, str):
        return rng.choice([value + "x", value[:-1], value.upper(), "/" + value, value.encode(),
                           rng.choice(TEXTS)])
    if isinstance(value, list):
        return rng.choice([value[:-1], [*value, copy.deepcopy(rng.choice(value)) if value else 0],
                           list(reversed(value)), tuple(value), donor])
    if isinstance(value, dict):
        return rng.choice([list(value.values()), donor, {**value, "extra": junk(rng)}])
    return junk(rng)


def mutate_dict(rng: random.Random, base: dict[str, Any]) -> dict[str, Any]:
    """One to three structural mutations of a deep copy of ``base``."""
    data = copy.deepcopy(base)
    for _ in range(rng.randint(1, 3)):
        targets = paths(data)
        path = rng.choice(targets)
        donor = copy.deepcopy(get(data, rng.choice(targets)))
        if not path:
            data = rng.choice([{**data, "extra": 1}, {k: v for k, v in data.items() if k != "streams"}, data])
            continue
        parent, key = get(data, path[:-1]), path[-1]
        op = rng.randrange(6)
        if op == 0:
            parent[key] = junk(rng)
        elif op == 1:
            del parent[key]
        elif op == 2 and isinstance(parent, dict):
            parent[rng.choice(TEXTS)] = junk(rng) if rng.random() < 0.5 else donor
        elif op == 3:
            parent[key] = donor  # a valid piece in the wrong place
        else:
            parent[key] = tweak(rng, parent[key], donor)
        if not isinstance(data, dict):
            break
    return data


def container(payload: bytes, version: int | None = None, flags: int = 0) -> bytes:
    """A correct header (checksum included) around ``payload``."""
    fields = fileformat._FIELDS.pack(fileformat.FORMAT_VERSION if version is None else version,
                                     flags, len(payload))
    return fileformat.MAGIC + fields + fileformat._checksum(fields, payload) + payload


def mutate_file(rng: random.Random, blob: bytes) -> bytes:
    """Damage a valid file the ways disks, transfers and people do."""
    data = bytearray(blob)
    op = rng.randrange(10)
    if op == 0:  # bit flips
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif op == 1:  # truncation
        del data[rng.randrange(len(data)):]
    elif op == 2:  # garbage appended
        data += rng.randbytes(rng.randint(1, 64))
    elif op == 3:  # a slice lost
        start = rng.randrange(len(data))
        del data[start:start + rng.randint(1, 4096)]
    elif op == 4:  # a slice overwritten (zeros, as after a crash, or noise)
        start = rng.randrange(len(data))
        size = rng.randint(1, 4096)
        data[start:start + size] = bytes(size) if rng.random() < 0.5 else rng.randbytes(size)
        del data[len(blob):]
    elif op == 5:  # header fields rewritten, checksum left alone
        offset = len(fileformat.MAGIC) + rng.choice([0, 2, 4])
        width = 8 if offset == len(fileformat.MAGIC) + 4 else 2
        data[offset:offset + width] = rng.getrandbits(8 * width).to_bytes(width, "big")
    elif op == 6:  # text-mode mangling
        data = bytearray(bytes(data).replace(b"\r\n", b"\n"))
    elif op in (7, 8):  # payload damaged, header recomputed: the msgpack and state layers see it
        payload = bytearray(data[fileformat.HEADER_SIZE:])
        for _ in range(rng.randint(1, 6)):
            if payload:
                position = rng.randrange(len(payload))
                payload[position] = rng.choice([rng.randrange(256), 0xC0, 0xC1, 0xC7, 0xD4, 0xDD, 0xDF])
        if op == 8 and payload:
            cut = rng.randrange(len(payload))
            payload = payload[:cut] + payload[cut + rng.randint(0, 64):]
        return container(bytes(payload), version=rng.choice([None, None, None, 0, 2, 65535]),
                         flags=rng.choice([0, 0, 0, 1]))
    else:  # another valid file's payload under this header
        other = rng.choice(base_files())
        data = data[:fileformat.HEADER_SIZE] + bytearray(other[fileformat.HEADER_SIZE:])
    return bytes(data)


def random_file(rng: random.Random) -> bytes:
    size = rng.choice([0, 1, 12, 13, 14, 56, 57, 58, 100, 5000])
    prefix = rng.choice([b"", fileformat.MAGIC, b"\x80\x04", b"PK\x03\x04", b"{", b"\x93NUMPY"])
    return prefix + rng.randbytes(size)


# -- the properties --------------------------------------------------------------------------


def draws() -> str:
    """One draw from every stream and tracked generator, as text (NaN == NaN here)."""
    out: list[Any] = [random.random(), random.gauss(0, 1), np.random.rand(), np.random.standard_normal(),
                      torch.rand(2).tolist(), torch.randn(2).tolist()]
    managed = {backends.framework_of(name) for name in RUNTIME.active}
    if "paddle" in managed:  # scripts/fuzz_long.py --frameworks: states reach Paddle's C++ code
        paddle = sys.modules["paddle"]
        out += [paddle.rand([2]).tolist(), paddle.randn([2]).tolist()]
    context = sys.modules.get("tensorflow.python.eager.context")
    if "tensorflow" in managed and context and context.context()._seed is not None:  # else unseeded
        out.append(sys.modules["tensorflow"].random.uniform([2]).numpy().tolist())
    for key in sorted(RUNTIME.tracked):
        obj = RUNTIME.tracked[key].obj
        if isinstance(obj, torch.Generator):
            out.append(torch.rand(2, generator=obj).tolist())
        elif isinstance(obj, np.random.Generator):
            out.append(obj.random(2).tolist())
        else:
            out.append(obj.random_sample() if isinstance(obj, np.random.RandomState) else obj.random())
    return repr(out)


def draws_in(state: rngstate.RNGState) -> str:
    """Draws outside, then inside a few of the state's substreams."""
    out = [draws()]
    for path in state.substreams[:3]:
        with rngstate.rng_scope(path):
            out.append(draws())
    return "\n".join(out)


def check_state(state: rngstate.RNGState, strict: bool) -> str:
    """Round trips, then restore: all or nothing, and deterministic when it works."""
    data = state.to_dict()
    if rngstate.RNGState.from_dict(data) != state:
        raise FuzzError("to_dict/from_dict changed the state")
    try:
        blob = fileformat.pack(data)
    except rngstate.StateFileError as exc:
        raise FuzzError(f"an accepted state cannot be written: {exc}") from None
    if rngstate.RNGState.from_dict(fileformat.unpack(blob)) != state:
        raise FuzzError("the file format changed the state")
    before = rngstate.capture()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            rngstate.restore(state, strict=strict)
        except rngstate.RNGStateError:
            if rngstate.capture() != before:
                raise FuzzError("a failed restore changed the live generators") from None
            return "refused by restore"
        try:
            first = draws_in(state)
            if strict:  # then the state covers every live generator: the draws are all its own
                rngstate.restore(state)
                if draws_in(state) != first:
                    raise FuzzError("restoring the same state twice gave different draws")
        finally:
            rngstate.restore(before)
    return "restored"


def check_dict(data: Any, strict: bool = True) -> str:
    try:
        state = rngstate.RNGState.from_dict(data)
    except InvalidStateError as exc:
        if not str(exc):
            raise FuzzError("an error without a message") from None
        return "refused"
    return check_state(state, strict)


def check_file(blob: bytes, path: Path, strict: bool = True) -> str:
    path.write_bytes(blob)
    try:
        state = rngstate.load(path)
    except rngstate.StateFileError as exc:
        if not str(exc):
            raise FuzzError("an error without a message") from None
        return "refused"
    except TopologyError:
        return "refused (topology)"
    return check_state(state, strict)


def guarded(check: Callable[..., str], *args: Any) -> str:
    """Run a check; anything but the allowed errors is a failure."""
    try:
        return check(*args)
    except FuzzError:
        raise
    except Exception as exc:
        raise FuzzError(f"{type(exc).__name__} escaped: {exc}") from exc
    finally:
        if RUNTIME.frames:
            raise FuzzError("a scope was left open")


# -- the quick pass --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(autouse=True)
def live_state() -> None:
    rngstate.seed_everything(31)


@FUZZ
@given(rng=st.randoms(use_true_random=False), which=st.integers(0, 2), strict=st.booleans())
def test_mutated_files(folder: Path, rng: random.Random, which: int, strict: bool) -> None:
    guarded(check_file, mutate_file(rng, base_files()[which]), folder / "mutated", strict)


@FUZZ
@given(blob=st.binary(max_size=3000), prefix=st.sampled_from([b"", fileformat.MAGIC]))
def test_random_bytes(folder: Path, blob: bytes, prefix: bytes) -> None:
    assert guarded(check_file, prefix + blob, folder / "random") == "refused"


PLAIN = st.recursive(
    st.integers(min_value=-(2**600), max_value=2**600) | st.binary(max_size=64) | st.text(max_size=12)
    | st.sampled_from(TEXTS) | st.booleans() | st.none() | st.floats(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(TEXTS) | st.text(max_size=6), children, max_size=4),
    max_leaves=24,
)


@FUZZ
@given(value=PLAIN, shape=st.sampled_from(["alone", "as streams", "as substreams", "as generators"]))
def test_made_up_payloads(folder: Path, value: Any, shape: str) -> None:
    """Any msgpack payload in a valid container, alone or in a state's skeleton."""
    if shape != "alone":
        skeleton: dict[str, Any] = {"schema": 1, "derivation": 1, "root_seed": 1, "streams": {},
                                    "substreams": {}, "generators": {}, "metadata": {}}
        skeleton[shape.split()[1]] = value
        value = skeleton
    try:
        payload = msgpack.packb(value, use_bin_type=True)
    except (OverflowError, ValueError, TypeError):  # msgpack has no form for it: not a file
        return
    guarded(check_file, container(payload), folder / "made-up")
    guarded(check_dict, value)


@FUZZ
@given(rng=st.randoms(use_true_random=False), which=st.integers(0, 1), strict=st.booleans())
def test_mutated_state_dicts(rng: random.Random, which: int, strict: bool) -> None:
    guarded(check_dict, mutate_dict(rng, base_states()[which]), strict)


@FUZZ
@given(rng=st.randoms(use_true_random=False), strict=st.booleans())
def test_mutated_states_through_files(folder: Path, rng: random.Random, strict: bool) -> None:
    mutated = mutate_dict(rng, base_states()[rng.randrange(2)])
    try:
        blob = fileformat.pack(mutated)
    except rngstate.StateFileError:  # not plain data: the dict path covers it
        return
    guarded(check_file, blob, folder / "state", strict)


def test_bases_are_valid(folder: Path) -> None:
    """The starting points themselves load and restore (else the fuzz proves little)."""
    base_states()
    RUNTIME.refresh()  # strict unless another test imported a framework the bases predate
    strict = set(RUNTIME.active) <= {"python", "numpy", "torch.cpu"}
    for blob in base_files()[:2]:
        assert guarded(check_file, blob, folder / "base", strict) == "restored"
    assert guarded(check_file, base_files()[2], folder / "base", strict) == "restored"
    for data in base_states():
        assert guarded(check_dict, data, strict) == "restored"


def test_the_checks_catch_escapes() -> None:
    """The harness fails on an escaping error, not only on wrong results."""

    def leaks(_: Any) -> str:
        raise KeyError("boom")

    with pytest.raises(FuzzError, match="KeyError escaped"):
        guarded(leaks, None)
