"""Framework determinism switches: set them, report what could not be set, undo them.

Seeding makes the *random numbers* repeat; these switches make the *kernels* repeat (cuDNN
autotuning, atomic-add reductions, cuBLAS workspaces).  Only frameworks already imported are
touched; a framework imported later gets the switches the moment it is imported, so import order
never matters.  Nothing here imports a framework.

>>> import rngstate
>>> report = rngstate.deterministic(True)
>>> _ = rngstate.deterministic(False)        # puts every switch back as it was
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rngstate.backends import importhook
from rngstate.errors import RNGStateWarning

logger = logging.getLogger(__name__)

ON, OFF, WARN_ONLY, UNSET = "on", "off", "warn_only", "unset"
CUBLAS_VARIABLE = "CUBLAS_WORKSPACE_CONFIG"
CUBLAS_VALUE = ":4096:8"
_CUBLAS_DETERMINISTIC = (":4096:8", ":16:8")  # the two values NVIDIA documents as deterministic
FRAMEWORKS = ("torch", "tensorflow", "paddle")

# Environment variables that make a *new* process deterministic before anything initializes;
# `rngstate run --deterministic` sets them (they cannot all take effect from inside a process).
ENVIRONMENT = {
    CUBLAS_VARIABLE: CUBLAS_VALUE,
    "FLAGS_cudnn_deterministic": "1",
    "TF_DETERMINISTIC_OPS": "1",
    # Read by seed_everything(): torch's switch has no environment variable of its own.
    "RNGSTATE_DETERMINISTIC": "1",
}


def _flag(value: object) -> str:
    return ON if value else OFF


@dataclass
class _Switch:
    """One setting: how to read and write it, its deterministic value and its default."""

    name: str
    read: Callable[[], str]
    write: Callable[[str], None]
    on: Callable[[bool], str]  # warn_only -> the deterministic value
    # Value deterministic(False) sets when rngstate never changed the switch; None: leave it.
    default: str | None
    # Other values that count as deterministic and are kept as they are (None: only `on`).
    is_on: Callable[[str], bool] | None = None
    # Reason the switch cannot be changed right now (None: it can); takes the target value.
    blocked: Callable[[str], str | None] = lambda target: None
    missing: str | None = None  # why the switch does not exist in this build (None: it does)
    # Reason the deterministic value would break the program, so warn_only is set instead.
    weakened: Callable[[str], str | None] = lambda target: None


# -- torch -----------------------------------------------------------------------------------------


def _torch_switches() -> list[_Switch]:
    torch: Any = sys.modules["torch"]

    def read_algorithms() -> str:
        if not torch.are_deterministic_algorithms_enabled():
            return OFF
        return WARN_ONLY if torch.is_deterministic_algorithms_warn_only_enabled() else ON

    def write_algorithms(value: str) -> None:
        torch.use_deterministic_algorithms(value != OFF, warn_only=value == WARN_ONLY)

    def attribute(owner: Any, attr: str) -> tuple[Callable[[], str], Callable[[str], None]]:
        return (lambda: _flag(getattr(owner, attr))), (lambda value: setattr(owner, attr, value == ON))

    def read_cublas() -> str:
        return os.environ.get(CUBLAS_VARIABLE, UNSET)

    def cublas_too_late() -> bool:
        return torch.cuda.is_initialized() and read_cublas() not in _CUBLAS_DETERMINISTIC

    def algorithms_weakened(target: str) -> str | None:
        # With CUDA started and no deterministic cuBLAS workspace, torch raises at the first
        # cuBLAS matmul under use_deterministic_algorithms(True): warn instead of breaking it.
        if target == ON and cublas_too_late():
            return (
                f"CUDA started before {CUBLAS_VARIABLE} was set, so cuBLAS matmuls cannot be "
                "deterministic and torch.use_deterministic_algorithms(True) would make the first "
                "one raise; it is set to warn_only instead. Set "
                f"{CUBLAS_VARIABLE}={CUBLAS_VALUE} before CUDA starts (or run under "
                "`rngstate run --deterministic -- ...`) for full determinism"
            )
        return None

    def write_cublas(value: str) -> None:
        if value == UNSET:
            os.environ.pop(CUBLAS_VARIABLE, None)
        else:
            os.environ[CUBLAS_VARIABLE] = value

    def cublas_blocked(target: str) -> str | None:
        # cuBLAS reads the variable when it creates its handle, i.e. after CUDA initializes;
        # setting it later would look fine and silently change nothing.
        if target != UNSET and torch.cuda.is_initialized():
            return (
                f"{CUBLAS_VARIABLE} must be set before CUDA initializes (cuBLAS reads it once); "
                f"export {CUBLAS_VARIABLE}={CUBLAS_VALUE} or start the program with "
                "`rngstate run --deterministic -- ...` (until then "
                "torch.use_deterministic_algorithms is warn_only: cuBLAS matmuls warn, not raise)"
            )
        return None

    switches = [
        _Switch(
            "torch.use_deterministic_algorithms",
            read_algorithms,
            write_algorithms,
            on=lambda warn_only: WARN_ONLY if warn_only else ON,
            default=OFF,
            weakened=algorithms_weakened,
        ),
        _Switch(
            "torch.backends.cudnn.deterministic",
            *attribute(torch.backends.cudnn, "deterministic"),
            on=lambda _: ON,
            default=OFF,
        ),
        # benchmark=True autotunes per shape and may pick a different kernel every run.
        _Switch(
            "torch.backends.cudnn.benchmark",
            *attribute(torch.backends.cudnn, "benchmark"),
            on=lambda _: OFF,
            default=None,
        ),
    ]
    mkldnn = getattr(torch.backends, "mkldnn", None)
    if mkldnn is not None and hasattr(mkldnn, "deterministic"):  # torch >= 2.1
        switches.append(
            _Switch(
                "torch.backends.mkldnn.deterministic",
                *attribute(mkldnn, "deterministic"),
                on=lambda _: ON,
                default=OFF,
            )
        )
    switches.append(
        _Switch(
            CUBLAS_VARIABLE,
            read_cublas,
            write_cublas,
            on=lambda _: CUBLAS_VALUE,
            default=None,  # the user's own environment: never removed unless rngstate set it
            is_on=lambda value: value in _CUBLAS_DETERMINISTIC,
            blocked=cublas_blocked,
        )
    )
    return switches


# -- tensorflow ------------------------------------------------------------------------------------


def _tensorflow_switches() -> list[_Switch]:
    # The read side (is_op_determinism_enabled) is not exported under tf.config; this module is
    # loaded by `import tensorflow` itself, so importing it here imports nothing new.
    config: Any = importlib.import_module("tensorflow.python.framework.config")

    def write(value: str) -> None:
        if value == ON:
            config.enable_op_determinism()
        else:
            config.disable_op_determinism()

    return [
        _Switch(
            "tensorflow.op_determinism",
            lambda: _flag(config.is_op_determinism_enabled()),
            write,
            on=lambda _: ON,
            default=OFF,
        )
    ]


# -- paddle ----------------------------------------------------------------------------------------


def _paddle_switches() -> list[_Switch]:
    paddle: Any = sys.modules["paddle"]

    def flag(name: str, deterministic: str, default: str | None) -> _Switch:
        missing = None
        try:
            paddle.get_flags([name])
        except ValueError:  # CPU builds do not define the cuDNN flags at all
            cuda = paddle.is_compiled_with_cuda()
            missing = f"this Paddle build has no {name} flag" + (
                "" if cuda else " (built without CUDA; its CPU kernels need no switch)"
            )

        return _Switch(
            f"paddle.{name}",
            lambda: _flag(paddle.get_flags([name])[name]),
            lambda value: paddle.set_flags({name: value == ON}),
            on=lambda _: deterministic,
            default=default,
            missing=missing,
        )

    return [
        flag("FLAGS_cudnn_deterministic", ON, OFF),
        flag("FLAGS_cudnn_exhaustive_search", OFF, None),  # autotuning, like cudnn.benchmark
    ]


_BUILDERS: dict[str, Callable[[], list[_Switch]]] = {
    "torch": _torch_switches,
    "tensorflow": _tensorflow_switches,
    "paddle": _paddle_switches,
}
_BUILT: dict[str, list[_Switch]] = {}


def _switches(framework: str) -> list[_Switch]:
    """The framework's switches, built once (capture() reads them on every call)."""
    built = _BUILT.get(framework)
    if built is None:
        built = _BUILT[framework] = _BUILDERS[framework]()
    return built


