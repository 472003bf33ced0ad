"""``python -m rngstate``: the same as the ``rngstate`` command."""

from __future__ import annotations

from rngstate.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
