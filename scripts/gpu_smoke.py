"""GPU smoke test for rngstate: what only a machine with a GPU can show.

    python scripts/gpu_smoke.py            # every check, each in a fresh process
    python scripts/gpu_smoke.py seeding    # only the checks whose name contains "seeding"

Prints PASS, FAIL or SKIP per check (SKIP: the check needs a CUDA device, two of them, or a
Paddle GPU build, and this machine has none) and exits 1 if anything failed.  On CPU it still
runs the checks that need no device.  Takes well under 5 minutes on a GPU machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120  # seconds per subprocess


class CheckFailedError(Exception):
    """A check's process failed or printed something unexpected."""


def python(code: str, env: dict[str, str] | None = None) -> str:
    """Run ``code`` in a fresh interpreter (this checkout first on the path); its stdout."""
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    full_env.pop("RNGSTATE_SEED", None)
    full_env.update(env or {})
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, env=full_env, timeout=TIMEOUT, cwd=ROOT,
    )
    if result.returncode != 0:
        raise CheckFailedError(f"exit {result.returncode}:\n{result.stderr.strip()[-2000:]}")
    return result.stdout.strip()


def expect(got: object, wanted: object, what: str) -> None:
    if got != wanted:
        raise CheckFailedError(f"{what}: got {got!r}, wanted {wanted!r}")


# -- what this machine has ---------------------------------------------------------------------


def probe() -> dict[str, int]:
    out = python("""
    import importlib.util
    cuda = paddle_gpu = 0
    if importlib.util.find_spec("torch"):
        import torch
        cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if importlib.util.find_spec("paddle"):
        import paddle
        if paddle.is_compiled_with_cuda():
            paddle_gpu = paddle.device.cuda.device_count()
    print(cuda, paddle_gpu)
    """)
    cuda, paddle_gpu = map(int, out.split()[-2:])
    return {"cuda": cuda, "paddle_gpu": paddle_gpu}


# -- the checks --------------------------------------------------------------------------------


def no_eager_cuda_start() -> None:
    out = python("""
    import rngstate, torch
    rngstate.seed_everything(5)
    with rngstate.rng_scope("a"):
        torch.rand(2)
    state = rngstate.capture()
    rngstate.restore(state)
    rngstate.fingerprint()
    rngstate.deterministic(True)
    print(torch.cuda.is_initialized(), "torch.cuda" in state.streams)
    """)
    expect(out, "False False", "CUDA initialized by rngstate / captured before it started")


def state_layout() -> None:
    out = python("""
    import torch
    from rngstate.backends.torch_backend import check_cuda_state
    torch.cuda.init()
    states = [g.get_state() for g in torch.cuda.default_generators]
    for i, state in enumerate(states):
        check_cuda_state(bytes(state.numpy().tobytes()), f"device {i}")
    torch.rand(3, device="cuda")
    offset = torch.cuda.default_generators[0].get_state().numpy()[8:].tobytes()
    print({s.numel() for s in states} == {16}, offset != bytes(8))
    """)
    expect(out, "True True", "16-byte (seed, offset) states whose offset advances with draws")


SESSION = """
import rngstate, torch
WHEN = {when!r}
if WHEN == "before": torch.cuda.init()
rngstate.seed_everything(5)
if WHEN == "after": torch.cuda.init()
with rngstate.rng_scope("gpu"):
    if WHEN == "inside": torch.cuda.init()
    inside = torch.rand(4, device="cuda").tolist()
outside = torch.rand(4, device="cuda").tolist()
torch.cuda.manual_seed_all(5)
print(inside, outside, torch.rand(4, device="cuda").tolist())
"""


def seeding() -> None:
    runs = {when: python(SESSION.format(when=when)) for when in ("before", "after", "inside")}
    expect(len(set(runs.values())), 1, f"CUDA draws depend on when CUDA started: {runs}")
    _inside, outside, reseeded = runs["before"].split("] [")
    expect(outside.strip("[]"), reseeded.strip("[]"), "root CUDA stream is manual_seed_all(5)")


