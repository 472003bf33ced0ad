"""The 30-second tour: a named substream, a snapshot, a file.

    python examples/quickstart.py
"""

import random
import tempfile
from pathlib import Path

import numpy as np

import rngstate

rngstate.seed_everything(42)  # python, numpy and every framework imported, now or later

with rngstate.rng_scope("encoder"):  # its own stream, derived from (42, "encoder")
    print("encoder draws", np.random.rand())  # the same whatever ran before or elsewhere

state = rngstate.capture()  # every generator and substream, as plain data
first = random.random()
rngstate.restore(state)
print("after restore, the same draw:", random.random() == first)

path = Path(tempfile.mkdtemp()) / "step0.rngstate"
rngstate.save(path, state)  # atomic msgpack file; inspect it with `rngstate inspect`
print("saved", path.name, "fingerprint", rngstate.fingerprint(rngstate.load(path)))
