"""Broken: the resumed run draws ``torch.rand(1)`` after ``rngstate.restore(...)`` and before
its first step (in real code: a layer built, or a sanity check run, after the restore).  The
batch is the same, torch's stream is not.

    python examples/diagnose/drew_after_restore.py      # runs the job, prints `rngstate compare`
"""

import sys

from job import scenario

if __name__ == "__main__":
    folder = sys.argv[1] if len(sys.argv) > 1 else None  # where the traces go (default: a temp folder)
    sys.exit(0 if scenario("drew-after-restore", resume=True, folder=folder) in (0, 1) else 2)
