"""Run PyTorch's own DataLoader tests with torch's class and with rngstate.torch.DataLoader.

    python scripts/torch_dataloader_suite.py /path/to/test_dataloader.py [--only rngstate|torch]

The upstream file is not part of this repository: take ``test/test_dataloader.py`` of the
installed torch version from the PyTorch sources (its CPU classes: TestDataLoader and its
persistent-workers twin, worker queue, affinity, conv-after-fork, custom pin, dict / namedtuple /
string, out-of-order, random split, and the datapipe integration where the file still has it).
It imports ``torch.testing._internal``, which ships in the torch wheel and needs ``expecttest``
(``pip install expecttest``, or put it on ``PYTHONPATH``).

For each loader, a copy of the file is written to a temporary folder with a header that, in
every process that imports it (spawned workers and helper processes too), replaces
``torch.utils.data.DataLoader`` by the loader under test before the tests import it.  The header
also seeds rngstate (its loader needs a root seed) and adds names that newer test files import
from ``torch.testing._internal`` but older torch wheels lack.  Prints the pass/fail counts of
both runs and the tests that fail only with rngstate's class.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

HEADER = '''\
# --- added by scripts/torch_dataloader_suite.py ---
import enum as _enum
import torch.testing._internal.common_utils as _common_utils
if not hasattr(_common_utils, "HardwareClassification"):
    class HardwareClassification(_enum.Enum):  # newer test files tag their classes with it
        GENERIC = "generic"
        ACCELERATOR = "accelerator"
        CUDA = "cuda"
    _common_utils.HardwareClassification = HardwareClassification
if {swap!r}:
    import torch.utils.data as _torch_data
    import torch.utils.data.dataloader as _torch_dataloader
    import rngstate as _rngstate
    import rngstate.torch as _rngstate_torch
    _rngstate.seed_everything(0)
    _torch_data.DataLoader = _rngstate_torch.DataLoader
    _torch_dataloader.DataLoader = _rngstate_torch.DataLoader
# --- end of header ---
'''


def run(upstream: Path, swap: bool, timeout: float) -> dict[str, str]:
    """Outcome per test id ("passed", "failed", "skipped") of one run of the suite."""
    with tempfile.TemporaryDirectory() as folder:
        test_file = Path(folder) / upstream.name
        test_file.write_text(HEADER.format(swap=swap) + upstream.read_text())
        report = Path(folder) / "report.xml"
        path = os.pathsep.join([folder, str(ROOT), os.environ.get("PYTHONPATH", "")])
        env = {**os.environ, "PYTHONPATH": path}
        command = [
            sys.executable, "-m", "pytest", str(test_file), "-q", "-p", "no:cacheprovider",
            "-p", "no:randomly", f"--junitxml={report}", "-o", "addopts=", "--rootdir", folder,
        ]
        try:
            subprocess.run(command, cwd=folder, env=env, timeout=timeout, capture_output=True, text=True)
        except subprocess.TimeoutExpired:
            print(f"  the run timed out after {timeout:.0f} s", file=sys.stderr)
        if not report.exists():
            raise SystemExit("pytest wrote no report; run the command by hand to see why")
        outcomes: dict[str, str] = {}
        for case in ET.parse(report).getroot().iter("testcase"):
            name = f"{case.get('classname', '').split('.')[-1]}.{case.get('name')}"
            kinds = {child.tag for child in case}
            outcomes[name] = (
                "failed" if kinds & {"failure", "error"} else "skipped" if "skipped" in kinds else "passed"
            )
        return outcomes


def summary(label: str, outcomes: dict[str, str]) -> str:
    kinds = ("passed", "failed", "skipped")
    counts = {kind: sum(1 for o in outcomes.values() if o == kind) for kind in kinds}
    ran = counts["passed"] + counts["failed"]
    return f"{label}: {counts['passed']}/{ran} passed, {counts['failed']} failed, {counts['skipped']} skipped"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("upstream", type=Path, help="PyTorch's test/test_dataloader.py")
    parser.add_argument("--only", choices=["torch", "rngstate"], help="run one loader only")
    parser.add_argument("-k", dest="keyword", help="select tests (pytest -k), for a quick look")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per run")
    args = parser.parse_args()
    if args.keyword:  # reaches the pytest runs through their environment
        os.environ["PYTEST_ADDOPTS"] = f"-k {args.keyword}"
    results: dict[str, dict[str, str]] = {}
    for label, swap in (("torch.utils.data.DataLoader", False), ("rngstate.torch.DataLoader", True)):
        if args.only and args.only not in label:
            continue
        print(f"running the suite with {label} ...", flush=True)
        results[label] = run(args.upstream, swap, args.timeout)
        print("  " + summary(label, results[label]), flush=True)
    if len(results) == 2:
        theirs, ours = results.values()
        only_ours = sorted(n for n, o in ours.items() if o == "failed" and theirs.get(n) == "passed")
        print(f"\nfailing only with rngstate's class ({len(only_ours)}):")
        for name in only_ours:
            print(f"  {name}")
    elif results:
        (outcomes,) = results.values()
        failed = sorted(n for n, o in outcomes.items() if o == "failed")
        print(f"\nfailed ({len(failed)}):")
        for name in failed:
            print(f"  {name}")


if __name__ == "__main__":
    main()