# -- the report ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeterminismReport:
    """What ``deterministic()`` did: each switch set (with its value now), each it could not set
    (with the reason) and each this build does not have (a CPU-only Paddle has no cuDNN flags).
    ``bool(report)`` is True when nothing that exists was left unset.

    >>> import rngstate
    >>> report = rngstate.deterministic(True)
    >>> sorted(report.not_applied) == []          # no framework imported: nothing to refuse
    True
    >>> _ = rngstate.deterministic(False)
    """

    enabled: bool
    warn_only: bool
    applied: dict[str, str] = field(default_factory=dict)
    not_applied: dict[str, str] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    frameworks: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return not self.not_applied

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for logs or JSON)."""
        return {
            "enabled": self.enabled,
            "warn_only": self.warn_only,
            "applied": dict(self.applied),
            "not_applied": dict(self.not_applied),
            "unavailable": dict(self.unavailable),
            "frameworks": list(self.frameworks),
        }

    def __str__(self) -> str:
        call = f"rngstate.deterministic({self.enabled}{', warn_only=True' if self.warn_only else ''})"
        lines = [f"{call}: {len(self.applied)} set, {len(self.not_applied)} not set"]
        names = (*self.applied, *self.not_applied, *self.unavailable)
        width = max((len(name) for name in names), default=0)
        lines += [f"  set      {name:<{width}} = {value}" for name, value in self.applied.items()]
        lines += [f"  NOT SET  {name:<{width}} : {why}" for name, why in self.not_applied.items()]
        lines += [f"  n/a      {name:<{width}} : {why}" for name, why in self.unavailable.items()]
        later = [name for name in FRAMEWORKS if name not in self.frameworks]
        if not self.frameworks:
            lines.append("  no framework with determinism switches is imported (python and numpy need none)")
        if self.enabled and later:
            lines.append(f"  {', '.join(later)}: not imported; switched when imported")
        return "\n".join(lines)


# -- applying --------------------------------------------------------------------------------------


class _Controller:
    """Process-wide: whether determinism is on, and each switch's value before rngstate changed it."""

    def __init__(self) -> None:
        self.enabled = False
        self.warn_only = False
        self.saved: dict[str, str] = {}
        self.lock = threading.RLock()


