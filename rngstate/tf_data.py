"""``tf.data`` pipelines: which ones can resume exactly, and a warning naming what cannot.

A pipeline written as TensorFlow's determinism guidance says -- ``shuffle(n, seed=...)``,
per-element seeds (``tf.data.Dataset.random(seed=...)`` zipped in), ``tf.random.stateless_*`` /
``tf.image.stateless_random_*`` ops in a ``map`` (parallel or not), ``batch``, ``prefetch`` -- is
a function of its seeds, and its iterator's position (shuffle buffer and the shuffle's seed
generator included) is saved by ``tf.train.Checkpoint(iterator=it)``: such a pipeline resumes
exactly.  Take the seeds from ``rngstate.derive_seed`` so every run of the job gets the same
ones.  A stateful random op (``tf.random.uniform``, ``tf.image.random_flip_left_right``,
``tf.random.Generator`` draws) in a ``map`` keeps its position in kernels no checkpoint holds,
and in a parallel ``map`` which element gets which number depends on thread timing;
``map(..., deterministic=False)`` lets elements come out of order.  :func:`check_dataset` warns
(``RNGStateWarning``) for each, naming the op and what to write instead.

>>> import rngstate.tf_data  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from typing import Any

from rngstate.errors import RNGStateWarning

logger = logging.getLogger(__name__)

# Graph op type -> the Python call that makes it (stateful random ops only).
STATEFUL_RANDOM_OPS = {
    "RandomUniform": "tf.random.uniform (or a tf.image.random_* op)",
    "RandomUniformInt": "tf.random.uniform with an int dtype",
    "RandomStandardNormal": "tf.random.normal",
    "TruncatedNormal": "tf.random.truncated_normal",
    "ParameterizedTruncatedNormal": "tf.random.truncated_normal",
    "RandomShuffle": "tf.random.shuffle",
    "RandomGamma": "tf.random.gamma",
    "RandomPoissonV2": "tf.random.poisson",
    "Multinomial": "tf.random.categorical",
    "StatefulUniform": "tf.random.Generator.uniform",
    "StatefulUniformInt": "tf.random.Generator.uniform",
    "StatefulUniformFullInt": "tf.random.Generator.uniform_full_int",
    "StatefulStandardNormalV2": "tf.random.Generator.normal",
    "StatefulTruncatedNormal": "tf.random.Generator.truncated_normal",
    "StatefulRandomBinomial": "tf.random.Generator.binomial",
    "RngReadAndSkip": "tf.random.Generator (make_seeds / split)",
}
_INSTEAD = (
    "write the stateless form (tf.random.stateless_uniform, tf.image.stateless_random_flip_left_right, "
    "...) with a per-element seed: zip in tf.data.Dataset.random(seed=rngstate.derive_seed('data/augment')) "
    "and derive each op's seed from it"
)


def _datasets(dataset: Any) -> Iterator[Any]:
    """``dataset`` and every dataset it reads from."""
    seen: set[int] = set()
    todo = [dataset]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        with contextlib.suppress(NotImplementedError, AttributeError):
            todo.extend(current._inputs())


def _op_types(function: Any) -> set[str]:
    """Op types in a traced dataset function, its nested functions included."""
    try:
        graph_def = function.function.graph.as_graph_def()
    except AttributeError:
        return set()
    types = {node.op for node in graph_def.node}
    for library_function in graph_def.library.function:
        types.update(node.op for node in library_function.node_def)
    return types


def _name(function: Any) -> str:
    name = getattr(getattr(function, "function", None), "name", b"?")
    return name.decode() if isinstance(name, bytes) else str(name)


def problems(dataset: Any) -> list[str]:
    """What keeps ``dataset`` from resuming exactly, one sentence each (empty: nothing found)."""
    found: list[str] = []
    for current in _datasets(dataset):
        kind = type(current).__name__.lstrip("_")
        parallel = hasattr(current, "_num_parallel_calls")
        functions = list(current._functions()) if hasattr(current, "_functions") else []
        for function in functions:
            for op in sorted(_op_types(function) & STATEFUL_RANDOM_OPS.keys()):
                where = "a parallel map" if parallel else f"a {kind}"
                found.append(
                    f"the stateful random op {op} ({STATEFUL_RANDOM_OPS[op]}) in {where} "
                    f"function {_name(function)} keeps its position in "
                    "kernels no checkpoint holds"
                    + (" and hands numbers to elements in thread order" if parallel else "")
                    + f"; {_INSTEAD}"
                )
        if getattr(current, "_deterministic", None) == "false":
            found.append(
                f"{kind} was built with deterministic=False: its elements come out in thread order; "
                "leave deterministic at its default"
            )
    return found


def check_dataset(dataset: Any) -> list[str]:
    """Warn (``RNGStateWarning``) once for each reason ``dataset`` cannot resume exactly, and
    return them.

    >>> import tensorflow as tf  # doctest: +SKIP
    >>> noise = lambda x: x + tf.random.uniform([], 0, 2, tf.int64)  # doctest: +SKIP
    >>> noisy = tf.data.Dataset.range(4).map(noise)  # doctest: +SKIP
    >>> check_dataset(noisy)  # doctest: +SKIP
    ['the stateful random op RandomUniformInt (...) ...']
    """
    found = problems(dataset)
    for problem in found:
        message = f"rngstate: this tf.data pipeline cannot resume exactly: {problem}"
        logger.warning(message)
        warnings.warn(message, RNGStateWarning, stacklevel=2)
    return found


def resume_iterator(dataset: Any, iteration: int, position: int) -> Any:
    """An iterator over ``dataset`` standing where the run being resumed stood: at element
    ``position`` of its ``iteration``-th ``iter(dataset)`` (counted from 0).

    TensorFlow draws a seeded ``shuffle(..., reshuffle_each_iteration=True)``'s (and
    ``Dataset.random(rerandomize_each_iteration=True)``'s) seeds once per ``iter()`` of the
    dataset, so a rebuilt pipeline makes ``iteration`` iterators and drops them, then takes
    ``position`` elements (they are computed, not trained on).  Later ``iter(dataset)`` calls
    go on with the next iteration, as in the run that never stopped.  (Restoring an iterator
    with ``tf.train.Checkpoint`` is faster but, in TensorFlow 2.21, leaves the next
    iterations of a pipeline with ``prefetch``, ``zip`` or ``repeat`` on other seeds.)

    >>> it = resume_iterator(make_dataset(), epoch, step_in_epoch)  # doctest: +SKIP
    """
    for _ in range(iteration):
        iter(dataset)  # drawn and dropped: the next one gets the next iteration's seeds
    iterator = iter(dataset)
    for _ in range(position):
        next(iterator)
    return iterator


__all__ = ["check_dataset", "problems", "resume_iterator"]