def scope_swap() -> None:
    out = python("""
    import rngstate, torch
    rngstate.seed_everything(5)
    torch.cuda.init()
    before = torch.rand(3, device="cuda")
    rngstate.seed_everything(5)
    with rngstate.rng_scope("gpu"):
        first = torch.rand(3, device="cuda")
    after = torch.rand(3, device="cuda")
    with rngstate.rng_scope("gpu"):
        second = torch.rand(3, device="cuda")
    print(torch.equal(before, after), torch.equal(first, before), torch.equal(first, second))
    """)
    expect(out, "True False False", "outer stream untouched, substream distinct and continuing")


CAPTURE = """
import rngstate, torch
rngstate.seed_everything(5)
torch.cuda.init()
with rngstate.rng_scope("gpu"):
    torch.rand(5, device="cuda")
torch.rand(7, device="cuda")
rngstate.save({path!r})
with rngstate.rng_scope("gpu"):
    inside = torch.rand(3, device="cuda").tolist()
print(torch.rand(3, device="cuda").tolist(), inside)
"""

RESUME = """
import rngstate
state = rngstate.load({path!r})
ORDER = {order!r}
if ORDER == "before import torch": rngstate.restore(state)
import torch
if ORDER == "before CUDA starts": rngstate.restore(state)
torch.cuda.init()
if ORDER == "after CUDA starts": rngstate.restore(state)
outside = torch.rand(3, device="cuda").tolist()
with rngstate.rng_scope("gpu"):
    inside = torch.rand(3, device="cuda").tolist()
print(outside, inside)
"""


def capture_restore_across_processes() -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "cuda.rngstate")
        expected = python(CAPTURE.format(path=path))
        for order in ("before import torch", "before CUDA starts", "after CUDA starts"):
            expect(python(RESUME.format(path=path, order=order)), expected, f"restore {order}")
        # Draws made before CUDA starts (torch.manual_seed queued by the user) never win
        # over the restored state.
        user_seed = RESUME.replace("import torch\n", "import torch\ntorch.manual_seed(0)\n", 1)
        expect(python(user_seed.format(path=path, order="before CUDA starts")), expected,
               "restore after a user's torch.manual_seed")


def dataloader_workers_with_a_cuda_parent() -> None:
    out = python("""
    import rngstate, torch
    rngstate.seed_everything(5)
    torch.rand(1, device="cuda")

    class Data(torch.utils.data.Dataset):
        def __len__(self): return 8
        def __getitem__(self, i):
            with rngstate.rng_scope("aug"):
                return torch.rand(1)

    loader = torch.utils.data.DataLoader(Data(), batch_size=2, num_workers=2,
        worker_init_fn=rngstate.worker_init_fn, multiprocessing_context="fork")
    print(sum(len(b) for b in loader), torch.rand(1, device="cuda").shape[0])
    """)
    expect(out, "8 1", "forked workers of a CUDA parent")


def deterministic_matmul() -> None:
    late = python("""
    import warnings, rngstate, torch
    torch.rand(1, device="cuda")                       # CUDA started before deterministic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = rngstate.deterministic(True)
        a = torch.rand(64, 64, device="cuda")
        (a @ a).sum().item()                           # must not raise
    print(report.applied["torch.use_deterministic_algorithms"],
          any("warn_only" in str(w.message) for w in caught))
    """, env={"CUBLAS_WORKSPACE_CONFIG": ""})
    expect(late, "warn_only True", "deterministic() after CUDA started")
    early = python("""
    import rngstate, torch
    report = rngstate.deterministic(True)              # before CUDA starts: fully strict
    a = torch.rand(64, 64, device="cuda")
    first = (a @ a).sum().item()
    print(report.applied["torch.use_deterministic_algorithms"], first == (a @ a).sum().item())
    """)
    expect(early, "on True", "deterministic() before CUDA started")


def scope_inside_cuda_graph_capture() -> None:
    out = python("""
    import rngstate, torch
    from rngstate.errors import ScopeError
    rngstate.seed_everything(5)
    x = torch.zeros(4, device="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        x.add_(1)                                       # warm-up outside the capture
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    outcome = "no error"
    try:
        with torch.cuda.graph(graph):
            with rngstate.rng_scope("in-graph"):
                x.add_(torch.rand(4, device="cuda"))
    except ScopeError as exc:
        outcome = "ScopeError"
    except Exception as exc:
        outcome = f"raw {type(exc).__name__}: {exc}"
    try:
        capture = rngstate.capture() is not None
    except Exception as exc:
        capture = f"{type(exc).__name__}: {exc}"
    print(outcome, capture)
    """)
    expect(out, "ScopeError True", "rng_scope inside CUDA graph capture, then capture() after it")


