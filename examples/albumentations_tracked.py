"""An augmentation library with its own RNG, brought under rngstate (the PaddleOCR story).

albumentations' ``Compose`` owns a ``random.Random`` and a NumPy ``Generator`` (and so does each
transform inside it), seeded from the operating system unless you pass ``seed=``: two runs
augment differently, and no checkpoint holds its state.  ``rngstate.track`` with three small
callables makes it seeded from the scope path, captured by ``capture()`` and restored exactly.

    python examples/albumentations_tracked.py
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import albumentations as albu
import numpy as np

import rngstate
from rngstate.backends.objects import generator_state, set_generator_state


def nodes(compose: Any) -> Iterator[Any]:
    """The Compose and every transform inside it, in a fixed order: each owns generators."""
    yield compose
    for transform in getattr(compose, "transforms", ()):
        yield from nodes(transform)


def compose_state(compose: Any) -> list[Any]:
    return [
        [generator_state(node.py_random), generator_state(node.random_generator)]
        for node in nodes(compose)
    ]


def set_compose_state(compose: Any, state: list[Any]) -> None:
    if len(state) != len(list(nodes(compose))):
        raise ValueError("the state was captured from a Compose with other transforms")
    for node, (python_state, numpy_state) in zip(nodes(compose), state, strict=True):
        set_generator_state(node.py_random, python_state)
        set_generator_state(node.random_generator, numpy_state)


def seed_compose(compose: Any, seed: int) -> None:
    compose.set_random_seed(seed)  # albumentations' own way: the Compose and every transform


def make_compose() -> Any:
    return albu.Compose(
        [
            albu.HorizontalFlip(p=0.5),
            albu.OneOf([albu.RandomBrightnessContrast(p=1.0), albu.GaussNoise(p=1.0)], p=0.8),
            albu.RandomCrop(24, 24),
        ]
    )


def build_pipeline() -> Any:
    pipeline = make_compose()
    with rngstate.rng_scope("data"):
        return rngstate.track(
            pipeline, "augment", get_state=compose_state, set_state=set_compose_state, seed=seed_compose
        )


def augment(pipeline: Any, images: list[np.ndarray]) -> list[np.ndarray]:
    return [pipeline(image=image)["image"] for image in images]


def main() -> None:
    ramp = np.arange(32, dtype=np.uint8)[:, None, None]
    images = [np.full((32, 32, 3), 10 * i, dtype=np.uint8) + ramp for i in range(8)]

    untracked = [augment(make_compose(), images) for _ in range(2)]
    differ = not all(np.array_equal(a, b) for a, b in zip(*untracked, strict=True))
    print(f"without rngstate, two identical pipelines augment differently: {differ}")

    rngstate.seed_everything(0)
    pipeline = build_pipeline()
    first = augment(pipeline, images)
    rngstate.seed_everything(0)  # reseeds tracked objects from their path, like every stream
    again = augment(pipeline, images)
    same_seed = all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    print(f"same root seed, same augmentations: {same_seed}")

    rngstate.seed_everything(0)
    augment(pipeline, images[:3])
    checkpoint = rngstate.capture()  # e.g. saved with rngstate.save("rng.state") mid-epoch
    expected = augment(pipeline, images[3:])
    rngstate.restore(checkpoint)
    resumed = augment(pipeline, images[3:])
    exact = all(np.array_equal(a, b) for a, b in zip(expected, resumed, strict=True))
    print(f"restored mid-epoch, same augmentations afterwards: {exact}")
    print(f"tracked: {checkpoint.generators}")


if __name__ == "__main__":
    main()
