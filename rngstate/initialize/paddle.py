"""``rngstate.paddle.init_by_name``: re-run each Paddle parameter's initializer, by layer name.

Paddle does not keep a parameter's initializer once it has run (except on a model built under
``paddle.LazyGuard``, whose parameters hold it until initialized), so it is found again the way
Paddle chose it at construction: the initializer of the layer's ``weight_attr`` / ``bias_attr``,
else the global one (``paddle.nn.initializer.set_global_initializer``), else the default of the
layer type (the table below, Paddle's own built-in layers).  paddle is never imported here.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable
from typing import Any

from rngstate import backends
from rngstate.initialize import Namer, report_untouched, wrong_model

logger = logging.getLogger(__name__)

_FUNCTION = "rngstate.paddle.init_by_name"
_HINT = (
    "Their layer type is not one whose default initializer rngstate knows; give them an "
    "initializer through weight_attr/bias_attr (paddle.ParamAttr(initializer=...))."
)
_STREAMS = ("paddle.cpu", "paddle.gpu")
_FIXED = {"_mean": 0.0, "_variance": 1.0}  # batch-norm statistics: ParamAttr made by the layer


def _layer_attr(layer: Any, name: str) -> Any:
    """The ``ParamAttr``-like value the user gave for parameter ``name``, or None."""
    fields = ("_bias_attr",) if name == "bias" else ("_weight_attr", "_param_attr")
    for field in fields:
        if hasattr(layer, field):
            return getattr(layer, field)
    return None


def _explicit(paddle: Any, layer: Any, name: str) -> Any:
    attr = _layer_attr(layer, name)
    if attr is None or isinstance(attr, bool):
        return None
    return paddle.ParamAttr._to_attr(attr).initializer


def _type_default(paddle: Any, layer: Any, name: str) -> Any:
    """What Paddle's own layer passes as ``default_initializer`` for ``name`` (None: Paddle's
    global default, XavierUniform for weights and 0 for biases), or ``False`` when the layer
    type is not a built-in rngstate knows."""
    nn, init = paddle.nn, paddle.nn.initializer
    transposed = (nn.Conv1DTranspose, nn.Conv2DTranspose, nn.Conv3DTranspose)
    norms = (nn.layer.norm._BatchNormBase, nn.BatchNorm, nn.LayerNorm, nn.GroupNorm,
             nn.layer.norm._InstanceNormBase)
    if isinstance(layer, (nn.Linear, nn.Embedding, nn.Bilinear, *transposed)):
        return None
    if isinstance(layer, nn.layer.conv._ConvNd):
        if name == "bias":
            return None
        fan_in = math.prod(layer._kernel_size) * layer._in_channels
        return init.Normal(0.0, (2.0 / fan_in) ** 0.5)
    if isinstance(layer, norms):
        if name in _FIXED:
            return init.Constant(_FIXED[name])
        return init.Constant(0.0 if name == "bias" else 1.0)
    if isinstance(layer, nn.PReLU):
        return init.Constant(layer._init)
    return False


def _initializer(paddle: Any, layer: Any, name: str) -> Any:
    """The initializer Paddle used for ``layer``'s parameter ``name``; None when unknown."""
    explicit = _explicit(paddle, layer, name)
    if explicit is not None:
        return explicit
    default = _type_default(paddle, layer, name)
    if default is False:
        return None
    if name in _FIXED:
        return default
    helper = paddle.base.initializer
    is_bias = name == "bias"
    global_init = helper._global_bias_initializer() if is_bias else helper._global_weight_initializer()
    if global_init is not None:
        return global_init
    if default is not None:
        return default
    return paddle.nn.initializer.Constant(0.0) if is_bias else paddle.nn.initializer.XavierUniform()


def init_by_name(layer: Any) -> Any:
    """Re-initialize every parameter of ``layer`` and its sublayers from the substream named by
    the sublayer's qualified name (``"backbone.conv1"``), re-running the initializer Paddle
    chose at construction (from ``weight_attr``/``bias_attr``, the global initializer, or the
    layer type's default).  A layer's weights then depend only on the root seed, the scope path
    at the call, its name and shapes; not on the other layers or on what was drawn before.
    Paddle's generators are put back afterwards.  Parameters whose initializer cannot be found
    (custom layers' ``default_initializer``) are named in an ``RNGStateWarning``.

    >>> import rngstate, rngstate.paddle, paddle
    >>> _ = rngstate.seed_everything(0)
    >>> model = rngstate.paddle.init_by_name(paddle.nn.Sequential(paddle.nn.Linear(4, 4)))
    """
    paddle = sys.modules.get("paddle")
    if paddle is None or not isinstance(layer, paddle.nn.Layer):
        raise wrong_model(_FUNCTION, "paddle.nn.Layer", layer)
    namer = Namer()
    streams = [backends.stream(name) for name in _STREAMS if backends.stream(name).is_active()]
    outer = [stream.get_state() for stream in streams]
    untouched: list[str] = []
    try:
        with paddle.no_grad():
            for name, sublayer in layer.named_sublayers(include_self=True):
                untouched += _init_one(paddle, sublayer, name, namer, streams)
    finally:
        for stream, state in zip(streams, outer, strict=True):
            stream.set_state(state)
    report_untouched(_FUNCTION, untouched, _HINT)
    return layer


def _init_one(paddle: Any, layer: Any, name: str, namer: Namer, streams: list[Any]) -> list[str]:
    """Initialize ``layer``'s own parameters; return the qualified names of those it could not."""
    found = [(attr, _init_call(paddle, layer, attr, param))
             for attr, param in layer.named_parameters(include_sublayers=False)]
    if not found:
        return []
    parts = namer.parts(name, ".")
    for stream in streams:
        stream.seed_derived(namer.material(parts, stream.name))
    missing = []
    for attr, init in found:
        if init is None:
            missing.append(f"{name}.{attr}" if name else attr)
        else:
            init()
    return missing


def _init_call(paddle: Any, layer: Any, attr: str, param: Any) -> Callable[[], Any] | None:
    """What initializes ``param``: under ``paddle.LazyGuard`` the initializer Paddle stored on it
    (run once, as ``param.initialize()`` does), else the one found again; None when unknown."""
    if getattr(param, "_init_func", None) is not None:
        return param.initialize  # type: ignore[no-any-return]
    initializer = _initializer(paddle, layer, attr)
    return None if initializer is None else lambda: initializer(param)
