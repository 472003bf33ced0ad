"""The batches ``model.fit`` trains on under :class:`rngstate.keras.RNGStateCallback`.

Keras 3 shuffles NumPy arrays inside a ``tf.data`` graph with ``tf.random.shuffle`` (a stateful
op whose kernel state no checkpoint holds), on the torch backend with a ``RandomSampler`` drawing
from torch's global generator, and restarts the epoch on resume.  A feed takes over one
``fit``'s ``EpochIterator._enumerate_iterator`` (the generator ``fit`` loops over) so that

* arrays (and dicts of arrays): batch ``i`` of pass ``p`` over the data holds the rows
  ``order(p)[i*b:(i+1)*b]``, ``order`` derived as ``ResumableSampler`` derives its orders
  (``shuffle="batch"``: rows ``i*b..`` in an order derived from ``(p, i)``); on TensorFlow they
  go through one ``tf.data`` pipeline into Keras' compiled step, elsewhere they are sliced and
  converted in Python the way Keras' own adapter does; a resume starts at the saved
  ``(pass, position)`` and step;
* a ``tf.data.Dataset``: ``fit`` iterates the dataset exactly as Keras does; the feed counts the
  ``iter()`` calls and batches taken, and a resume rebuilds the iterator there
  (:func:`rngstate.tf_data.resume_iterator`), so the epochs reshuffle as the uninterrupted run's.

Keras' step numbering, ``steps_per_epoch``, ``steps_per_execution`` and its "ran out of data"
rules are kept.

>>> import rngstate.keras_feed  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras.src import tree
from keras.src.trainers.data_adapters import array_slicing
from keras.src.trainers.epoch_iterator import EpochIterator

from rngstate.data.sampler import epoch_order
from rngstate.runtime import RUNTIME

logger = logging.getLogger(__name__)


def fit_epoch_iterator(model: Any) -> Any | None:
    """The ``EpochIterator`` of the ``fit`` call now running ``model``, found in the caller's
    frames (``fit`` builds it before any callback hook runs and keeps it in a local)."""
    frame: Any = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "fit" and frame.f_locals.get("self") is model:
            found = frame.f_locals.get("epoch_iterator")
            if isinstance(found, EpochIterator):
                return found
        frame = frame.f_back
    return None


class Feed:
    """Common part: replaces ``epoch_iterator._enumerate_iterator`` and counts the position."""

    kind = ""

    def __init__(self, epoch_iterator: Any) -> None:
        self.ei = epoch_iterator
        self.steps_per_epoch: int | None = epoch_iterator.steps_per_epoch
        self.per_call: int = epoch_iterator.steps_per_execution
        self.start = 0  # the step the next epoch starts at (a resumed position)
        self.epoch = 0  # set by the callback before each epoch
        epoch_iterator._enumerate_iterator = self._enumerate

    def _enumerate(self) -> Iterator[tuple[int, int, Any]]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What must be the same in a resumed ``fit`` for the saved position to mean the same."""
        return {"kind": self.kind, "steps_per_epoch": self.steps_per_epoch,
                "steps_per_execution": self.per_call}

    def state(self) -> dict[str, Any]:
        raise NotImplementedError

    def load(self, folder: Path, state: dict[str, Any], step: int) -> None:
        raise NotImplementedError


