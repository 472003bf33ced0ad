"""The `rngstate` command: inspect, diff, run, exit codes and one-line errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import rngstate
from rngstate.cli import main
from rngstate.diagnostics import plain_fingerprint

SCRIPT = Path(sys.executable).with_name("rngstate")


def make_state(path: Path, seed: int = 42, *, draw: bool = False) -> rngstate.RNGState:
    rngstate.seed_everything(seed)
    with rngstate.rng_scope("model"):
        with rngstate.rng_scope("encoder"):
            torch.rand(3)
        with rngstate.rng_scope("head"):
            np.random.rand()
    with rngstate.rng_scope("data/augment"):
        pass
    rngstate.torch.generator("loader")
    if draw:
        torch.rand(2)
    return rngstate.save(path)


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


# -- inspect -------------------------------------------------------------------------------------


def test_inspect_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = make_state(tmp_path / "a.rngstate")
    code, out, err = run_main(capsys, "inspect", tmp_path / "a.rngstate")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert "format version  1" in lines and "root seed       42" in lines
    assert f"fingerprint     {rngstate.fingerprint(state)}" in lines
    assert any(line.startswith("versions ") and f"torch {torch.__version__}" in line for line in lines)
    assert "  torch.use_deterministic_algorithms   off" in lines
    streams = state.to_dict()["streams"]
    row = next(line for line in lines if line.startswith("  torch.cpu "))
    assert row.split() == ["torch.cpu", "5,059", "B", plain_fingerprint(streams["torch.cpu"])]
    # the substream tree: "data" was never entered itself, "augment" sits under it
    start = lines.index(f"substreams ({len(state.substreams)})")
    tree = [line.split("  ")[1:3] for line in lines[start + 2 : start + 7]]
    assert [cells[0].strip() if cells[0].strip() else cells[1].strip() for cells in tree] == [
        "data",
        "augment",
        "model",
        "encoder",
        "head",
    ]
    assert "(not entered itself)" in lines[start + 2]
    assert any(line.split()[:2] == ["loader", "torch.Generator"] for line in lines)


def test_inspect_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = make_state(tmp_path / "a.rngstate")
    code, out, _ = run_main(capsys, "inspect", "--json", tmp_path / "a.rngstate")
    info = json.loads(out)
    assert code == 0
    assert (info["format_version"], info["schema"], info["root_seed"]) == (1, 1, 42)
    assert info["fingerprint"] == rngstate.fingerprint(state)
    assert set(info["streams"]) == set(state.streams)
    assert set(info["substreams"]) == {"model", "model/encoder", "model/head", "data/augment"}
    assert info["streams"]["torch.cpu"]["size"] == 5059
    assert info["generators"]["loader"]["kind"] == "torch.Generator"
    assert info["metadata"]["rngstate"] == rngstate.__version__


# -- diff ----------------------------------------------------------------------------------------


def test_diff_identical_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = make_state(tmp_path / "a.rngstate")
    make_state(tmp_path / "b.rngstate")
    code, out, _ = run_main(capsys, "diff", tmp_path / "a.rngstate", tmp_path / "b.rngstate")
    assert code == 0
    assert out.splitlines()[0] == f"identical (fingerprint {rngstate.fingerprint(state)})"


def test_diff_names_what_differs_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a.rngstate", tmp_path / "b.rngstate"
    make_state(a)
    make_state(b, draw=True)  # the global torch stream moved on
    code, out, _ = run_main(capsys, "diff", a, b)
    assert code == 1
    assert out.splitlines() == [
        "streams:",
        "  torch.cpu  differs",
        f"different: 1 stream, 0 substreams, 0 tracked generators (fingerprints "
        f"{rngstate.fingerprint(rngstate.load(a))} vs {rngstate.fingerprint(rngstate.load(b))})",
    ]


def test_diff_substreams_root_seed_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a.rngstate", tmp_path / "b.rngstate"
    make_state(a, seed=1)
    rngstate.seed_everything(2)
    with rngstate.rng_scope("model"):
        pass
    rngstate.save(b)
    code, out, _ = run_main(capsys, "diff", a, b)
    assert code == 1
    assert "root seed: 1 != 2" in out
    assert f"  data/augment   only in {a}" in out
    # paddle.cpu joins the list when an earlier test in this process imported paddle
    model_line = next(line for line in out.splitlines() if line.startswith("  model "))
    expected = r"  model +numpy differs, (paddle\.cpu differs, )?python differs, torch\.cpu differs"
    assert re.fullmatch(expected, model_line)
    # the tracked generator lives on in the process and was reseeded from root seed 2
    assert "tracked generators:\n  loader  differs" in out
    code, out, _ = run_main(capsys, "diff", "--json", a, b)
    result = json.loads(out)
    assert code == 1 and result["identical"] is False and result["root_seed"] == [1, 2]
    assert result["substreams"]["model/encoder"] == {"*": "only in A"}


# -- bad input -----------------------------------------------------------------------------------


def corrupt_copy(tmp_path: Path) -> Path:
    make_state(tmp_path / "good.rngstate")
    data = bytearray((tmp_path / "good.rngstate").read_bytes())
    data[-10] ^= 0xFF
    (tmp_path / "bad.rngstate").write_bytes(bytes(data))
    return tmp_path / "bad.rngstate"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["inspect", "{tmp}/missing.rngstate"], "no state file at"),
        (["inspect", "{tmp}/bad.rngstate"], "checksum mismatch"),
        (["inspect", "{tmp}/text.rngstate"], "not an rngstate file: bad magic bytes"),
        (["inspect", "{tmp}"], "is a directory"),
        (["diff", "{tmp}/good.rngstate", "{tmp}/bad.rngstate"], "checksum mismatch"),
        (["diff", "{tmp}/good.rngstate"], "the following arguments are required: b"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "no command given"),
        (["inspect", "--colour", "x"], "unrecognized arguments"),
        (["run", "--seed", "abc", "--", "true"], "--seed: 'abc' is not a seed; write an integer in [0, "),
        (["run", "--seed", "-3", "--", "true"], "--seed: '-3' is not a seed; write an integer in [0, "),
        (["run", "--seed", "1"], "run needs a command after `--`"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    corrupt_copy(tmp_path)
    (tmp_path / "text.rngstate").write_text("hello")
    capsys.readouterr()
    code, out, err = run_main(capsys, *[arg.format(tmp=tmp_path) for arg in argv])
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("rngstate: error: ") and message in err


def test_console_script_and_module_print_no_traceback(tmp_path: Path) -> None:
    bad = corrupt_copy(tmp_path)
    for command in ([str(SCRIPT)], [sys.executable, "-m", "rngstate"]):
        result = subprocess.run([*command, "inspect", str(bad)], capture_output=True, text=True)
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr.startswith("rngstate: error: ") and result.stderr.count("\n") == 1
        assert "Traceback" not in result.stderr
    result = subprocess.run([sys.executable, "-m", "rngstate", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == f"rngstate {rngstate.__version__}"


# -- run -----------------------------------------------------------------------------------------

CHILD = """
import os, rngstate
seed = rngstate.seed_everything()  # no argument: picks RNGSTATE_SEED up
print(seed, os.environ["PYTHONHASHSEED"], hash("stable?"))
print(*(os.environ.get(k, "-") for k in ("CUBLAS_WORKSPACE_CONFIG", "FLAGS_cudnn_deterministic",
                                          "TF_DETERMINISTIC_OPS")))
