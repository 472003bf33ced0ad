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


class DataLoaderError(RNGStateError, ValueError):
    """A loader or sampler was configured or used in a way that cannot resume exactly (a
    ``ValueError`` too, as torch's DataLoader raises for bad arguments)."""


class DataLoaderTypeError(DataLoaderError, TypeError):
    """A loader argument has the wrong type (a ``TypeError`` too, as torch raises there)."""