class ArrayFeed(Feed):
    """NumPy arrays (or TF / torch / JAX tensors, dicts of them) given to ``fit`` directly."""

    kind = "arrays"

    def __init__(self, epoch_iterator: Any, name: str) -> None:
        super().__init__(epoch_iterator)
        adapter = epoch_iterator.data_adapter
        self.n: int = adapter._num_samples
        self.batch_size: int = adapter.batch_size
        self.num_batches: int = adapter.num_batches
        self.shuffle: bool | str = adapter._shuffle
        self.parts = ("keras.fit", name)
        self.pass_, self.pos = 0, 0  # the next batch to feed: batch `pos` of pass `pass_`
        self._backend = keras.backend.backend()
        target = "torch" if self._backend == "torch" else "numpy"
        self._sliceables = array_slicing.convert_to_sliceable(adapter._inputs, target_backend=target)
        self._tf_inputs = _dense_tf_inputs(adapter._inputs) if self._backend == "tensorflow" else None
        self._tf_iterator: Any = None  # TensorFlow: the rest of the current pass, in the graph
        self._tf_data: Any = None
        self._cached: tuple[int, np.ndarray] = (-1, np.arange(0))  # (pass, its order)
        if self.shuffle:
            RUNTIME.require_root()  # the order is derived from the root seed: say so now

    def describe(self) -> dict[str, Any]:
        shuffle = self.shuffle if isinstance(self.shuffle, str) else bool(self.shuffle)
        return {**super().describe(), "samples": self.n, "batch_size": self.batch_size, "shuffle": shuffle}

    def state(self) -> dict[str, Any]:
        return {"pass": self.pass_, "position": self.pos}

    def load(self, folder: Path, state: dict[str, Any], step: int) -> None:
        self.pass_, self.pos, self.start = int(state["pass"]), int(state["position"]), step
        self._tf_iterator = None

    def rows(self, pass_: int, index: int) -> np.ndarray:
        """The sample indices of batch ``index`` of pass ``pass_``."""
        begin, end = index * self.batch_size, min((index + 1) * self.batch_size, self.n)
        if self.shuffle == "batch":
            parts = (*self.parts, "batch", str(index))
            return begin + epoch_order(RUNTIME.require_root(), parts, pass_, end - begin)
        if self.shuffle:
            return np.asarray(self._order(pass_)[begin:end])
        return np.arange(begin, end)

    def _order(self, pass_: int) -> np.ndarray:
        if self._cached[0] != pass_:
            self._cached = (pass_, epoch_order(RUNTIME.require_root(), self.parts, pass_, self.n))
        return self._cached[1]

    def _batch(self, rows: np.ndarray) -> Any:
        if self._backend == "torch":
            from keras.src.backend.torch.core import convert_to_tensor

            def convert(sliceable: Any) -> Any:
                return convert_to_tensor(sliceable.convert_to_torch_compatible(sliceable[rows]))
        else:  # what Keras' numpy iterator gives (the TF step function converts it)

            def convert(sliceable: Any) -> Any:
                return sliceable.convert_to_numpy(sliceable[rows])

        return tree.map_structure(convert, self._sliceables, none_is_leaf=False)

    def _stream(self) -> Iterator[Any]:
        """The rest of the current pass (Keras' iterator over arrays also ends with it)."""
        while self.pos < self.num_batches:
            rows = self.rows(self.pass_, self.pos)
            self.pos += 1  # counted before the step runs: a backup after it sees it
            if self.pos == self.num_batches:
                self.pass_, self.pos = self.pass_ + 1, 0
            yield self._batch(rows)
            if self.pos == 0:
                return

    def _tf_pass(self) -> Any:
        """The rest of the current pass as a ``tf.data`` iterator of the same batches: Keras'
        compiled step then takes them inside the graph, as from its own array pipeline.  The
        pipeline is built (and its functions traced) once; each pass writes its rows into a
        variable that the pipeline reads when an iterator starts."""
        import tensorflow as tf

        begin = self.pos * self.batch_size
        if self.shuffle == "batch":
            rows = np.concatenate([self.rows(self.pass_, i) for i in range(self.pos, self.num_batches)])
        elif self.shuffle:
            rows = np.asarray(self._order(self.pass_)[begin:])
        else:
            rows = np.arange(begin, self.n)
        if self._tf_data is None:
            self._tf_rows = tf.Variable(tf.zeros([self.n], tf.int64), trainable=False)
            self._tf_count = tf.Variable(tf.constant(0, tf.int64), trainable=False)
            stored, count = self._tf_rows, self._tf_count

            def pass_rows(_: Any) -> Any:
                return tf.data.Dataset.from_tensor_slices(stored[:count])

            indices = tf.data.Dataset.range(1).flat_map(pass_rows).batch(self.batch_size)
            data = tf.data.Dataset.zip((indices, tf.data.Dataset.from_tensors(self._tf_inputs).repeat()))
            data = data.map(_gather, num_parallel_calls=tf.data.AUTOTUNE)  # deterministic order
            options = tf.data.Options()
            options.experimental_optimization.apply_default_optimizations = False  # as Keras does
            self._tf_data = data.with_options(options).prefetch(tf.data.AUTOTUNE)
        self._tf_rows[: len(rows)].assign(rows.astype(np.int64))
        self._tf_count.assign(len(rows))
        return iter(self._tf_data)  # after the assignments: its prefetching reads them

    def _enumerate(self) -> Iterator[tuple[int, int, Any]]:
        start, self.start = self.start, 0
        if start == 0 and self.steps_per_epoch is None:
            self.pass_, self.pos = self.epoch, 0  # epoch e is pass e (also with initial_epoch)
            self._tf_iterator = None
        first_pass = self.pass_
        in_graph = self._tf_inputs is not None
        stream = None if in_graph else self._stream()
        for step in range(start, self.steps_per_epoch or self.num_batches, self.per_call):
            if self.pass_ != first_pass:
                # With steps_per_epoch Keras ends the epoch where the pass over the data ends.
                self.ei._interrupted_warning()
                break
            if not in_graph:
                yield step, step + self.per_call - 1, stream
                continue
            if self._tf_iterator is None:
                self._tf_iterator = self._tf_pass()
            iterator = self._tf_iterator
            self.pos += self.per_call  # counted before the step runs: a backup after it sees it
            if self.pos >= self.num_batches:
                self.pass_, self.pos, self._tf_iterator = self.pass_ + 1, 0, None
            yield step, step + self.per_call - 1, iterator