_CONTROLLER = _Controller()


@dataclass
class _Outcome:
    """What one call did, gathered switch by switch before the frozen report is made."""

    enabled: bool
    warn_only: bool
    applied: dict[str, str] = field(default_factory=dict)
    not_applied: dict[str, str] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)

    def report(self, frameworks: tuple[str, ...]) -> DeterminismReport:
        return DeterminismReport(
            self.enabled, self.warn_only, self.applied, self.not_applied, self.unavailable, frameworks
        )


def _apply(framework: str, report: _Outcome) -> None:
    controller = _CONTROLLER
    try:
        switches = _switches(framework)
    except Exception as exc:  # a framework too old or half-imported must not break the caller
        _refuse(report, framework, f"cannot read its switches: {type(exc).__name__}: {exc}")
        return
    for switch in switches:
        try:
            if switch.missing is not None:
                report.unavailable[switch.name] = switch.missing
                continue
            current = switch.read()
            if report.enabled:
                target = switch.on(report.warn_only)
                if switch.is_on is not None and switch.is_on(current):
                    target = current  # already deterministic (e.g. CUBLAS :16:8): keep the user's
                blocked = switch.blocked(target) if target != current else None
                if blocked is not None:
                    _refuse(report, switch.name, blocked)
                    continue
                weakened = switch.weakened(target)
                if weakened is not None:
                    target = WARN_ONLY
                    logger.warning("rngstate.deterministic: %s", weakened)
                    warnings.warn(f"rngstate.deterministic: {weakened}", RNGStateWarning, stacklevel=4)
                # Remember the value from before rngstate's first change, so False undoes it.
                controller.saved.setdefault(switch.name, current)
            else:
                saved = controller.saved.pop(switch.name, None)
                target = saved if saved is not None else (switch.default or current)
            if target != current:
                switch.write(target)
            report.applied[switch.name] = switch.read()
        except Exception as exc:  # report, never raise: the other switches still matter
            _refuse(report, switch.name, f"{type(exc).__name__}: {exc}")


