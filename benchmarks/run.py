"""Performance targets of rngstate, each measured as a ratio against a named peer in this run.

    python benchmarks/run.py               # prints a Markdown table (paste into the README)
    python benchmarks/run.py --only scope  # just the scope rows

Targets (issues 8 and 16): scope round trip <= 2x torch.random.fork_rng(devices=[]) and >= 5x faster
than a Lightning-style collect/set done twice; save+load+restore of 1,000 substreams <= 2x
pickle dump+load of the same raw states; 1,000 -> 10,000 substreams grows at most 12x; memory
per substream <= 1.10x the raw state bytes; `import rngstate` <= 1.25x `import numpy, msgpack`.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import pickle  # the named peer for the file benchmark; rngstate itself never pickles
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import timeit
from pathlib import Path
from typing import Any

import numpy as np
import torch

import rngstate
from rngstate.runtime import RUNTIME

ROWS: list[tuple[str, str, str, str, str]] = []


def best(function: Any, number: int, repeat: int = 7) -> float:
    """Best mean time per call in seconds over ``repeat`` runs of ``number`` calls."""
    return min(timeit.repeat(function, number=number, repeat=repeat)) / number


def row(name: str, ours: float, peer_name: str, peer: float, target: str, ok: bool) -> None:
    ROWS.append((name, f"{ours * 1e6:,.1f} us", f"{peer_name}: {peer * 1e6:,.1f} us",
                 f"{ours / peer:.2f}x", f"{target} {'met' if ok else 'MISSED'}"))


# -- scopes --------------------------------------------------------------------------------


def lightning_collect() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def lightning_set(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])


def naive_scope() -> None:
    outer = lightning_collect()  # enter: save outer, put the substream in
    lightning_set(outer)
    inner = lightning_collect()  # exit: save the substream, put outer back
    lightning_set(inner)


def bench_scope(rounds: int = 7) -> None:
    """Each round times the three round trips (best of 7 repeats each); the ratios of the
    rounds are reported as median (range), so one noisy moment does not decide the row."""
    rngstate.seed_everything(0)
    scope = rngstate.rng_scope("layer")
    with scope:
        pass

    def round_trip() -> None:
        with scope:
            pass

    def fork() -> None:
        with torch.random.fork_rng(devices=[]):
            pass

    ours, forks, naives = [], [], []
    for _ in range(rounds):
        ours.append(best(round_trip, 20000))
        forks.append(best(fork, 20000))
        naives.append(best(naive_scope, 500))
    vs_fork = [a / b for a, b in zip(ours, forks, strict=True)]
    vs_naive = [b / a for a, b in zip(ours, naives, strict=True)]
    median = statistics.median
    ROWS.append(("scope round trip (python, numpy, torch)", f"{median(ours) * 1e6:,.2f} us",
                 f"fork_rng(devices=[]): {median(forks) * 1e6:,.2f} us", spread(vs_fork),
                 f"<= 2x {'met' if median(vs_fork) <= 2 else 'MISSED'}"))
    ROWS.append(("scope round trip vs naive", f"{median(ours) * 1e6:,.2f} us",
                 f"Lightning collect/set x2: {median(naives) * 1e6:,.1f} us",
                 spread(vs_naive, "x faster"),
                 f">= 5x faster {'met' if median(vs_naive) >= 5 else 'MISSED'}"))
    # With another Python thread alive: the raw copies hold NumPy's lock and torch's mutex as
    # they always do (issue 25), so this row should match the one above.
    stop = threading.Event()
    waiter = threading.Thread(target=stop.wait)
    waiter.start()
    try:
        threaded = [best(round_trip, 20000) / best(fork, 20000) for _ in range(rounds)]
    finally:
        stop.set()
        waiter.join()
    ROWS.append(("scope round trip, another thread alive", "", "fork_rng(devices=[])",
                 spread(threaded), "none (the same locks as alone)"))


def spread(ratios: list[float], unit: str = "x") -> str:
    """Median and range of per-round ratios."""
    return f"{statistics.median(ratios):.2f}{unit} ({min(ratios):.2f}-{max(ratios):.2f})"


# -- files -----------------------------------------------------------------------------------


def make_substreams(count: int) -> None:
    rngstate.seed_everything(0)
    for i in range(count):
        with rngstate.rng_scope(f"model/layer{i}"):
            torch.rand(1)


def raw_states() -> dict[str, Any]:
    """What a pickle-based tool would store: the frameworks' own state objects per substream."""
    states: dict[str, Any] = {}
    for path in RUNTIME.substreams:
        with rngstate.rng_scope(path):
            states[path] = lightning_collect()
    return states