def _dense_tf_inputs(inputs: Any) -> Any | None:
    """The arrays as TensorFlow tensors (Keras' own conversion), or None when one is sparse or
    ragged (those batches are made in Python)."""
    import tensorflow as tf

    converted = tree.lists_to_tuples(array_slicing.convert_to_sliceable(inputs, target_backend="tensorflow"))
    leaves = tree.flatten(converted)
    if not all(isinstance(x, tf.Tensor) or (isinstance(x, np.ndarray) and x.dtype != object) for x in leaves):
        return None
    return tree.map_structure(tf.convert_to_tensor, converted)


def _gather(indices: Any, inputs: Any) -> Any:
    import tensorflow as tf

    return tree.map_structure(lambda x: tf.gather(x, indices, axis=0), inputs)


class DatasetFeed(Feed):
    """A ``tf.data.Dataset`` given to ``fit`` (TensorFlow backend): a resume rebuilds the
    iterator with :func:`rngstate.tf_data.resume_iterator` (the same number of ``iter()``
    calls, then the consumed batches drawn again without training)."""

    kind = "tf.data"

    def __init__(self, epoch_iterator: Any) -> None:
        super().__init__(epoch_iterator)
        self.iterator: Any = None
        self.created = 0  # iter() calls on the dataset so far
        self.pos = 0  # batches taken from self.iterator

    def state(self) -> dict[str, Any]:
        return {"iterators": self.created, "position": self.pos, "open": self.iterator is not None}

    def load(self, folder: Path, state: dict[str, Any], step: int) -> None:
        from rngstate.tf_data import resume_iterator

        self.start, self.pos, self.created = step, int(state["position"]), int(state["iterators"])
        if state["open"]:
            self.iterator = resume_iterator(self.ei._get_iterator(), self.created - 1, self.pos)
        else:
            for _ in range(self.created):
                iter(self.ei._get_iterator())  # the next iter() gets the next iteration's seeds

    def _enumerate(self) -> Iterator[tuple[int, int, Any]]:
        ei = self.ei
        ei.data_adapter.on_epoch_begin()
        start, self.start = self.start, 0
        if self.iterator is None or (start == 0 and self.steps_per_epoch is None):
            self.iterator, self.pos = iter(ei._get_iterator()), 0
            self.created += 1
        step = start
        while True:
            num_batches = ei._num_batches  # None until Keras saw the end of an unsized dataset
            steps = self.steps_per_epoch or num_batches
            if steps is not None and step >= steps:
                break
            if num_batches and self.pos >= num_batches:
                if self.steps_per_epoch:
                    ei._interrupted_warning()
                break
            self.pos += self.per_call
            ei._steps_seen = self.pos  # Keras reads it when an unsized dataset ends
            yield step, step + self.per_call - 1, self.iterator
            step += self.per_call
        if ei._num_batches and self.pos >= ei._num_batches:
            self.iterator = None
        ei.data_adapter.on_epoch_end()


def make_feed(epoch_iterator: Any, name: str) -> Feed | None:
    """The feed for this ``fit``'s data, or None for data it does not take over."""
    adapter = type(epoch_iterator.data_adapter).__name__
    if adapter == "ArrayDataAdapter":
        return ArrayFeed(epoch_iterator, name)
    if adapter == "TFDatasetAdapter" and keras.backend.backend() == "tensorflow":
        from rngstate.tf_data import check_dataset

        check_dataset(epoch_iterator.data_adapter._dataset)
        return DatasetFeed(epoch_iterator)
    return None
