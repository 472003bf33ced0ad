"""Tensors and arrays of any framework as NumPy arrays, without importing a framework the
program has not imported (shared by ``check_reproducible`` and the step trace's digests).

>>> import numpy as np
>>> to_numpy(np.arange(3), "x").tolist()
[0, 1, 2]
"""

from __future__ import annotations

import sys
from typing import Any

from rngstate.errors import UncomparableOutputError


def to_numpy(value: Any, path: str) -> Any:
    """A NumPy copy of an array or tensor (torch, TensorFlow, Paddle); bfloat16 as float32
    (exact); ``UncomparableOutputError`` naming ``path`` for anything else."""
    import numpy as np  # only here: `import rngstate` stays free of numpy

    if isinstance(value, (np.ndarray, np.generic)):
        return np.array(value, copy=True)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16; float32 holds it exactly
            tensor = tensor.float()
        return np.array(tensor.numpy(), copy=True)
    convert = getattr(value, "numpy", None)  # TensorFlow and Paddle tensors
    if callable(convert):
        return np.array(convert(), copy=True)
    raise UncomparableOutputError(
        f"{path}: cannot compare a {type(value).__module__}.{type(value).__qualname__} bit for bit; "
        "return numbers, strings, arrays, tensors, or lists/tuples/dicts of them"
    )
