"""The long fuzz run (issue 5): 100,000+ mutated and made-up state files and dicts.

Runs the mutators and property checks of ``tests/test_fuzz.py`` (see its docstring for the
properties) from a seeded generator, so case ``i`` of seed ``s`` can always be replayed::

    nice -n 19 .venv/bin/python scripts/fuzz_long.py --cases 120000 --report fuzz.json
    .venv/bin/python scripts/fuzz_long.py --seed 1 --only 4711          # replay one case
    .venv/bin/python scripts/fuzz_long.py --cases 20000 --frameworks    # also apply to Paddle

``--frameworks`` imports the installed frameworks that have a backend (Paddle, TensorFlow)
first, so accepted states are also handed to their C++ code.  A case running longer than
``--case-timeout`` seconds counts as a hang; one stuck inside C code (which no signal handler
interrupts) ends the run with a traceback from ``faulthandler``, and the case number is in
``--status``.  Exit status 1 when any case failed.
"""

from __future__ import annotations

import argparse
import collections
import faulthandler
import importlib.util
import json
import os
import platform
import random
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KINDS = (  # (name, share of the cases)
    ("mutated file", 0.30),
    ("random bytes", 0.05),
    ("mutated dict", 0.30),
    ("mutated dict in a file", 0.15),
    ("hostile structure", 0.10),  # valid checksum, hostile msgpack structure (issue 12)
    ("type swap", 0.10),  # one field of a real state holds a value of another type
)


class HangError(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise HangError()


def run_case(fuzz: Any, seed: int, index: int, folder: Path) -> tuple[str, str]:
    """Run case ``index``; return (kind, outcome); raises fuzz.FuzzError on a failure."""
    rng = random.Random(f"{seed}:{index}")
    point, kind = rng.random(), KINDS[-1][0]
    for name, share in KINDS:
        if point < share:
            kind = name
            break
        point -= share
    strict = rng.random() < 0.5
    if kind == "mutated file":
        blob = fuzz.mutate_file(rng, rng.choice(fuzz.base_files()))
        return kind, fuzz.guarded(fuzz.check_file, blob, folder / "case", strict)
    if kind == "random bytes":
        return kind, fuzz.guarded(fuzz.check_file, fuzz.random_file(rng), folder / "case", strict)
    if kind == "hostile structure":
        blob = fuzz.container(fuzz.hostile_payload(rng))
        return kind, fuzz.guarded(fuzz.check_file, blob, folder / "case", strict)
    if kind == "type swap":
        base = rng.choice(fuzz.base_states())
        path, name = rng.choice(fuzz.type_swaps(base))
        blob = fuzz.fileformat.pack(fuzz.swapped(base, path, name))
        return kind, fuzz.guarded(fuzz.check_file, blob, folder / "case", strict)
    mutated = fuzz.mutate_dict(rng, rng.choice(fuzz.base_states()))
    if kind == "mutated dict":
        return kind, fuzz.guarded(fuzz.check_dict, mutated, strict)
    try:
        blob = fuzz.fileformat.pack(mutated)
    except fuzz.rngstate.StateFileError:
        return kind, "not plain data"
    return kind, fuzz.guarded(fuzz.check_file, blob, folder / "case", strict)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", type=int, help="replay this one case")
    parser.add_argument("--frameworks", action="store_true", help="import Paddle/TensorFlow first")
    parser.add_argument("--case-timeout", type=int, default=20)
    parser.add_argument("--report", type=Path, help="write the summary as JSON here")
    parser.add_argument("--status", type=Path, default=Path(tempfile.gettempdir()) / "rngstate-fuzz-case",
                        help="holds the number of the case running (to find a hang)")
    args = parser.parse_args()

    imported = []
    if args.frameworks:
        from rngstate import backends

        # Paddle first: importing it after TensorFlow segfaults (paddle 3.3.1, tensorflow 2.21).
        frameworks = {backends.framework_of(name) for name in backends.stream_names()}
        for framework in sorted(frameworks, key=lambda name: (name != "paddle", name)):
            if framework not in ("random", "numpy", "torch") and importlib.util.find_spec(framework):
                __import__(framework)
                imported.append(framework)

    import rngstate
    from tests import test_fuzz as fuzz

    rngstate.seed_everything(31)
    fuzz.base_states()  # builds the bases (and tracks two generators) once
    rngstate.seed_everything(31)
    signal.signal(signal.SIGALRM, _alarm)
    outcomes: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    failures: list[dict[str, Any]] = []
    slowest = (0.0, -1)
    cases = [args.only] if args.only is not None else range(args.cases)
    started = time.perf_counter()
    status = os.open(args.status, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with tempfile.TemporaryDirectory(prefix="rngstate-fuzz-") as folder:
        for done, index in enumerate(cases, 1):
            begun = time.perf_counter()
            os.pwrite(status, f"{index:<12d}".encode(), 0)
            signal.alarm(args.case_timeout)  # a hang in Python code
            faulthandler.dump_traceback_later(2 * args.case_timeout, exit=True)  # one in C code
            try:
                kind, outcome = run_case(fuzz, args.seed, index, Path(folder))
            except HangError:
                kind, outcome = "?", "failure"
                failures.append({"case": index, "error": f"hang: over {args.case_timeout} s"})
            except fuzz.FuzzError as exc:
                kind, outcome = "?", "failure"
                failures.append({"case": index, "error": str(exc)[:500]})
                if args.only is not None:  # replaying: show where it happened
                    traceback.print_exception(exc.__cause__ or exc, file=sys.stderr)
            finally:
                signal.alarm(0)
                faulthandler.cancel_dump_traceback_later()
            outcomes[kind][outcome] += 1
            slowest = max(slowest, (time.perf_counter() - begun, index))
            if done % 10_000 == 0:
                print(f"{done} cases, {len(failures)} failures, {time.perf_counter() - started:.0f} s",
                      file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - started
    os.close(status)
    import numpy
    import torch

    summary = {
        "cases": len(cases),
        "failures": len(failures),
        "seed": args.seed,
        "seconds": round(elapsed, 1),
        "slowest_case": {"case": slowest[1], "seconds": round(slowest[0], 3)},
        "outcomes": {kind: dict(counter) for kind, counter in sorted(outcomes.items())},
        "frameworks_applied": ["random", "numpy", "torch", *imported],
        "versions": {"python": platform.python_version(), "numpy": numpy.__version__,
                     "torch": torch.__version__, "rngstate": rngstate.__version__},
        "first_failures": failures[:20],
    }
    text = json.dumps(summary, indent=1)
    print(text)
    if args.report:
        args.report.write_text(text + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
