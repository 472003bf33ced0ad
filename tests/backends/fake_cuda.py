"""CUDA on a CPU build of torch, faking only torch's C++ entry points.

Everything torch does in Python runs for real: ``torch.cuda._lazy_init`` with its lock and its
``_tls.is_initializing`` flag, ``_lazy_call`` and its queue, the lazy seed tracker that runs
``torch.manual_seed``'s queued ``manual_seed_all`` after the other queued calls,
``device_count``, ``is_initialized`` and the bad-fork check.  Faked are what a CUDA build's
``torch._C`` provides (``_cuda_init``, ``_cuda_getDeviceCount``, ``_cuda_getDevice``,
``_cuda_isInBadFork``, ``_cuda_isCurrentStreamCapturing``), ``torch.cuda._cudart`` (None on a
CPU build) and what ``_cuda_init`` creates: ``default_generators`` with torch's 16-byte
(seed, offset) Philox states and ``_get_device_properties``.

Usable from a test (``FakeCuda(2).install(monkeypatch.setattr)``) or from a subprocess
(``FakeCuda(2).install()``).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import torch
import torch.cuda.graphs
from torch._utils import _LazySeedTracker

_PHILOX = struct.Struct("<Qq")
DEFAULT_SEED = 67280421310721  # c10::detail::default_rng_seed_val, what a fresh generator has


class FakeCudaGenerator:
    """A CUDA device's default generator as torch exposes it."""

    def __init__(self, index: int, cuda: FakeCuda) -> None:
        self.device = torch.device("cuda", index)
        self._cuda = cuda
        self.state = _PHILOX.pack(DEFAULT_SEED, 0)

    def _refuse_in_capture(self, what: str) -> None:
        if self._cuda.in_bad_fork():  # what any CUDA call does in a child forked after CUDA started
            raise RuntimeError("CUDA error: initialization error")
        if self._cuda.capturing:  # as CUDAGeneratorImpl does (at::cuda::assertNotCapturing)
            raise RuntimeError(f"Cannot call CUDAGeneratorImpl::{what} during CUDA graph capture.")

    def manual_seed(self, seed: int) -> FakeCudaGenerator:
        self._refuse_in_capture("set_current_seed")
        self.state = _PHILOX.pack(int(seed) % 2**64, 0)
        return self

    def initial_seed(self) -> int:
        return int(_PHILOX.unpack(self.state)[0])

    def get_state(self) -> torch.Tensor:
        self._refuse_in_capture("get_state")
        return torch.frombuffer(bytearray(self.state), dtype=torch.uint8)

    def set_state(self, tensor: torch.Tensor) -> None:
        self._refuse_in_capture("set_state")
        data = bytes(tensor.numpy().tobytes())
        if len(data) != 16 or _PHILOX.unpack(data)[1] % 4:
            raise RuntimeError("RNG state is wrong size or has an offset that is not a multiple of 4")
        self.state = data

    def draw(self) -> tuple[int, int]:
        """What a kernel launch does: use (seed, offset), advance the offset."""
        if self._cuda.in_bad_fork():
            raise RuntimeError("CUDA error: initialization error")
        seed, offset = _PHILOX.unpack(self.state)
        self.state = _PHILOX.pack(seed, offset + 4)
        return seed, offset


class FakeCuda:
    """``count`` fake CUDA devices called ``name``."""

    def __init__(self, count: int, name: str = "Fake GPU") -> None:
        self.count = count
        self.name = name
        self.generators: tuple[FakeCudaGenerator, ...] = ()
        self.capturing = False
        self.started_in: int | None = None  # pid of the process that initialized CUDA

    def install(
        self, setattr_: Callable[[Any, str, Any], None] | None = None, *, keep_queued: bool = False
    ) -> FakeCuda:
        """Put the fakes in place and torch's CUDA module back to "not initialized".

        ``keep_queued``: keep the calls already queued for CUDA's start (a process that imported
        torch before installing the fakes) except torch's own capability checks, which need a
        real device; otherwise start from an empty queue and seed tracker.
        """

        def put(owner: Any, name: str, value: Any) -> None:
            if setattr_ is None:
                setattr(owner, name, value)
            else:
                setattr_(owner, name, value, raising=False)  # type: ignore[call-arg]

        cuda: Any = torch.cuda
        put(torch._C, "_cuda_getDeviceCount", lambda: self.count)
        put(torch._C, "_cuda_init", self._cuda_init)
        put(torch._C, "_cuda_getDevice", lambda: 0)
        put(cuda, "_cudart", SimpleNamespace())
        put(cuda, "_is_in_bad_fork", self.in_bad_fork)
        put(cuda, "_initialized", False)
        own = {"_check_capability", "_check_cubins"}
        queued = [call for call in cuda._queued_calls if getattr(call[0], "__name__", "") not in own]
        put(cuda, "_queued_calls", queued if keep_queued else [])
        if not keep_queued:
            put(cuda, "_lazy_seed_tracker", _LazySeedTracker())
        put(cuda, "_cached_device_count", None)
        put(cuda, "default_generators", ())
        put(cuda, "_get_device_properties", lambda index: SimpleNamespace(name=self.name))
        put(torch.cuda.graphs, "_cuda_isCurrentStreamCapturing", lambda: self.capturing)
        return self

    def _cuda_init(self) -> None:
        """What ``torch._C._cuda_init`` does: create the devices' default generators."""
        if self.count == 0:
            raise RuntimeError("Found no NVIDIA driver on your system.")
        self.generators = tuple(FakeCudaGenerator(i, self) for i in range(self.count))
        cuda: Any = torch.cuda
        cuda.default_generators = self.generators
        self.started_in = os.getpid()

    def in_bad_fork(self) -> bool:
        """``torch._C._cuda_isInBadFork``: a child forked after CUDA started."""
        return self.started_in is not None and os.getpid() != self.started_in

    def states(self) -> list[bytes]:
        return [generator.state for generator in self.generators]

    def draws(self) -> list[tuple[int, int]]:
        """One kernel launch on every device."""
        return [generator.draw() for generator in self.generators]
