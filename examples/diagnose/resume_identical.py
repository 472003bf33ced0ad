"""The job done right: killed two steps after its checkpoint at step 8, resumed in a new process
from that checkpoint (model, optimizer, loader and RNG state), it takes the very steps of the
run that never stopped: ``rngstate compare`` says ``identical``.

    python examples/diagnose/resume_identical.py      # runs the job, prints `rngstate compare`
"""

import sys

from job import scenario

if __name__ == "__main__":
    folder = sys.argv[1] if len(sys.argv) > 1 else None  # where the traces go (default: a temp folder)
    sys.exit(0 if scenario(None, resume=True, folder=folder) in (0, 1) else 2)
