"""Broken: the model's output depends on something no seed controls (``UnseededKernel`` in
job.py adds noise read from ``os.urandom``, as a GPU kernel with atomic float adds varies from
run to run).  Two runs from one seed: same batches, same random streams, the loss differs.

    python examples/diagnose/nondeterministic_kernel.py      # runs the job, prints `rngstate compare`
"""

import sys

from job import scenario

if __name__ == "__main__":
    folder = sys.argv[1] if len(sys.argv) > 1 else None  # where the traces go (default: a temp folder)
    sys.exit(0 if scenario("nondeterministic-kernel", resume=False, folder=folder) in (0, 1) else 2)
