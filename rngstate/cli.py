"""The ``rngstate`` command line (also ``python -m rngstate``).

::

    rngstate inspect FILE [--json]        what a state file holds
    rngstate diff A B [--json]            which streams differ; exit 1 when they do
    rngstate compare A B [--rank N] [--json]   where two step traces part; exit 1 when they do
    rngstate run [--seed N] [--deterministic] -- CMD ...

Exit codes: 0 success (``diff``, ``compare``: identical), 1 they found differences, 2 bad input (missing
or corrupt file, unknown command, bad option), ``run``: the command's own exit code (127 when
the command cannot be found, 126 when it cannot be executed, 128+N when killed by signal N).
Bad input prints one line to stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import subprocess
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from rngstate import __version__, _check, fileformat
from rngstate._text import clean as _clean
from rngstate._text import emit as _emit
from rngstate.derive import MAX_SEED
from rngstate.determinism import ENVIRONMENT
from rngstate.diagnostics import fingerprint, plain_fingerprint
from rngstate.errors import CommandLineError, RNGStateError
from rngstate.seeding import SEED_VARIABLE
from rngstate.state import RNGState
from rngstate.storage import load

logger = logging.getLogger(__name__)

PROG = "rngstate"
EXIT_DIFFERENT = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (argparse prints the whole usage block)."""

    def error(self, message: str) -> NoReturn:
        raise CommandLineError(f"{message} (see `{self.prog} --help`)")


# -- inspect -------------------------------------------------------------------------------------


def _format_version(path: str) -> int:
    """The container version from the header (load() has already validated the file)."""
    with open(path, "rb") as handle:
        header = handle.read(len(fileformat.MAGIC) + 2)
    return int.from_bytes(header[len(fileformat.MAGIC) :], "big")


def _size(plain: Any) -> int:
    """Bytes the value takes in the file's payload."""
    return len(fileformat.pack(plain)) - fileformat.HEADER_SIZE


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, bytes):
        return value.hex()
    return value


def describe(path: str) -> dict[str, Any]:
    """Everything ``inspect`` shows, as JSON-ready data.

    >>> import rngstate, tempfile, os
    >>> _ = rngstate.seed_everything(1)
    >>> path = os.path.join(tempfile.mkdtemp(), "a.rngstate"); _ = rngstate.save(path)
    >>> describe(path)["root_seed"]
    1
    """
    state = load(path)
    data = state.to_dict()

    def entry(plain: Any) -> dict[str, Any]:
        return {"size": _size(plain), "fingerprint": plain_fingerprint(plain)}

    return {
        "file": path,
        "file_size": os.path.getsize(path),
        "format_version": _format_version(path),
        "schema": data["schema"],
        "derivation": data["derivation"],
        "root_seed": data.get("root_seed"),
        "fingerprint": fingerprint(state),
        "metadata": _jsonable(data["metadata"]),
        "streams": {name: entry(data["streams"][name]) for name in sorted(data["streams"])},
        "substreams": {
            path_: {name: entry(states[name]) for name in sorted(states)}
            for path_, states in sorted(data["substreams"].items())
        },
        "generators": {
            key: {"kind": item["kind"], **entry(item["state"])}
            for key, item in sorted(data["generators"].items())
        },
    }


