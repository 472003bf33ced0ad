"""The CUDA stream through torch's real start-up code: ``torch.cuda._lazy_init``, ``_lazy_call``,
the lazy seed tracker and the initialization lock run as on a GPU machine; only torch's C++
entry points are faked (tests/backends/fake_cuda.py).  These run on CPU CI: no ``gpu`` marker;
the one real-device test at the end has it.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import warnings
from collections.abc import Callable

import pytest
import torch

import rngstate
from rngstate import backends
from rngstate.errors import MissingBackendError, RNGStateWarning, ScopeError
from rngstate.runtime import RUNTIME
from tests.backends.fake_cuda import FakeCuda
from tests.conftest import ROOT, needs_cuda, run_python

Draws = list[tuple[int, int]]


@pytest.fixture
def cuda(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeCuda]:
    """``cuda(count)``: fresh, not yet initialized fake devices and a fresh runtime."""

    def make(count: int = 2, name: str = "Fake GPU") -> FakeCuda:
        RUNTIME.reset()
        return FakeCuda(count, name).install(monkeypatch.setattr)

    return make


def start() -> None:
    """Initialize CUDA the way a first CUDA op does; a deadlock fails instead of hanging."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            torch.cuda.init()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(20)
    assert not thread.is_alive(), "torch.cuda.init() deadlocked"
    if errors:
        raise errors[0]
    assert torch.cuda.is_initialized()


def session(fake: FakeCuda, when: str) -> tuple[Draws, Draws, Draws]:
    """Seed 5, draw in scope "gpu" and outside; CUDA starts at ``when``."""
    if when == "before seeding":
        start()
    rngstate.seed_everything(5)
    if when == "after seeding":
        start()
    with rngstate.rng_scope("gpu"):
        if when == "inside a scope":
            start()
        inside = fake.draws() + fake.draws()
    outside = fake.draws()
    with rngstate.rng_scope("gpu"):
        again = fake.draws()
    return inside, outside, again


def test_cuda_start_time_does_not_matter(cuda: Callable[..., FakeCuda]) -> None:
    results = {when: session(cuda(2), when) for when in ("before seeding", "after seeding", "inside a scope")}
    assert len({repr(result) for result in results.values()}) == 1, results
    inside, outside, again = results["before seeding"]
    assert outside == [(5, 0), (5, 0)]  # the root stream is manual_seed_all(5)
    assert inside[0][0] != 5 and again[0] == (inside[0][0], 8)  # the substream continues


def test_capture_after_cuda_draws_keeps_the_offset(cuda: Callable[..., FakeCuda]) -> None:
    fake = cuda(1)
    rngstate.seed_everything(5)
    start()
    fake.draws()
    fake.draws()
    assert rngstate.capture().to_dict()["streams"]["torch.cuda"] == fake.states()
    assert fake.draws() == [(5, 8)]  # capture() never rewinds the live generators


@pytest.mark.parametrize("user_seed", [False, True])
def test_state_restored_before_cuda_starts(cuda: Callable[..., FakeCuda], user_seed: bool) -> None:
    fake = cuda(2)
    rngstate.seed_everything(5)
    start()
    with rngstate.rng_scope("gpu"):
        fake.draws()
    fake.draws()
    state = rngstate.capture()
    expected = (fake.draws(), session_tail(fake))

    fake = cuda(2)
    if user_seed:  # torch queues manual_seed_all(0); it runs after the other queued calls
        torch.manual_seed(0)
    rngstate.restore(state)
    start()
    assert (fake.draws(), session_tail(fake)) == expected


def session_tail(fake: FakeCuda) -> Draws:
    with rngstate.rng_scope("gpu"):
        return fake.draws()


def test_restore_before_cuda_with_another_device_count_is_checked(cuda: Callable[..., FakeCuda]) -> None:
    # torch is imported, so the device count is known before CUDA starts: the usual rules.
    fake = cuda(2)
    rngstate.seed_everything(5)
    start()
    state = rngstate.capture()
    saved = fake.states()
    fake = cuda(1)
    rngstate.seed_everything(5)
    with pytest.raises(MissingBackendError, match="states for 2 device.* sees 1"):
        rngstate.restore(state)
    with pytest.warns(RNGStateWarning, match="device i gets the state saved for device i"):
        rngstate.restore(state, strict=False)
    start()
    assert fake.states() == saved[:1]


@pytest.mark.slow
def test_restore_before_import_torch_with_another_device_count() -> None:
    code = """
    import random, struct, warnings
    import rngstate
    state = {"schema": 1, "derivation": 1, "root_seed": 5, "metadata": {}, "generators": {},
             "streams": {"python": None, "torch.cuda": [struct.pack("<Qq", 7, 8), struct.pack("<Qq", 9, 4)]},
             "substreams": {"gpu": {"torch.cuda": [struct.pack("<Qq", 11, 0), struct.pack("<Qq", 13, 0)]}}}
    rngstate.seed_everything(5)
    state["streams"]["python"] = rngstate.capture().to_dict()["streams"]["python"]
    state["streams"]["numpy"] = rngstate.capture().to_dict()["streams"]["numpy"]
    rngstate.restore(state, strict=False)        # torch not imported: CUDA's count is unknown
    import torch
    from tests.backends.fake_cuda import FakeCuda
    fake = FakeCuda(1).install(keep_queued=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with rngstate.rng_scope("other"):          # an unrelated scope: must not fail
            pass
        torch.cuda.init()
    print([str(w.message) for w in caught if issubclass(w.category, rngstate.errors.RNGStateWarning)])
    print(fake.states() == [struct.pack("<Qq", 7, 8)])
    with rngstate.rng_scope("gpu"):
        print(fake.draws())
    print(fake.draws())
    """
    lines = run_python(code).splitlines()
    assert "states for 2 device(s) but this process sees 1" in lines[0]
    assert "before torch was imported" in lines[0]
    assert lines[1:] == ["True", "[(11, 0)]", "[(7, 8)]"]


