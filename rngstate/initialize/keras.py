"""``rngstate.keras.init_by_name``: re-run each Keras layer's initializers, by layer name.

Keras initializers hold a fixed seed (drawn from Python's ``random`` when they are built, if not
given), so each weight is re-created with a copy of its layer's initializer whose seed derives
from the layer's name and the weight's name.  keras is never imported here.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from typing import Any

from rngstate.errors import InitializationError
from rngstate.initialize import Namer, report_untouched, wrong_model

logger = logging.getLogger(__name__)

_FUNCTION = "rngstate.keras.init_by_name"
_HINT = (
    "Their layer has no `<weight name>_initializer` attribute (weights made with add_weight in "
    "a custom layer); keep the initializer on the layer as `self.<name>_initializer`."
)
_ALIASES = {"recurrent_kernel": "recurrent_initializer"}  # LSTM, GRU and SimpleRNN cells
_STREAM = "keras.initializer"


def _walk(layer: Any, name: str) -> Iterator[tuple[str, Any]]:
    """``(qualified name, layer)`` for ``layer`` and every layer inside it, parent first."""
    yield name, layer
    for child in layer._flatten_layers(include_self=False, recursive=False):
        yield from _walk(child, f"{name}/{child.name}" if name else child.name)


def _reseeded(initializer: Any, seed: int) -> Any:
    """A copy of ``initializer`` drawing from ``seed`` (itself when it draws nothing)."""
    config = initializer.get_config()
    if "seed" not in config:
        return initializer  # Zeros, Ones, Constant, ...: nothing random
    return type(initializer).from_config({**config, "seed": seed})


def _value(keras: Any, layer: Any, variable: Any, initializer: Any) -> Any:
    if variable.name == "bias" and getattr(layer, "unit_forget_bias", False):
        units = layer.units  # LSTM: the forget gate's bias starts at one
        return keras.ops.concatenate([
            initializer((units,), dtype=variable.dtype),
            keras.ops.ones((units,), dtype=variable.dtype),
            initializer((units * 2,), dtype=variable.dtype),
        ])
    return initializer(tuple(variable.shape), dtype=variable.dtype)


def init_by_name(model: Any) -> Any:
    """Re-initialize every weight of a built Keras ``model`` (kernel, bias, embeddings, gamma,
    moving statistics, ... including weights created in ``build()``) with its layer's
    initializer, seeded from ``<scope path>/#init/<layer path>/<weight name>``: a layer's
    weights depend only on the root seed, the scope path at the call, the layer names, the
    shapes and the initializers; not on the other layers or on the order they were built in.
    Layer paths are the layer names from the model down (``"encoder/dense"``): name your layers,
    automatic names (``dense_1``) change when a layer is added.  Weights whose initializer cannot
    be found are named in an ``RNGStateWarning``.

    Example (not a doctest: TensorFlow must not load in the test process before Paddle)::

        rngstate.seed_everything(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="head")])
        rngstate.keras.init_by_name(model)
    """
    keras = sys.modules.get("keras")
    if keras is None or not isinstance(model, keras.layers.Layer):
        raise wrong_model(_FUNCTION, "keras.Model or keras.layers.Layer", model)
    if not model.built:
        raise InitializationError(
            f"{_FUNCTION}: the model {model.name!r} is not built, so its weights do not exist "
            "yet; build it first (model.build(input_shape), or call it once on a batch)"
        )
    namer = Namer()
    untouched: list[str] = []
    for name, layer in _walk(model, ""):
        parts = namer.parts(name, "/")
        for variable in [*layer._trainable_variables, *layer._non_trainable_variables]:
            attribute = _ALIASES.get(variable.name, f"{variable.name}_initializer")
            initializer = getattr(layer, attribute, None)
            if initializer is None or not hasattr(initializer, "get_config"):
                untouched.append(f"{name}/{variable.name}" if name else variable.name)
                continue
            seed = namer.seed((*parts, variable.name), _STREAM)
            variable.assign(_value(keras, layer, variable, _reseeded(initializer, seed)))
    report_untouched(_FUNCTION, untouched, _HINT)
    return model
