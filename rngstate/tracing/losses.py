"""What a step record holds about the loss: its exact bits, with the NumPy name of its dtype.

>>> loss_text(*loss_fields(0.5))
'0.5 (0x3fe0000000000000)'
"""

from __future__ import annotations

import math
import struct
import sys
from typing import Any

from rngstate.tracing.digests import _TENSOR, _array, _digest, _flatten


def loss_bits(loss: Any) -> dict[str, Any]:
    """The loss's exact bits: ``dtype`` (NumPy's dtype string) and ``bits`` (its bytes) for a
    single number; a multi-element loss keeps an 8-byte digest in ``bits`` (dtype "digest").

    >>> loss_bits(0.5)
    {'dtype': '<f8', 'bits': b'\\x00\\x00\\x00\\x00\\x00\\x00\\xe0?'}
    """
    dtype, bits = loss_fields(loss)
    return {"dtype": dtype, "bits": bits}


def loss_fields(loss: Any) -> tuple[str, bytes]:
    """``(dtype, bits)`` of :func:`loss_bits`, as a step record holds them.

    >>> loss_fields(0.5) == tuple(loss_bits(0.5).values())
    True
    """
    if type(loss) is _TENSOR[0]:  # the usual loss: a float torch scalar, read with item()
        entry = _TORCH_BITS.get(loss.dtype)
        if entry is not None:
            try:
                value = loss.item()
            except (RuntimeError, ValueError):  # more than one element, a meta tensor
                value = None
            if value is not None and value == value:  # not a NaN (whose payload item() may change)
                return entry[0], entry[1].pack(value)
    if isinstance(loss, (int, float)) and not isinstance(loss, bool):
        return "<f8", _F64.pack(float(loss))
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(loss, torch.Tensor) and loss.numel() == 1:
        _TENSOR[0] = torch.Tensor
        bits = _torch_scalar_bits(torch, loss)
        if bits is not None:
            return bits
    if hasattr(loss, "dtype") and hasattr(loss, "shape"):  # a tensor: what _flatten would do
        array = _array(loss, ("loss",))
        if array.size == 1:
            return array.dtype.str, array.tobytes()
    tokens: list[Any] = []
    arrays: list[Any] = []
    _flatten(loss, tokens, arrays, ("loss",))
    if len(tokens) == 2 and len(arrays) == 1 and arrays[0].size == 1:  # one array of one number
        return arrays[0].dtype.str, arrays[0].tobytes()
    return "digest", _digest(tokens, arrays).digest()


def _torch_scalar_bits(torch: Any, loss: Any) -> tuple[str, bytes] | None:
    """loss_fields of a one-element float tensor, read with ``item()`` (a float of any of these
    widths is a double exactly, and packs back to its own bits) or, for a NaN (whose payload a
    conversion may change), as the integer of the same bits; None for other dtypes.  bfloat16
    is recorded as float32, as NumPy would hold it."""
    if not _TORCH_BITS:
        _TORCH_BITS.update({
            torch.float32: ("<f4", _F32, torch.int32, _I32), torch.float64: ("<f8", _F64, torch.int64, _I64),
            torch.float16: ("<f2", _F16, torch.int16, _I16), torch.bfloat16: ("<f4", _F32, torch.int32, _I32),
        })
    entry = _TORCH_BITS.get(loss.dtype)
    if entry is None:
        return None
    dtype, number, integer, layout = entry
    value = loss.item()
    if value == value:  # not a NaN
        return dtype, number.pack(value)
    exact = loss.detach().reshape(())
    if loss.dtype == torch.bfloat16:
        exact = exact.float()  # exact
    return dtype, layout.pack(exact.view(integer).item())


_TORCH_BITS: dict[Any, tuple[str, struct.Struct, Any, struct.Struct]] = {}
_I16, _I32, _I64 = struct.Struct("<h"), struct.Struct("<i"), struct.Struct("<q")
_F16, _F32, _F64 = struct.Struct("<e"), struct.Struct("<f"), struct.Struct("<d")


def loss_text(dtype: str, bits: bytes) -> str:
    """A recorded loss as text: the number (exact repr) and its bits, or the digest.

    >>> loss_text("<f8", struct.pack("<d", 0.5))
    '0.5 (0x3fe0000000000000)'
    """
    formats = {"<f8": "<d", "<f4": "<f", "<f2": "<e"}
    if dtype in formats and len(bits) == struct.calcsize(formats[dtype]):
        value = struct.unpack(formats[dtype], bits)[0]
        shown = repr(value) if not math.isnan(value) else "nan"
        return f"{shown} (0x{bits[::-1].hex()})"
    return f"{bits[:32].hex()} ({dtype[:16]})"