def test_no_deadlock_and_no_manual_seed_all_inside_lazy_init(
    cuda: Callable[..., FakeCuda], monkeypatch: pytest.MonkeyPatch
) -> None:
    cuda(2)
    rngstate.seed_everything(5)
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: pytest.fail("re-enters _lazy_call"))
    with rngstate.rng_scope("gpu"):
        start()
    assert "torch.cuda" in RUNTIME.active


def test_an_error_while_activating_never_stops_cuda(
    cuda: Callable[..., FakeCuda], monkeypatch: pytest.MonkeyPatch
) -> None:
    cuda(1)
    rngstate.seed_everything(5)
    stream = backends.stream("torch.cuda")

    def broken(seed: int) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(stream, "seed", broken)
    with pytest.warns(RNGStateWarning, match="could not be brought under management.*boom"):
        start()
    assert torch.cuda.is_initialized() and "torch.cuda" not in RUNTIME.active


def test_cuda_graph_capture_is_refused_clearly(cuda: Callable[..., FakeCuda]) -> None:
    fake = cuda(1)
    rngstate.seed_everything(5)
    start()
    generator = rngstate.track(torch.Generator(), "cpu_gen")  # CPU generators stay usable
    before_cuda, before_python = fake.states(), rngstate.capture()
    fake.capturing = True
    with pytest.raises(ScopeError, match="CUDA graph is being captured"), rngstate.rng_scope("gpu"):
        pass
    with pytest.raises(ScopeError, match="CUDA graph"):
        rngstate.capture()
    fake.capturing = False
    assert fake.states() == before_cuda and not RUNTIME.frames
    assert rngstate.capture() == before_python  # everything the failed calls touched went back
    fake.capturing = True
    with pytest.raises(ScopeError, match="CUDA graph"):
        rngstate.seed_everything(6)
    assert fake.states() == before_cuda
    generator.manual_seed(3)  # a tracked CPU generator is no CUDA business


def test_forked_child_of_a_cuda_parent_drops_cuda() -> None:
    code = """
    import os, rngstate, torch
    from tests.backends.fake_cuda import FakeCuda
    from rngstate.runtime import RUNTIME
    fake = FakeCuda(1).install()
    rngstate.seed_everything(5)
    torch.cuda.init()
    with rngstate.rng_scope("outer"):
        pid = os.fork()
        if pid == 0:
            try:
                ok = "torch.cuda" not in RUNTIME.active
                with rngstate.rng_scope("aug"):
                    torch.rand(2)
                state = rngstate.capture()
                ok = ok and "torch.cuda" not in state.streams and "outer/aug" in state.substreams
            except BaseException as exc:
                print("child failed:", exc, flush=True)
                os._exit(1)
            os._exit(0 if ok else 2)
        _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status), "torch.cuda" in RUNTIME.active)
    """
    assert run_python(code).split() == ["0", "True"]


def test_dataloader_workers_of_a_cuda_parent() -> None:
    code = """
    import rngstate, torch
    from tests.backends.fake_cuda import FakeCuda
    from rngstate.runtime import RUNTIME
    fake = FakeCuda(1).install()
    rngstate.seed_everything(5)
    torch.cuda.init()
    with rngstate.rng_scope("parent"):
        fake.draws()
    assert "torch.cuda" in RUNTIME.active  # what the workers inherit

    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return 4
        def __getitem__(self, i):
            with rngstate.rng_scope("aug"):
                return torch.rand(1)

    loader = torch.utils.data.DataLoader(Data(), batch_size=2, num_workers=2,
                                         worker_init_fn=rngstate.worker_init_fn,
                                         multiprocessing_context="fork")
    print(len([batch for batch in loader]))
    """
    assert run_python(code).split() == ["2"]


def test_no_eager_cuda_start(cuda: Callable[..., FakeCuda]) -> None:
    fake = cuda(2)
    rngstate.seed_everything(5)
    with rngstate.rng_scope("gpu"):
        torch.rand(2)
    state = rngstate.capture()
    rngstate.restore(state)
    assert not torch.cuda.is_initialized() and fake.started_in is None
    assert "torch.cuda" not in state.streams


def test_metadata_names_the_devices(cuda: Callable[..., FakeCuda]) -> None:
    cuda(2, "NVIDIA H200")
    rngstate.seed_everything(5)
    start()
    assert rngstate.capture().metadata["cuda_devices"] == ["NVIDIA H200", "NVIDIA H200"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RNGStateWarning)
        rngstate.restore(rngstate.capture())


@needs_cuda
def test_gpu_smoke_script_passes_on_a_real_device() -> None:
    # The same scenarios on a real device (scripts/gpu_smoke.py): `pytest -m gpu` runs them.
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_smoke.py")],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert result.returncode == 0 and "FAIL" not in result.stdout, result.stdout + result.stderr[-3000:]
