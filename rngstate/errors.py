"""Every error rngstate raises derives from :class:`RNGStateError`."""

from __future__ import annotations


class RNGStateError(Exception):
    """Base class of every error raised by rngstate."""


class NoRootSeedError(RNGStateError):
    """A root seed is needed but none was set; call ``rngstate.seed_everything(seed)`` first."""


class InvalidSeedError(RNGStateError, ValueError):
    """A seed is not an integer in the accepted range."""


class ScopeError(RNGStateError):
    """A scope was used wrongly: a bad name, a second thread, or a call not allowed inside a scope."""


class InvalidStateError(RNGStateError, ValueError):
    """A state (dict, file payload or generator state) has the wrong shape or impossible values."""


class StateFileError(RNGStateError, ValueError):
    """A state file is missing, truncated, corrupt, foreign or from a newer format version."""


class MissingBackendError(RNGStateError):
    """A state holds a stream for a framework that is not installed, or the live program uses
    a generator that the state does not hold."""


class BackendRegistrationError(RNGStateError, ValueError):
    """A stream or generator kind could not be registered (bad name, name taken, wrong type)."""


class TopologyError(RNGStateError):
    """The state was saved with another world size or rank than the live job has."""


class GroupError(TopologyError, TypeError):
    """``per_rank=`` / ``group_rank`` got something that is not a process group or mesh dimension."""


class RNGStateWarning(UserWarning):
    """Something was skipped, mapped or weakened: ``restore(strict=False)`` skipping a stream,
    a pending CUDA state mapped to another device count, a determinism switch set only to
    ``warn_only``, a generator rngstate cannot capture or does not track."""


class InitializationError(RNGStateError, TypeError, ValueError):
    """``init_by_name`` got something it cannot initialize: not a model of its framework, an
    ``init_fn`` that is not callable, or weights that do not exist yet (meta device, lazy
    modules, an unbuilt Keras model)."""


class KerasResumeError(RNGStateError):
    """The Keras backup cannot be written or resumed exactly."""


class PaddleResumeError(RNGStateError):
    """The ``paddle.Model.fit`` backup cannot be written or resumed exactly."""


class DataLoaderError(RNGStateError, ValueError):
    """A loader or sampler was configured or used in a way that cannot resume exactly (a
    ``ValueError`` too, as torch's DataLoader raises for bad arguments)."""


class DataLoaderTypeError(DataLoaderError, TypeError):
    """A loader argument has the wrong type (a ``TypeError`` too, as torch raises there)."""


class CommandLineError(RNGStateError):
    """Bad command-line input; reported as one line with exit status 2."""


class DiagnosticsError(RNGStateError, ValueError):
    """A diagnostics helper was called with arguments it cannot use."""


class NotReproducibleError(RNGStateError, AssertionError):
    """Two runs from the same seed produced different outputs (see the message for the first)."""


class UncomparableOutputError(DiagnosticsError, TypeError):
    """``check_reproducible`` cannot compare an output of this type bit for bit."""


__all__ = [
    "BackendRegistrationError",
    "CommandLineError",
    "DataLoaderError",
    "DataLoaderTypeError",
    "DiagnosticsError",
    "GroupError",
    "InitializationError",
    "InvalidSeedError",
    "InvalidStateError",
    "KerasResumeError",
    "MissingBackendError",
    "NoRootSeedError",
    "NotReproducibleError",
    "PaddleResumeError",
    "RNGStateError",
    "RNGStateWarning",
    "ScopeError",
    "StateFileError",
    "TopologyError",
    "UncomparableOutputError",
]
