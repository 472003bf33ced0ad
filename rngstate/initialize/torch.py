"""``rngstate.torch.init_by_name``: re-initialize a torch model layer by layer, by name.

torch is never imported here: the model passed in proves the user already did.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable
from typing import Any

from rngstate import backends
from rngstate.errors import InitializationError, RNGStateWarning
from rngstate.initialize import Namer, check_init_fn, report_untouched, wrong_model

logger = logging.getLogger(__name__)

_FUNCTION = "rngstate.torch.init_by_name"
_HINT = (
    "Give their module a reset_parameters() or pass init_fn=; writes through `.data` are "
    "invisible to init_by_name (use torch.nn.init or torch.no_grad())."
)


def _reset_of(module: Any) -> Callable[[], Any] | None:
    """The module's own init: ``reset_parameters``, else ``_reset_parameters`` (MultiheadAttention,
    Transformer)."""
    for name in ("reset_parameters", "_reset_parameters"):
        reset = getattr(module, name, None)
        if callable(reset):
            return reset  # type: ignore[no-any-return]
    return None


def _parameters(modules: list[tuple[str, Any]]) -> dict[str, tuple[Any, str, Any, int]]:
    """Every parameter once, by qualified name: (owning module, its key there, the parameter,
    its version counter now).  Read from ``_parameters`` directly: ``named_parameters()`` walks
    the tree again for each call, which costs more than initializing small layers."""
    found: dict[str, tuple[Any, str, Any, int]] = {}
    seen: set[int] = set()
    for prefix, owner in modules:
        for key, param in owner._parameters.items():
            if param is not None and id(param) not in seen:
                seen.add(id(param))
                found[f"{prefix}.{key}" if prefix else key] = (owner, key, param, param._version)
    return found


def _check_materialized(torch: Any, params: dict[str, tuple[Any, str, Any, int]]) -> None:
    uninitialized = torch.nn.parameter.UninitializedParameter
    for name, (_owner, _key, param, _version) in params.items():
        if param.is_meta:
            raise InitializationError(
                f"{_FUNCTION}: parameter {name!r} is on the meta device; materialize the model "
                "first with model.to_empty(device=...), then call init_by_name"
            )
        if isinstance(param, uninitialized):
            raise InitializationError(
                f"{_FUNCTION}: parameter {name!r} of a lazy module is not created yet; run one "
                "forward pass (or model(example_input)) first"
            )


def init_by_name(module: Any, *, init_fn: Callable[[Any], Any] | None = None) -> Any:
    """Re-initialize every submodule of ``module`` from the substream named by its qualified
    name, so a layer's weights depend only on the root seed, the scope path at the call, its
    name, its shapes and its init code; not on the other layers or on what was drawn before.

    Modules are visited parent before children (``named_modules()`` order).  Each one calls
    ``init_fn(submodule)`` when given (Hugging Face ``model._init_weights``, timm's init
    functions), else its own ``reset_parameters()`` (or ``_reset_parameters()``), with torch's
    CPU and CUDA generators seeded from ``<scope path>/#init/<name>``.  When a module's init
    writes parameters of its submodules (``MultiheadAttention`` zeroes ``out_proj.bias``), that
    value is kept, as in PyTorch where the parent's init runs after its children were built.
    torch's generators are put back afterwards: code after the call draws what it would have.
    Parameters nothing wrote are named in an ``RNGStateWarning``.  Works on a model built on the
    meta device and materialized with ``to_empty()``: the weights equal the eager ones.

    >>> import rngstate, rngstate.torch, torch
    >>> _ = rngstate.seed_everything(0)
    >>> model = rngstate.torch.init_by_name(torch.nn.Sequential(torch.nn.Linear(4, 4)))
    """
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(module, torch.nn.Module):
        raise wrong_model(_FUNCTION, "torch.nn.Module", module)
    check_init_fn(init_fn, _FUNCTION)
    namer = Namer()
    modules = list(module.named_modules())
    params = _parameters(modules)
    _check_materialized(torch, params)
    streams = [backends.stream("torch.cpu")]
    if torch.cuda.is_initialized():
        streams.append(backends.stream("torch.cuda"))
    outer = [stream.get_state() for stream in streams]
    kept: dict[int, tuple[Any, Any]] = {}  # parameters written by an enclosing module's init
    # All or nothing: an init that raises half-way puts back what the earlier ones wrote.
    before = _tensors(modules)
    try:
        with torch.no_grad():
            for name, submodule in modules:
                _init_one(submodule, name, init_fn, namer, streams, kept)
            for param, value in kept.values():
                param.copy_(value)
    except BaseException:
        _put_back(torch, before)
        raise
    finally:
        for stream, state in zip(streams, outer, strict=True):
            stream.set_state(state)
    _report_random_buffers(torch, modules)
    untouched = [  # the same object, never written (a replaced parameter counts as written)
        name for name, (owner, key, param, version) in params.items()
        if owner._parameters.get(key) is param and param._version == version
    ]
    report_untouched(_FUNCTION, untouched, _HINT)
    logger.debug("%s: %d parameters re-initialized", _FUNCTION, len(params) - len(untouched))
    return module


def _tensors(modules: list[tuple[str, Any]]) -> dict[int, tuple[Any, str, Any, Any]]:
    """(owner, key, tensor, copy) of every parameter and buffer, to put back on failure."""
    found: dict[int, tuple[Any, str, Any, Any]] = {}
    for _prefix, owner in modules:
        for table in (owner._parameters, owner._buffers):
            for key, tensor in table.items():
                if tensor is not None and id(tensor) not in found:
                    found[id(tensor)] = (owner, key, tensor, tensor.detach().clone())
    return found


def _put_back(torch: Any, before: dict[int, tuple[Any, str, Any, Any]]) -> None:
    with torch.no_grad():
        for owner, key, tensor, copy in before.values():
            table = owner._parameters if key in owner._parameters else owner._buffers
            table[key] = tensor  # an init may have replaced the object
            tensor.copy_(copy)
    logger.debug("%s: an init failed; %d tensors put back", _FUNCTION, len(before))


# Buffers drawn from the global generator when the module was built, which no init redraws:
# spectral norm's power-iteration vectors and the orthogonal parametrization's base.
_RANDOM_BUFFERS = {"_SpectralNorm": ("_u", "_v"), "_Orthogonal": ("base",)}


def _report_random_buffers(torch: Any, modules: list[tuple[str, Any]]) -> None:
    names = []
    for prefix, module in modules:
        keys = list(_RANDOM_BUFFERS.get(type(module).__name__, ()))
        for hook in module._forward_pre_hooks.values():  # torch.nn.utils.spectral_norm (old API)
            if type(hook).__name__ == "SpectralNorm":
                keys += [f"{hook.name}_u", f"{hook.name}_v"]
        names += [f"{prefix}.{key}" if prefix else key for key in keys if key in module._buffers]
    if names:
        warnings.warn(
            f"{_FUNCTION}: random buffer(s) {', '.join(names)} keep the values the global "
            "generator gave them when the model was built (init_by_name does not redraw them), "
            "so they depend on what was drawn before: build the model inside "
            "rngstate.rng_scope(...) to make them reproducible too",
            RNGStateWarning,
            stacklevel=3,
        )


def _init_one(
    module: Any,
    name: str,
    init_fn: Callable[[Any], Any] | None,
    namer: Namer,
    streams: list[Any],
    kept: dict[int, tuple[Any, Any]],
) -> None:
    if init_fn is not None:
        init: Callable[[], Any] | None = lambda: init_fn(module)  # noqa: E731
    else:
        init = _reset_of(module)
    if init is None:
        return
    parts = namer.parts(name, ".")
    for stream in streams:
        stream.seed_derived(namer.material(parts, stream.name))
    if not module._modules:  # a leaf: nothing below it to protect
        init()
        return
    inner = [  # the submodules' parameters
        p for m in module.modules() if m is not module for p in m._parameters.values() if p is not None
    ]
    before = [p._version for p in inner]
    init()
    for param, version in zip(inner, before, strict=True):
        if param._version != version and id(param) not in kept:  # the outermost writer wins
            kept[id(param)] = (param, param.detach().clone())
