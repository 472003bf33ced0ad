"""The version, in a module of its own so that any layer may read it without importing the
package's ``__init__`` (which imports every layer)."""

__version__ = "0.1.0"
