"""What each framework's streams add to a scope round trip, and capture/restore with all of them.

    python benchmarks/framework_streams.py

Frameworks are imported one after another (Paddle before TensorFlow: the other order crashes
the interpreter here); each line is the cost of `with rng_scope("a"): pass` once that framework
is active.  TensorFlow's and Keras's global generators cost more once created: swapping them is
a variable read and assign (kept so that tf.functions that captured them follow scopes).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import rngstate
from rngstate import backends


def per_call_us(function: Callable[[], object], repeat: int = 3000) -> float:
    function()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeat):
            function()
        best = min(best, (time.perf_counter() - start) / repeat * 1e6)
    return best


def scope_round_trip() -> float:
    scope = rngstate.rng_scope("a")

    def round_trip() -> None:
        with scope:
            pass

    return per_call_us(round_trip)


def main() -> None:
    rngstate.seed_everything(0)
    rows = [("python + numpy", scope_round_trip())]
    import torch

    rows.append(("+ torch", scope_round_trip()))
    import paddle

    rows.append(("+ paddle", scope_round_trip()))
    import keras
    import tensorflow as tf

    rows.append(("+ tensorflow, keras (global generators not created)", scope_round_trip()))
    tf.random.get_global_generator()
    rows.append(("+ tf.random global generator created", scope_round_trip()))
    keras.random.normal([1])
    rows.append(("+ keras global SeedGenerator created", scope_round_trip()))
    print("| active streams | scope enter + exit (µs) |\n|---|---|")
    for label, value in rows:
        print(f"| {label} | {value:.1f} |")

    print("\n| stream | exchange (µs) |\n|---|---|")
    for name in ("paddle.cpu", "tensorflow.ops", "tensorflow.generator", "keras.global"):
        stream = backends.stream(name)
        snapshot = [stream.get_state()]

        def swap(stream: backends.Stream = stream, snapshot: list[object] = snapshot) -> None:
            snapshot[0] = stream.exchange(snapshot[0])

        print(f"| {name} | {per_call_us(swap):.1f} |")

    torch.rand(1)
    paddle.rand([1])
    tf.random.uniform([1])
    state = rngstate.capture()
    plain = state.to_dict()
    print("\n| all frameworks | ms |\n|---|---|")
    print(f"| capture() | {per_call_us(rngstate.capture, 200) / 1000:.2f} |")
    print(f"| restore(state) | {per_call_us(lambda: rngstate.restore(state), 200) / 1000:.2f} |")
    from_dict = per_call_us(lambda: rngstate.restore(plain), 200) / 1000
    print(f"| restore(dict): validate + apply | {from_dict:.2f} |")


if __name__ == "__main__":
    main()