def bench_files(directory: Path) -> None:
    times = {}
    for count in (1000, 10000):
        make_substreams(count)
        path = directory / f"s{count}.rngstate"

        def ours(path: Path = path) -> None:
            rngstate.save(path)
            rngstate.restore(rngstate.load(path))

        times[count] = best(ours, 1, repeat=3 if count > 1000 else 5)
        if count == 1000:
            raw = raw_states()
            pickle_path = directory / "raw.pickle"

            def peer(raw: dict[str, Any] = raw, pickle_path: Path = pickle_path) -> None:
                with open(pickle_path, "wb") as handle:
                    pickle.dump(raw, handle, protocol=pickle.HIGHEST_PROTOCOL)
                with open(pickle_path, "rb") as handle:
                    pickle.load(handle)

            peer_time = best(peer, 1, repeat=5)
            row("save+load+restore, 1,000 substreams", times[1000], "pickle dump+load", peer_time,
                "<= 2x", times[1000] <= 2 * peer_time)
    growth = times[10000] / times[1000]
    ROWS.append(("growth 1,000 -> 10,000 substreams", f"{times[10000] * 1e3:,.0f} ms",
                 f"1,000: {times[1000] * 1e3:,.0f} ms", f"{growth:.1f}x",
                 f"<= 12x {'met' if growth <= 12 else 'MISSED'}"))


def resident_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def bench_memory() -> None:
    rngstate.seed_everything(0)
    count = 20000
    gc.collect()
    before = resident_bytes()
    for i in range(count):
        with rngstate.rng_scope(f"m{i}"):
            pass
    gc.collect()
    per_substream = (resident_bytes() - before) / count
    raw = len(random.getstate()[1]) * 4 + 624 * 4 + 4 + 16 + torch.get_rng_state().numel()
    ratio = per_substream / raw
    ROWS.append(("memory per substream", f"{per_substream:,.0f} B", f"raw state bytes: {raw:,} B",
                 f"{ratio:.2f}x", f"<= 1.10x {'met' if ratio <= 1.10 else 'MISSED'}"))


# -- import ----------------------------------------------------------------------------------


def import_time(statement: str) -> float:
    """Seconds one fresh interpreter takes to run ``statement``."""
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout)


def bench_import(runs: int = 15) -> None:
    # Alternated, so that load from other processes hits both alike; medians compared.
    ours, peer = [], []
    for _ in range(runs):
        ours.append(import_time("import rngstate"))
        peer.append(import_time("import numpy, msgpack"))
    ours_median, peer_median = statistics.median(ours), statistics.median(peer)
    row("import rngstate", ours_median, "import numpy, msgpack", peer_median, "<= 1.25x",
        ours_median <= 1.25 * peer_median)


def main() -> None:
    parser = argparse.ArgumentParser(description="rngstate's performance targets as ratios")
    parser.add_argument("--only", choices=("memory", "scope", "files", "import"), action="append",
                        help="run only these rows (repeatable); default: all")
    only = set(parser.parse_args().only or ("memory", "scope", "files", "import"))
    if "memory" in only:
        bench_memory()  # first: later benchmarks leave freed memory that would hide growth
    if "scope" in only:
        bench_scope()
    if "files" in only:
        with tempfile.TemporaryDirectory() as directory:
            bench_files(Path(directory))
    if "import" in only:
        bench_import()
    print(f"rngstate {rngstate.__version__}, Python {platform.python_version()}, numpy {np.__version__}, "
          f"torch {torch.__version__}, {platform.machine()} with {os.cpu_count()} CPUs, "
          f"{datetime.date.today()}\n")
    print("| measurement | rngstate | peer | ratio | target |")
    print("|---|---|---|---|---|")
    for cells in ROWS:
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
