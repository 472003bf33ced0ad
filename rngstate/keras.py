"""Keras 3 helpers: :func:`init_by_name` re-initializes a built model layer by layer, by name.

``import rngstate.keras`` does not import keras.

>>> import rngstate, rngstate.keras
>>> _ = rngstate.seed_everything(0)
"""

from __future__ import annotations

from rngstate.initialize.keras import init_by_name as init_by_name