raise SystemExit(int(os.environ.get("EXIT", "0")))
"""


def test_run_sets_seed_hash_seed_and_determinism_variables(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("CUBLAS_WORKSPACE_CONFIG", "FLAGS_cudnn_deterministic", "TF_DETERMINISTIC_OPS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EXIT", "3")
    assert main(["run", "--seed", "9", "--deterministic", "--", sys.executable, "-c", CHILD]) == 3
    out, err = capfd.readouterr()
    first, second = out.splitlines()
    seed, hash_seed, hashed = first.split()
    assert (seed, hash_seed) == ("9", "9")
    assert second == ":4096:8 1 1"
    assert err == "rngstate: seed 9 (repeat with: rngstate run --seed 9 --deterministic -- ...)\n"
    # PYTHONHASHSEED reached the child's interpreter start: str hashes repeat across runs.
    monkeypatch.setenv("EXIT", "0")
    assert main(["run", "--seed", "9", "--", sys.executable, "-c", CHILD]) == 0
    out, _ = capfd.readouterr()
    assert out.splitlines()[0].split()[2] == hashed
    assert out.splitlines()[1] == "- - -"  # without --deterministic


def test_run_seed_from_environment_or_fresh(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RNGSTATE_SEED", "77")
    assert main(["run", "--", sys.executable, "-c", CHILD]) == 0
    assert capfd.readouterr().out.split()[0] == "77"
    monkeypatch.delenv("RNGSTATE_SEED")
    assert main(["run", "--", sys.executable, "-c", CHILD]) == 0
    out, err = capfd.readouterr()
    chosen = err.split()[2]
    assert out.split()[0] == chosen and 0 <= int(chosen) < 2**32


def test_run_exit_codes(capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--seed", "1", "--", "no-such-command-rngstate"]) == 127
    assert capfd.readouterr().err.splitlines()[-1] == (
        "rngstate: error: command not found: no-such-command-rngstate"
    )
    kill = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
    assert main(["run", "--seed", "1", "--", sys.executable, "-c", kill]) == 128 + 15
    capfd.readouterr()


def test_run_child_environment_leaves_parent_alone() -> None:
    before = dict(os.environ)
    main(["run", "--seed", "4", "--deterministic", "--", sys.executable, "-c", "pass"])
    assert dict(os.environ) == before


# -- hostile files and terminals (issue 12, item 7) -----------------------------------------------

ESCAPES = "\x1b[2J\x1b]0;pwned\x07\x9b31m\u202e\r\nfake line"


def hostile_file(tmp_path: Path) -> Path:
    """A well-formed state whose metadata holds escape sequences and unexpected types."""
    from rngstate import fileformat

    rngstate.seed_everything(1)
    rngstate.torch.generator("loader")
    data = rngstate.capture().to_dict()
    data["metadata"] = {
        "cuda_devices": 5,  # a number where a list of names belongs
        "torch": ESCAPES,
        "determinism": [ESCAPES],
        "évil" + ESCAPES: [1, b"\x1b", {"k": ESCAPES}],
    }
    path = tmp_path / "hostile.rngstate"
    path.write_bytes(fileformat.pack(data))
    return path


@pytest.mark.parametrize("json_output", [False, True])
def test_inspect_never_sends_control_characters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], json_output: bool
) -> None:
    path = hostile_file(tmp_path)
    code, out, err = run_main(capsys, "inspect", *(["--json"] if json_output else []), path)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert not any(c != "\n" and not c.isprintable() for c in out), out
    assert not any(line.startswith("fake line") for line in lines)
    assert "\\x1b" in out or "\\u001b" in out


def test_diff_never_sends_control_characters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = hostile_file(tmp_path)
    other = make_state(tmp_path / "b.rngstate")
    code, out, err = run_main(capsys, "diff", path, other and tmp_path / "b.rngstate")
    assert code == 1 and err == ""
    assert not any(c != "\n" and not c.isprintable() for c in out), out


def test_inspect_survives_an_ascii_only_terminal(tmp_path: Path) -> None:
    path = hostile_file(tmp_path)
    env = {**os.environ, "PYTHONIOENCODING": "ascii", "LC_ALL": "C", "PYTHONUTF8": "0"}
    for argv in (["inspect", str(path)], ["inspect", str(tmp_path / "missing-é")]):
        result = subprocess.run([sys.executable, "-m", "rngstate", *argv], capture_output=True, env=env)
        assert b"Traceback" not in result.stderr, result.stderr.decode()
        assert all(byte < 128 for byte in result.stdout + result.stderr)
        assert result.returncode in (0, 2) and result.stderr.count(b"\n") <= 1


@pytest.mark.parametrize("text", ["+7", "1_000", "\u0667", "7.0", "0x10", "-1", "4294967296", " ", ""])
def test_seed_is_plain_ascii_decimal_everywhere(
    text: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rngstate.errors import InvalidSeedError

    message = "is not a seed; write an integer in [0, 4294967295] in plain decimal digits (0-9)"
    code, _, err = run_main(capsys, "run", "--seed", text, "--", sys.executable, "-c", "pass")
    assert code == 2 and message in err and err.count("\n") == 1
    monkeypatch.setenv("RNGSTATE_SEED", text)
    with pytest.raises(InvalidSeedError, match=re.escape(message)):
        rngstate.seed_everything()
    code, _, err = run_main(capsys, "run", "--", sys.executable, "-c", "pass")
    assert code == 2 and message in err


@pytest.mark.parametrize("text", ["0", "7", " 42 ", "007", "4294967295"])
def test_plain_decimal_seeds_are_taken(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RNGSTATE_SEED", text)
    assert rngstate.seed_everything() == int(text)