def multi_gpu_mapping() -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "multi.rngstate")
        expected = python(f"""
        import rngstate, torch
        rngstate.seed_everything(5)
        torch.cuda.init()
        for i in range(torch.cuda.device_count()):
            torch.rand(3, device=f"cuda:{{i}}")
        rngstate.save({path!r})
        print(torch.rand(3, device="cuda:0").tolist())
        """)
        out = python(f"""
        import warnings, rngstate, torch
        from rngstate.errors import MissingBackendError
        state = rngstate.load({path!r})
        torch.cuda.init()
        try:
            rngstate.restore(state)
            strict = "restored"
        except MissingBackendError:
            strict = "MissingBackendError"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rngstate.restore(state, strict=False)
        print(strict, len(caught) > 0)
        print(torch.rand(3, device="cuda:0").tolist())
        """, env={"CUDA_VISIBLE_DEVICES": "0"})
        expect(out.splitlines()[0], "MissingBackendError True", "strict refuses, strict=False warns")
        expect(out.splitlines()[1], expected, "device 0 takes the state saved for device 0")


def paddle_gpu() -> None:
    code = """
    import rngstate, paddle
    paddle.set_device("gpu")
    rngstate.seed_everything(5)
    with rngstate.rng_scope("gpu"):
        paddle.rand([3])
    paddle.rand([3])
    state = rngstate.capture()
    expected = paddle.rand([3]).numpy().tolist()
    rngstate.restore(state)
    print(paddle.rand([3]).numpy().tolist() == expected, "paddle.gpu" in state.streams)
    """
    expect(python(code), "True True", "Paddle GPU capture/restore")


# name, function, what it needs (None: nothing; "cuda": a CUDA device; "cuda2": two)
CHECKS: list[tuple[str, Callable[[], None], str | None]] = [
    ("no eager CUDA start", no_eager_cuda_start, None),
    ("CUDA state layout", state_layout, "cuda"),
    ("seeding (CUDA started before/after seeding/inside a scope)", seeding, "cuda"),
    ("scope swap", scope_swap, "cuda"),
    ("capture/restore across processes, every order", capture_restore_across_processes, "cuda"),
    ("DataLoader workers with a CUDA parent", dataloader_workers_with_a_cuda_parent, "cuda"),
    ("deterministic() with a matmul", deterministic_matmul, "cuda"),
    ("rng_scope inside CUDA graph capture", scope_inside_cuda_graph_capture, "cuda"),
    ("multi-GPU mapping", multi_gpu_mapping, "cuda2"),
    ("Paddle GPU", paddle_gpu, "paddle_gpu"),
]


def main(argv: list[str]) -> int:
    started = time.monotonic()
    have = probe()
    print(f"devices: {have['cuda']} CUDA (torch), {have['paddle_gpu']} GPU (paddle)")
    cuda, paddle_gpu = have["cuda"], have["paddle_gpu"]
    needs = {None: True, "cuda": cuda >= 1, "cuda2": cuda >= 2, "paddle_gpu": paddle_gpu >= 1}
    reasons = {"cuda": "no CUDA device", "cuda2": "fewer than 2 CUDA devices", "paddle_gpu": "no Paddle GPU"}
    failed = 0
    for name, check, need in CHECKS:
        if argv and not any(word in name for word in argv):
            continue
        if not needs[need]:
            print(f"SKIP  {name}: {reasons[need or '']}", flush=True)
            continue
        begin = time.monotonic()
        try:
            check()
        except (CheckFailedError, subprocess.TimeoutExpired) as exc:
            failed += 1
            print(f"FAIL  {name} ({time.monotonic() - begin:.1f}s): {exc}", flush=True)
        else:
            print(f"PASS  {name} ({time.monotonic() - begin:.1f}s)", flush=True)
    print(f"{'FAILED' if failed else 'ok'}: {failed} failed, {time.monotonic() - started:.0f}s in all")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
