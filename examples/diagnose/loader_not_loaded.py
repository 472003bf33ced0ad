"""Broken: the resumed run restores model, optimizer and RNG state but not the loader's
``state_dict``: the loader begins epoch 1 again at its first batch.

    python examples/diagnose/loader_not_loaded.py      # runs the job, prints `rngstate compare`
"""

import sys

from job import scenario

if __name__ == "__main__":
    folder = sys.argv[1] if len(sys.argv) > 1 else None  # where the traces go (default: a temp folder)
    sys.exit(0 if scenario("loader-not-loaded", resume=True, folder=folder) in (0, 1) else 2)
