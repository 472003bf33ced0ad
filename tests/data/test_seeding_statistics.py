"""Per-sample seeding, statistically: each stream's first outputs look as random as after its
framework's own seeding, through every path the loaders take (issue 25, item 1).

The check that would have caught the biased first draw: over thousands of samples, every bit of
each of the first outputs, every bit of the outputs untempered (MT19937's tempering is linear:
a forced state bit shows as a parity of output bits), and the outputs' parity, each balanced.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch

import rngstate
from rngstate.data.wrappers import SeededBatch

SAMPLES = 2048
FIRST = 4  # outputs checked per sample and stream
# A balanced bit's count of ones over SAMPLES draws: mean SAMPLES / 2, sd sqrt(SAMPLES) / 2.
# 5 sd: the ~1,500 counts checked here pass with odds of 0.9991 when unbiased; the biased
# first draw was off by 1,024 (45 sd).
LIMIT = 5 * SAMPLES**0.5 / 2


def untemper(y: np.ndarray) -> np.ndarray:
    """MT19937's tempering undone (uint32 array): the table words the outputs came from."""
    y = y.astype(np.uint64)
    y ^= y >> 18
    y ^= (y << 15) & 0xEFC60000
    x = y
    for _ in range(5):  # y ^= (y << 7) & 0x9D2C5680, inverted 7 bits at a time
        x = y ^ ((x << 7) & 0x9D2C5680)
    y = x & 0xFFFFFFFF
    x = y
    for _ in range(3):  # y ^= y >> 11
        x = y ^ (x >> 11)
    return (x & 0xFFFFFFFF).astype(np.uint32)


def test_untemper_inverts_mt19937_tempering() -> None:
    words = np.random.default_rng(0).integers(0, 2**32, 1000, dtype=np.uint32)
    rng = random.Random()
    for word in words[:50]:
        rng.setstate((3, (int(word), *[1] * 623, 0), None))
        assert untemper(np.array([rng.getrandbits(32)], np.uint32))[0] == word


def first_outputs(name: str) -> np.ndarray:
    """The next FIRST 32-bit outputs of one stream's global generator, through its public API."""
    if name == "python":
        return np.array([random.getrandbits(32) for _ in range(FIRST)], np.uint32)
    if name == "numpy":  # the full uint32 range: NumPy returns the raw 32-bit outputs
        return np.random.randint(2**32, size=FIRST, dtype=np.uint32)
    if name == "torch.cpu":  # full 64-bit draws: (output 2i << 32) | output 2i+1
        pairs = torch.empty(FIRST // 2, dtype=torch.int64).random_(-(2**63), None).numpy().view(np.uint64)
        return np.stack([pairs >> 32, pairs & 0xFFFFFFFF], axis=1).ravel().astype(np.uint32)
    import paddle  # only where paddle is tested

    return paddle.randint(0, 2**31 - 1, [FIRST], dtype="int64").numpy().astype(np.uint32)


def unbalanced(outputs: np.ndarray, what: str) -> list[str]:
    """(SAMPLES, FIRST) uint32 outputs -> the checks whose count of ones is off."""
    problems = []
    views = {"bit": outputs, "untempered bit": untemper(outputs)}
    for label, words in views.items():
        bits = (words[:, :, None] >> np.arange(32, dtype=np.uint32)) & 1
        for (draw, bit), ones in np.ndenumerate(bits.sum(axis=0)):
            if abs(ones - SAMPLES / 2) > LIMIT:
                problems.append(f"{what}: {label} {bit} of draw {draw}: {ones}/{SAMPLES} ones")
    parity = np.bitwise_count(outputs) & 1
    for draw, ones in enumerate(parity.sum(axis=0)):
        if abs(ones - SAMPLES / 2) > LIMIT:
            problems.append(f"{what}: parity of draw {draw}: {ones}/{SAMPLES} odd")
    return problems


def batches(way: str) -> Iterator[None]:
    """Yield once per sample seeded the way ``way`` names (each loader path of SeededBatch)."""
    if way == "block":  # consecutive samples: Stream.sample_writer
        batch = SeededBatch(list(range(SAMPLES)), root=0, parts=("stat",), epoch=0, first=0)
        yield from (None for _ in batch)
    elif way == "single":  # a sharded epoch's samples: Stream.seed_from_material
        batch = SeededBatch(list(range(SAMPLES)), root=0, parts=("stat",), epoch=0, first=0, step=3)
        yield from (None for _ in batch)
    else:  # seed_per="batch", in the training process (exchange_material) or a worker
        pid = None if way == "batch" else -1
        for first in range(SAMPLES):
            batch = SeededBatch([0], root=0, parts=("stat",), epoch=0, first=first, seed_per="batch", pid=pid)
            yield from (None for _ in batch)


@pytest.mark.parametrize("way", ["block", "single", "batch", "batch-in-worker"])
@pytest.mark.parametrize("name", ["python", "numpy", "torch.cpu"])
def test_first_outputs_of_every_sample_are_balanced(name: str, way: str) -> None:
    rngstate.seed_everything(0)
    draws: Callable[[], np.ndarray] = lambda: first_outputs(name)  # noqa: E731
    outputs = np.array([draws() for _ in batches(way)])
    assert outputs.shape == (SAMPLES, FIRST)
    assert len({row.tobytes() for row in outputs}) == SAMPLES
    assert unbalanced(outputs, f"{name} ({way})") == []


@pytest.mark.slow
def test_paddle_first_outputs_of_every_sample_are_balanced() -> None:
    from tests.conftest import run_python

    code = """
    import numpy as np, paddle, rngstate
    from tests.data.test_seeding_statistics import SAMPLES, batches, first_outputs, unbalanced
    rngstate.seed_everything(0)
    outputs = np.array([first_outputs("paddle.cpu") for _ in batches("block")])
    # paddle.randint below 2**31: 31 random bits per draw, bit 31 always 0
    problems = [p for p in unbalanced(outputs, "paddle") if " 31 " not in p and "parity" not in p
                and "untempered" not in p]
    assert problems == [], problems
    print("ok")
    """
    assert run_python(code).strip() == "ok"


def test_the_check_catches_a_forced_bit_in_the_untempered_first_word() -> None:
    # What the per-sample tables did before: read from word 0, whose top bit is forced.
    rng, table = random.Random(), np.random.default_rng(1).integers(0, 2**32, (SAMPLES, 624), dtype=np.uint32)
    outputs = []
    for words in table:
        rng.setstate((3, (int(words[0]) | 0x80000000, *map(int, words[1:]), 0), None))
        outputs.append([rng.getrandbits(32) for _ in range(FIRST)])
    problems = unbalanced(np.array(outputs, np.uint32), "forced")
    assert problems == [f"forced: untempered bit 31 of draw 0: {SAMPLES}/{SAMPLES} ones"]
