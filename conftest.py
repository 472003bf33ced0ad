"""Collection rules for the docstring examples (``--doctest-modules`` over ``rngstate/``).

The facades that import a heavy framework at module level (Keras/TensorFlow, Paddle,
Lightning, transformers) are not imported by the test process itself: importing them there
would load every framework into every test process (slow, and several tests check that a
framework is absent).  ``tests/test_facade_doctests.py`` runs their examples in a subprocess
instead, in the order that keeps Paddle before TensorFlow.
"""

from __future__ import annotations

import os

# Imported in this order by the subprocess (Paddle before TensorFlow: the other order crashes).
FACADE_DOCTESTS = [
    "rngstate/paddle.py",
    "rngstate/paddle_fit.py",
    "rngstate/lightning.py",
    "rngstate/transformers.py",
    "rngstate/keras.py",
    "rngstate/keras_feed.py",
    "rngstate/tensorflow.py",
]

collect_ignore = [] if os.environ.get("RNGSTATE_FACADE_DOCTESTS") else list(FACADE_DOCTESTS)
