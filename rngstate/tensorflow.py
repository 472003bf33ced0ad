"""TensorFlow helpers: rngstate's state inside ``tf.train.Checkpoint`` / ``CheckpointManager``
(:class:`RNGStateCheckpoint`), and :func:`check_dataset` for ``tf.data`` pipelines.

``import rngstate.tensorflow`` imports TensorFlow (``import rngstate`` alone imports none).

>>> import rngstate.tensorflow  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from typing import Any

import tensorflow as tf

from rngstate import fileformat
from rngstate.snapshot import capture, restore
from rngstate.state import RNGState
from rngstate.tf_data import check_dataset as check_dataset
from rngstate.tf_data import resume_iterator as resume_iterator

logger = logging.getLogger(__name__)


class RNGStateCheckpoint(tf.train.experimental.PythonState):  # type: ignore[misc]
    """Every generator rngstate manages, as one entry of a ``tf.train.Checkpoint``: captured
    when the checkpoint is saved, restored when it is restored.  The entry is rngstate's file
    format (msgpack, checksummed, never a pickle) in one string tensor.

    >>> ckpt = tf.train.Checkpoint(model=model, optimizer=opt, iterator=it,  # doctest: +SKIP
    ...                            rng=rngstate.tensorflow.RNGStateCheckpoint())
    >>> manager = tf.train.CheckpointManager(ckpt, "ckpts", max_to_keep=2)  # doctest: +SKIP
    >>> ckpt.restore(manager.latest_checkpoint)  # doctest: +SKIP
    """

    def __init__(self, *, strict: bool = True) -> None:
        super().__init__()
        self.strict = strict

    def serialize(self) -> bytes:
        """The live state as rngstate file bytes (called by ``Checkpoint.save``/``write``)."""
        return fileformat.pack(capture().to_dict())

    def deserialize(self, string_value: Any) -> None:
        """Restore the saved state (called by ``Checkpoint.restore``/``read``)."""
        blob = string_value.numpy() if hasattr(string_value, "numpy") else string_value
        state = RNGState.from_dict(fileformat.unpack(bytes(blob)))
        restore(state, strict=self.strict)
        logger.info("rngstate: restored the RNG state from a tf.train.Checkpoint")


__all__ = ["RNGStateCheckpoint", "check_dataset", "resume_iterator"]