def _table(rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        indent + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _tree(substreams: dict[str, dict[str, Any]]) -> list[tuple[str, ...]]:
    """Rows for the substream tree; parents that were never entered themselves show '-'."""
    nodes: set[str] = set()
    for path in substreams:
        parts = path.split("/")
        nodes.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    rows: list[tuple[str, ...]] = []
    for node in sorted(nodes, key=lambda p: p.split("/")):
        depth = node.count("/")
        label = "  " * depth + _clean(node.rsplit("/", 1)[-1])
        states = substreams.get(node)
        if states is None:
            rows.append((label, "-", "(not entered itself)"))
            continue
        size = sum(entry["size"] for entry in states.values())
        streams = ", ".join(f"{_clean(name)} {entry['fingerprint'][:8]}" for name, entry in states.items())
        rows.append((label, f"{size:,} B", streams))
    return rows


def _inspect_text(info: dict[str, Any]) -> str:
    meta = dict(info["metadata"])
    determinism = meta.pop("determinism", None)
    devices = meta.pop("cuda_devices", None)
    lines = _table(
        [
            ("file", f"{_clean(info['file'], 4096)} ({info['file_size']:,} bytes)"),
            ("format version", str(info["format_version"])),
            ("schema", f"{info['schema']} (derivation {info['derivation']})"),
            ("root seed", "none (never seeded)" if info["root_seed"] is None else str(info["root_seed"])),
            ("fingerprint", info["fingerprint"]),
            ("versions", ", ".join(f"{_clean(k)} {_clean(v)}" for k, v in sorted(meta.items())) or "-"),
            ("cuda devices", _devices(devices)),
        ],
        indent="",
    )
    if isinstance(determinism, dict) and determinism:
        lines += ["", "determinism switches at capture"]
        lines += _table([(_clean(key), _clean(value)) for key, value in sorted(determinism.items())])
    else:
        lines += ["", "determinism switches at capture: none recorded (no framework with switches in use)"]
    streams = info["streams"]
    lines += ["", f"streams ({len(streams)})"]
    if streams:
        rows = [("name", "size", "fingerprint")]
        rows += [(_clean(name), f"{e['size']:,} B", e["fingerprint"]) for name, e in streams.items()]
        lines += _table(rows)
    substreams = info["substreams"]
    lines += ["", f"substreams ({len(substreams)})"]
    if substreams:
        lines += _table([("path", "size", "streams (fingerprint)"), *_tree(substreams)])
    generators = info["generators"]
    lines += ["", f"tracked generators ({len(generators)})"]
    if generators:
        table: list[tuple[str, ...]] = [("key", "kind", "size", "fingerprint")]
        table += [
            (_clean(key), _clean(e["kind"]), f"{e['size']:,} B", e["fingerprint"])
            for key, e in generators.items()
        ]
        lines += _table(table)
    return "\n".join(lines)


def _devices(devices: Any) -> str:
    if not devices:
        return "none"
    return ", ".join(map(_clean, devices)) if isinstance(devices, list) else _clean(devices)


def _cmd_inspect(args: argparse.Namespace) -> int:
    info = describe(args.file)
    _emit(json.dumps(info, indent=2) if args.json else _inspect_text(info))
    return 0


# -- diff ----------------------------------------------------------------------------------------


def compare(a: RNGState, b: RNGState) -> dict[str, Any]:
    """What differs between two states (metadata is reported but never makes them differ).

    >>> import rngstate
    >>> _ = rngstate.seed_everything(1)
    >>> compare(rngstate.capture(), rngstate.capture())["identical"]
    True
    """
    da, db = a.to_dict(), b.to_dict()

    def streams(sa: dict[str, Any], sb: dict[str, Any]) -> dict[str, str]:
        out: dict[str, str] = {}
        for name in sorted(set(sa) | set(sb)):
            if name not in sb:
                out[name] = "only in A"
            elif name not in sa:
                out[name] = "only in B"
            elif sa[name] != sb[name]:
                out[name] = "differs"
        return out

    substreams: dict[str, dict[str, str]] = {}
    for path in sorted(set(da["substreams"]) | set(db["substreams"])):
        if path not in db["substreams"]:
            substreams[path] = {"*": "only in A"}
        elif path not in da["substreams"]:
            substreams[path] = {"*": "only in B"}
        else:
            changed = streams(da["substreams"][path], db["substreams"][path])
            if changed:
                substreams[path] = changed
    generators = streams(da["generators"], db["generators"])
    metadata = {
        key: [_jsonable(da["metadata"].get(key)), _jsonable(db["metadata"].get(key))]
        for key in sorted(set(da["metadata"]) | set(db["metadata"]))
        if da["metadata"].get(key) != db["metadata"].get(key)
    }
    root = None if a.root_seed == b.root_seed else [a.root_seed, b.root_seed]
    return {
        "identical": a == b,
        "root_seed": root,
        "streams": streams(da["streams"], db["streams"]),
        "substreams": substreams,
        "generators": generators,
        "metadata": metadata,
        "fingerprints": [fingerprint(a), fingerprint(b)],
    }


def _diff_text(result: dict[str, Any], name_a: str, name_b: str) -> str:
    def side(text: str) -> str:
        return text.replace("only in A", f"only in {name_a}").replace("only in B", f"only in {name_b}")

    lines: list[str] = []
    if result["root_seed"] is not None:
        lines.append(f"root seed: {result['root_seed'][0]} != {result['root_seed'][1]}")
    if result["streams"]:
        lines.append("streams:")
        lines += _table([(_clean(name), side(what)) for name, what in result["streams"].items()])
    if result["substreams"]:
        lines.append("substreams:")
        rows = []
        for path, changed in result["substreams"].items():
            what = changed.get("*") or ", ".join(f"{_clean(name)} {how}" for name, how in changed.items())
            rows.append((_clean(path), side(what)))
        lines += _table(rows)
    if result["generators"]:
        lines.append("tracked generators:")
        lines += _table([(_clean(key), side(what)) for key, what in result["generators"].items()])
    if result["metadata"]:
        lines.append("metadata (does not count as a difference):")
        changes = result["metadata"].items()
        lines += _table([(_clean(k), f"{_clean(va)} -> {_clean(vb)}") for k, (va, vb) in changes])
    fa, fb = result["fingerprints"]
    if result["identical"]:
        lines.insert(0, f"identical (fingerprint {fa})")
    else:
        counts = [
            _count(len(result["streams"]), "stream"),
            _count(len(result["substreams"]), "substream"),
            _count(len(result["generators"]), "tracked generator"),
        ]
        root = ", root seed" if result["root_seed"] is not None else ""
        lines.append(f"different: {', '.join(counts)}{root} (fingerprints {fa} vs {fb})")
    return "\n".join(lines)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _cmd_diff(args: argparse.Namespace) -> int:
    a, b = load(args.a), load(args.b)
    result = compare(a, b)
    _emit(json.dumps(result, indent=2) if args.json else _diff_text(result, _clean(args.a), _clean(args.b)))
    return 0 if result["identical"] else EXIT_DIFFERENT


# -- compare -------------------------------------------------------------------------------------


def _cmd_compare(args: argparse.Namespace) -> int:
    from rngstate.tracing import compare as compare_traces
    from rngstate.tracing import rank_path

    a, b = args.a, args.b
    if args.rank is not None:  # run.trace -> run.rank1.trace
        a, b = (str(rank_path(path, args.rank, 2)) for path in (a, b))
    result = compare_traces(a, b)
    _emit(json.dumps(_jsonable(result.to_dict()), indent=2) if args.json else str(result))
    return 0 if result.identical else EXIT_DIFFERENT


def _parse_rank(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        raise CommandLineError(f"--rank: {_clean(text)} is not a rank (a number >= 0)")
    return int(text)


# -- run -----------------------------------------------------------------------------------------


def child_environment(seed: int, deterministic: bool, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment ``rngstate run`` gives its command.

    >>> env = child_environment(7, True, {})
    >>> env["RNGSTATE_SEED"], env["PYTHONHASHSEED"], env["CUBLAS_WORKSPACE_CONFIG"]
    ('7', '7', ':4096:8')
    """
    env = dict(os.environ if base is None else base)
    env[SEED_VARIABLE] = str(seed)
    # Hash randomization is fixed when an interpreter starts: only a parent can set it.
    env["PYTHONHASHSEED"] = str(seed)
    if deterministic:
        env.update(ENVIRONMENT)
    return env


def _cmd_run(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise CommandLineError(
            "run needs a command after `--`, e.g. rngstate run --seed 1 -- python train.py"
        )
    if args.seed is not None:
        seed = args.seed
    elif SEED_VARIABLE in os.environ:
        seed = _parse_seed(os.environ[SEED_VARIABLE], f"${SEED_VARIABLE}")
    else:
        seed = secrets.randbelow(MAX_SEED + 1)  # a fresh seed, printed so the run can be repeated
    env = child_environment(seed, args.deterministic)
    switches = " --deterministic" if args.deterministic else ""
    repeat = f"rngstate run --seed {seed}{switches} -- ..."
    print(f"rngstate: seed {seed} (repeat with: {repeat})", file=sys.stderr)
    sys.stderr.flush()
    try:
        completed = subprocess.run(command, env=env, check=False)
    except FileNotFoundError:
        _emit(f"{PROG}: error: command not found: {_clean(command[0])}", sys.stderr)
        return 127
    except PermissionError:
        _emit(f"{PROG}: error: permission denied: {_clean(command[0])}", sys.stderr)
        return 126
    except KeyboardInterrupt:  # the child got the same SIGINT; report like a shell would
        return 130
    code = completed.returncode
    return 128 - code if code < 0 else code


def _parse_seed(text: str, where: str = "--seed") -> int:
    try:
        return _check.seed_text(text, where, MAX_SEED)
    except RNGStateError as exc:
        raise CommandLineError(str(exc)) from None


# -- main ----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation tools)."""
    parser = _Parser(
        prog=PROG,
        description="Inspect and compare rngstate files and step traces; run a command with a fixed seed.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command_name", metavar="COMMAND", parser_class=_Parser)
    inspect = commands.add_parser("inspect", help="show what a state file holds")
    inspect.add_argument("file", help="a file written by rngstate.save()")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.set_defaults(handler=_cmd_inspect)
    diff = commands.add_parser("diff", help="compare two state files (exit 1 when they differ)")
    diff.add_argument("a", help="first state file")
    diff.add_argument("b", help="second state file")
    diff.add_argument("--json", action="store_true", help="machine-readable output")
    diff.set_defaults(handler=_cmd_diff)
    compare_ = commands.add_parser(
        "compare",
        help="the first step where two step traces differ, and why (exit 1 when they differ)",
        description=(
            "Align two traces written by rngstate.trace() by step and print the first step where "
            "they differ, what differed first (batch, streams, loss, weights) and the likely cause. "
            "Exit 0 identical, 1 different, 2 bad input."
        ),
    )
    compare_.add_argument("a", help="first trace (e.g. uninterrupted.trace)")
    compare_.add_argument("b", help="second trace (e.g. resumed.trace)")
    compare_.add_argument("--rank", type=_parse_rank, help="compare this rank's files (run.rankN.trace)")
    compare_.add_argument("--json", action="store_true", help="machine-readable output")
    compare_.set_defaults(handler=_cmd_compare)
    run = commands.add_parser(
        "run",
        help="run a command with RNGSTATE_SEED, PYTHONHASHSEED (and determinism variables) set",
        description=(
            "Run CMD with RNGSTATE_SEED and PYTHONHASHSEED set (seed_everything() with no "
            "argument picks the seed up). --deterministic also sets "
            + ", ".join(f"{key}={value}" for key, value in ENVIRONMENT.items())
            + ". Without --seed: $RNGSTATE_SEED, else a fresh random seed (printed)."
        ),
    )
    run.add_argument("--seed", type=_parse_seed, help=f"root seed in [0, {MAX_SEED}]")
    run.add_argument("--deterministic", action="store_true", help="set the determinism variables")
    run.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD ...")
    run.set_defaults(handler=_cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rngstate`` command; returns the exit status.

    >>> main(["inspect", "/nonexistent.rngstate"])
    2
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if getattr(args, "handler", None) is None:
            raise CommandLineError(
                "no command given; use inspect, diff, compare or run (see `rngstate --help`)"
            )
        code: int = args.handler(args)
        return code
    except RNGStateError as exc:  # StateFileError, CommandLineError, ...: one line, no traceback
        _emit(f"{PROG}: error: {_clean(str(exc), 2000)}", sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `rngstate inspect f | head`: not an error worth a traceback
        # Point stdout at devnull so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