def _refuse(report: _Outcome, name: str, why: str) -> None:
    report.not_applied[name] = why
    logger.warning("rngstate.deterministic: %s not set: %s", name, why)


def deterministic(enabled: bool = True, *, warn_only: bool = False) -> DeterminismReport:
    """Turn every imported framework's determinism switches on (or, with ``False``, back off).

    torch: ``use_deterministic_algorithms`` (``warn_only`` makes unsupported ops warn instead of
    raise), cuDNN ``deterministic`` on and ``benchmark`` off, oneDNN ``deterministic``, and
    ``CUBLAS_WORKSPACE_CONFIG`` (only before CUDA initializes); TensorFlow: op determinism;
    Paddle: ``FLAGS_cudnn_deterministic`` on, ``FLAGS_cudnn_exhaustive_search`` off.
    Frameworks imported later are switched when imported.  ``deterministic(False)`` puts back
    the values each switch had before rngstate changed it.  Returns a
    :class:`DeterminismReport`; nothing raises for a switch that cannot be set.

    >>> import rngstate
    >>> print(rngstate.deterministic(True).enabled)
    True
    >>> _ = rngstate.deterministic(False)
    """
    controller = _CONTROLLER
    with controller.lock:
        controller.enabled = bool(enabled)
        controller.warn_only = bool(warn_only) and bool(enabled)
        outcome = _Outcome(controller.enabled, controller.warn_only)
        touched = tuple(name for name in FRAMEWORKS if name in sys.modules)
        for framework in touched:
            _apply(framework, outcome)
        report = outcome.report(touched)
        if controller.enabled:
            _install_watcher()
        else:
            controller.saved.clear()
    _log(report)
    return report


def _log(report: DeterminismReport) -> None:
    logger.info("%s", report)


def is_enabled() -> bool:
    """True while ``deterministic(True)`` is in effect."""
    return _CONTROLLER.enabled


def settings() -> dict[str, str]:
    """The live switches of every imported framework, as recorded in a captured state.

    >>> import rngstate.determinism
    >>> isinstance(rngstate.determinism.settings(), dict)
    True
    """
    values: dict[str, str] = {}
    for framework in FRAMEWORKS:
        if framework not in sys.modules:
            continue
        try:
            switches = _switches(framework)
        except Exception:  # a half-imported framework: record nothing rather than fail a capture
            continue
        for switch in switches:
            try:
                if switch.missing is None:
                    values[switch.name] = switch.read()
            except Exception:
                logger.debug("cannot read %s", switch.name, exc_info=True)
    return values


def differences(recorded: object) -> list[str]:
    """Switches whose ``recorded`` value (from a state's metadata) differs from the live one.

    Switches of frameworks not imported here are not compared: they may still be imported.

    >>> differences({"tensorflow.op_determinism": "on"})   # tensorflow not imported: no opinion
    []
    """
    if not isinstance(recorded, dict):
        return []
    live = settings()
    return [
        f"{name} was {value} at capture, is {live[name]} now"
        for name, value in sorted(recorded.items())
        if isinstance(name, str) and name in live and live[name] != value
    ]


# -- frameworks imported later ---------------------------------------------------------------------


def _on_import(framework: str) -> None:
    with _CONTROLLER.lock:
        if not _CONTROLLER.enabled:
            return
        outcome = _Outcome(True, _CONTROLLER.warn_only)
        _apply(framework, outcome)
    _log(outcome.report((framework,)))


def _on_import_logged(framework: str) -> None:
    try:
        _on_import(framework)
    except Exception:  # never break the user's import over a switch
        logger.warning("rngstate: could not switch %s to deterministic", framework, exc_info=True)


def _install_watcher() -> None:
    importhook.install(FRAMEWORKS, _on_import_logged)


__all__ = ["DeterminismReport", "deterministic", "differences", "is_enabled", "settings"]
