"""tests/preloaded.py: a run forked from a preloader behaves as ``python ...`` in a fresh process.

The resume tests trust it to: if a forked run shared random state with its siblings, read the
preloader's environment or outlived its command, they could pass for the wrong reason.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT
from tests.preloaded import preloaded

TORCH = ("torch",)

FRESH = """
import json, os, random, sys, threading, atexit
import numpy, torch
def later():
    import time; time.sleep(0.2); print("thread done", flush=True)
threading.Thread(target=later).start()  # a non-daemon thread: the interpreter waits for it
atexit.register(lambda: print("atexit ran", flush=True))
print(json.dumps({
    "name": __name__, "file": globals().get("__file__"), "argv": sys.argv, "path0": sys.path[0],
    "cwd": os.getcwd(), "marker": os.environ.get("PRELOAD_MARKER"), "stdin": sys.stdin.readline().strip(),
    "random": random.random(), "numpy": float(numpy.random.random()), "torch": torch.rand(1).item(),
    "seed": torch.initial_seed(), "preloaded": "torch" in sys.modules,
}), flush=True)
sys.stderr.write("to stderr\\n")
sys.exit(7)
"""


def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, **kwargs)  # type: ignore[call-overload]


def test_a_forked_run_looks_like_a_fresh_interpreter(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text(FRESH)
    env = {**os.environ, "PRELOAD_MARKER": "yes"}
    results = []
    for _ in range(2):
        done = run(preloaded(TORCH, str(script), "a", "b", env=env), env=env, cwd=tmp_path, input="hello\n")
        assert done.returncode == 7, done.stderr
        assert done.stderr == "to stderr\n"
        lines = done.stdout.splitlines()
        assert lines[1:] == ["thread done", "atexit ran"]  # threads joined, then atexit, as at exit
        results.append(json.loads(lines[0]))
    first, second = results
    assert first["name"] == "__main__" and first["file"] == str(script)
    assert first["argv"] == [str(script), "a", "b"] and first["path0"] == str(tmp_path)
    assert first["cwd"] == str(tmp_path) and first["marker"] == "yes" and first["stdin"] == "hello"
    assert first["preloaded"]
    # Each run starts from the OS's entropy, as a fresh interpreter does: no shared draws.
    for stream in ("random", "numpy", "torch", "seed"):
        assert first[stream] != second[stream], stream


def test_code_and_modules_run_as_with_dash_c_and_dash_m() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = "import sys; print(sys.argv, sys.path[0] == '')"
    done = run(preloaded(TORCH, "-c", code, "x", env=env), env=env)
    assert done.stdout == "['-c', 'x'] True\n", done.stderr
    done = run(preloaded(TORCH, "-m", "tests.preloaded_probe", "y", env=env), env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    probe = str(ROOT / "tests" / "preloaded_probe.py")
    assert json.loads(done.stdout) == {"name": "__main__", "argv": [probe, "y"]}


def test_exceptions_and_signals_end_the_command_as_they_end_python() -> None:
    done = run(preloaded(TORCH, "-c", "raise ValueError('broken job')"))
    assert done.returncode == 1 and done.stderr.rstrip().endswith("ValueError: broken job")
    done = run(preloaded(TORCH, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"))
    assert done.returncode == -signal.SIGKILL


def test_killing_the_command_kills_the_run(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(600)"
    command = subprocess.Popen(preloaded(TORCH, "-c", code))
    deadline = time.monotonic() + 60
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline and command.poll() is None
        time.sleep(0.05)
    run_pid = int(pid_file.read_text())
    assert run_pid != command.pid  # the run is the preloader's child, not the command itself
    command.send_signal(signal.SIGKILL)
    assert command.wait(timeout=30) == -signal.SIGKILL
    deadline = time.monotonic() + 30
    while alive(run_pid):
        assert time.monotonic() < deadline, "the run outlived its command"
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def test_an_environment_read_at_import_time_gets_a_real_interpreter() -> None:
    # The preloader started under this environment; a run with another hash seed cannot be
    # forked from it (the interpreter fixed its hash seed at start).
    command = preloaded(TORCH, "-c", "import sys; print('torch' in sys.modules)")
    other = {**os.environ, "PYTHONHASHSEED": "1" if os.environ.get("PYTHONHASHSEED") != "1" else "2"}
    assert run(command, env=other).stdout == "False\n"
    assert run(command).stdout == "True\n"
    log = Path(command[command.index(str(Path(__file__).parent / "preloaded_client.py")) + 1]).parent
    assert "environment read at import time differs" in (log / "fallbacks.log").read_text()
    assert sys.executable == command[0]


def test_a_run_gets_the_thread_count_its_environment_asks_for() -> None:
    # OpenMP read OMP_NUM_THREADS when torch loaded in the preloader; the run sets its own, as
    # a fresh interpreter with that environment would have it.
    code = "import torch; print(torch.get_num_threads())"
    for threads in ("1", "3"):
        env = {**os.environ, "OMP_NUM_THREADS": threads}
        assert run(preloaded(TORCH, "-c", code, env=env), env=env).stdout == f"{threads}\n"
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    fresh = run([sys.executable, "-c", code], env=env).stdout
    assert run(preloaded(TORCH, "-c", code, env=env), env=env).stdout == fresh


def test_variables_set_by_the_preloaded_imports_neither_block_the_fork_nor_go_missing(tmp_path: Path) -> None:
    # TensorFlow sets LD_LIBRARY_PATH when imported, Paddle OMP_NUM_THREADS, Lightning
    # TORCHINDUCTOR_CACHE_DIR: the run must still be forked, and see them as after its own import.
    (tmp_path / "sets_variables.py").write_text(
        "import os\nos.environ['TF_SET_BY_IMPORT'] = 'yes'\nos.environ.pop('TF_UNSET_BY_IMPORT', None)\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", "TF_UNSET_BY_IMPORT": "1"}
    code = ("import os, sys; print('sets_variables' in sys.modules, os.environ.get('TF_SET_BY_IMPORT'), "
            "os.environ.get('TF_UNSET_BY_IMPORT'))")
    command = preloaded(("sets_variables",), "-c", code, env=env)
    assert run(command, env=env).stdout == "True yes None\n"
    assert not (Path(command[-3]).parent / "fallbacks.log").exists()
