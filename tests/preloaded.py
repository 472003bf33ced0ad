"""Run a script in an interpreter that has already imported torch (or Lightning, transformers).

The resume tests run each training in its own process, as a user would: uninterrupted, stopped,
resumed.  A fresh interpreter spends most of such a run importing its framework (torch 2-3 s
of CPU, Lightning 8 s), so ``preloaded(...)`` returns a command that runs the script in a child
forked from a *preloader*: a server, one per test worker and module set, that imported those
modules once and forks a child per run.  The child then looks like a fresh ``python script``:

- its stdin, stdout and stderr are the command's (passed over a Unix socket), its environment,
  working directory, ``sys.argv``, ``sys.path`` and ``__main__`` are the command's;
- ``random`` and NumPy's global generator are reseeded from the OS, as a fresh interpreter's
  are (the preloader never draws from torch's default generator, which starts at its fixed seed);
- it ends as an interpreter does (non-daemon threads joined, ``atexit`` run, streams flushed)
  and the command exits with its status, or dies by the same signal;
- killing the command (a timeout, SIGKILL) kills the child and its process group.

Where a fork could not look fresh, the command runs a real interpreter instead: an environment
that differs from the preloader's in a variable read at import time (``PYTHON*``, ``TF_*``,
``KERAS_BACKEND``, ...; torch's ``OMP_NUM_THREADS`` is set in the run), or interpreter options
other than ``-c``, ``-m`` and ``-u``.  Only code that imports the preloaded modules first
anyway is given ``preload=``; tests about import order keep a cold interpreter.  This file
imports only the standard library: the preloader must not import rngstate (a child imports it
fresh, with the child's environment).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import traceback
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLIENT = Path(__file__).resolve().parent / "preloaded_client.py"

# Variables a preloaded module may read when it is imported; a run whose value differs from the
# preloader's gets a preloader of its own (see ``preloaded``).
IMPORT_TIME_PREFIXES = (
    "PYTHON", "OMP_", "MKL_", "KMP_", "OPENBLAS", "GOTO", "TORCH", "PYTORCH", "CUDA", "CUBLAS", "NCCL",
    "TF_", "KERAS", "FLAGS_", "HF_", "TRANSFORMERS", "TOKENIZERS", "LD_", "MALLOC",
)
# Read when a run starts, not at import: torchrun's per-worker variables, the path handled below.
RUN_TIME_VARIABLES = ("TORCHELASTIC_", "PYTHONPATH", "PYTHONUNBUFFERED")
THREADS = "OMP_NUM_THREADS"

SERVE = "; ".join([
    "import sys", "sys.path.append(sys.argv[1])", "from tests.preloaded import serve",
    "serve(sys.argv[2], sys.argv[3:])",
])
_SERVERS: dict[tuple[object, ...], tuple[subprocess.Popen[bytes], str]] = {}
_LOCK = threading.Lock()


def _import_time_env(env: dict[str, str], modules: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """The variables of ``env`` a preloaded module may have read; PYTHONPATH is not one (the
    preloaded modules come from the environment's site-packages; a run gets its own sys.path)."""
    read = (k for k in env if k.startswith(IMPORT_TIME_PREFIXES) and not k.startswith(RUN_TIME_VARIABLES))
    return tuple(sorted((k, env[k]) for k in read if not (k == THREADS and _threads_set_by_torch(modules))))


def _threads_set_by_torch(modules: tuple[str, ...]) -> bool:
    """Whether a run can take OMP_NUM_THREADS from ``torch.set_num_threads`` (which sets
    OpenMP's and MKL's, before any parallel region has run in the preloader) instead of from
    the preloader's environment: torch and what sits on it, not Paddle or TensorFlow."""
    return not any(name.split(".")[0] in ("paddle", "tensorflow", "keras") for name in modules)


def preloaded(modules: tuple[str, ...], *argv: str, env: dict[str, str] | None = None) -> list[str]:
    """A command that runs ``python *argv`` in a child of a preloader of ``modules``.

    ``env`` is the environment the command will be given (``os.environ`` when None): the
    preloader is started with the same import-time variables.
    """
    environment = dict(os.environ if env is None else env)
    key = (modules, _import_time_env(environment, modules))
    with _LOCK:
        entry = _SERVERS.get(key)
        if entry is None or entry[0].poll() is not None:
            entry = _start(modules, environment)
            _SERVERS[key] = entry
    return [sys.executable, "-E", "-S", str(CLIENT), entry[1], *argv]


def _start(modules: tuple[str, ...], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    if _threads_set_by_torch(modules):  # torch's default thread count; a run sets its own
        env = {k: v for k, v in env.items() if k != THREADS}
    folder = tempfile.mkdtemp(prefix="rngstate-preload-")
    path = os.path.join(folder, "socket")
    # stdin is the worker's end: when the test process ends, the preloader reads EOF and stops.
    # ``sys.executable`` of a forked run: what the run starts with it (Lightning's DDP ranks,
    # torchrun's workers, a script's own subprocesses) is forked from the same preloader.
    launcher = os.path.join(folder, "python")
    with open(launcher, "w") as file:
        file.write(f'#!/bin/sh\nexec "{sys.executable}" -E -S "{CLIENT}" "{path}" "$@"\n')
    os.chmod(launcher, 0o755)
    with open(os.path.join(folder, "preloader.log"), "wb") as log:  # the frameworks' import chatter
        process = subprocess.Popen(
            [sys.executable, "-c", SERVE, str(ROOT), path, *modules],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env, cwd=str(ROOT),
        )
    assert process.stdout is not None
    ready = process.stdout.readline()
    if ready != b"ready\n":
        process.kill()
        raise RuntimeError(f"the preloader of {modules} did not start: {ready!r}")
    atexit.register(_stop, process, folder)
    return process, path


def _stop(process: subprocess.Popen[bytes], folder: str) -> None:
    process.kill()
    process.wait()
    shutil.rmtree(folder, ignore_errors=True)


# -- the preloader -------------------------------------------------------------------------


def _receive(conn: socket.socket) -> tuple[dict[str, object], list[int]]:
    """One request: a 4-byte length, the JSON, and the client's stdin/stdout/stderr."""
    header, fds, _, _ = socket.recv_fds(conn, 4, 3)
    (length,) = struct.unpack("!I", header)
    payload = b""
    while len(payload) < length:
        chunk = conn.recv(length - len(payload))
        if not chunk:
            raise ConnectionError("the client went away")
        payload += chunk
    return json.loads(payload), fds


def serve(path: str, modules: list[str]) -> None:
    """Import ``modules``, then fork a child per request until stdin closes."""
    # The environment as a fresh interpreter starts with it: the imports add variables of their
    # own (TensorFlow LD_LIBRARY_PATH, Paddle OMP_NUM_THREADS, Lightning TORCHINDUCTOR_CACHE_DIR),
    # which a run gets on top of its environment, as its own imports would have set them.
    base_env = dict(os.environ)
    for name in modules:
        importlib.import_module(name)
    imported_env = {k: v for k, v in os.environ.items() if base_env.get(k) != v}
    unset_env = [k for k in base_env if k not in os.environ]
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    # The interpreter's own path (stdlib, site-packages): without "-c"'s "", PYTHONPATH and ROOT.
    skip = {"", str(ROOT), *os.environ.get("PYTHONPATH", "").split(os.pathsep)}
    base_path = [p for p in sys.path if p not in skip]
    selector = selectors.EpollSelector()
    selector.register(listener, selectors.EVENT_READ, ("accept",))
    selector.register(sys.stdin.fileno(), selectors.EVENT_READ, ("parent",))
    children: dict[int, socket.socket] = {}
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 1)
    while True:
        for key, _ in selector.select():
            kind = key.data[0]
            if kind == "parent":
                for pid in children:
                    _kill_group(pid)
                return
            if kind == "accept":
                conn, _ = listener.accept()
                try:
                    request, fds = _receive(conn)
                except (OSError, ValueError):
                    conn.close()
                    continue
                reason = _why_not_fresh(request, base_env, modules)
                if reason:
                    with open(os.path.join(os.path.dirname(path), "fallbacks.log"), "a") as log:
                        log.write(f"{reason}: {request['argv']}\n")
                    conn.sendall(json.dumps({"fallback": reason}).encode() + b"\n")
                    conn.close()
                    for fd in fds:
                        os.close(fd)
                    continue
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:  # the preloader's own descriptors are no business of the run
                    owned = [listener.fileno(), devnull, conn.fileno(), selector.fileno()]
                    watched = [k.fd for k in selector.get_map().values()]
                    _run_child(request, fds, base_path, [*owned, *watched], (imported_env, unset_env))
                for fd in fds:
                    os.close(fd)
                children[pid] = conn
                conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
                selector.register(os.pidfd_open(pid), selectors.EVENT_READ, ("exit", pid))
                selector.register(conn, selectors.EVENT_READ, ("client", pid))
            elif kind == "exit":
                pid = key.data[1]
                selector.unregister(key.fileobj)
                os.close(key.fd)
                _, status = os.waitpid(pid, 0)
                conn = children.pop(pid)
                with contextlib.suppress(KeyError):  # still watched unless the command went first
                    selector.unregister(conn)
                with contextlib.suppress(OSError):
                    conn.sendall(json.dumps({"status": status}).encode() + b"\n")
                conn.close()
            elif kind == "client" and not key.fileobj.recv(1):  # type: ignore[union-attr]
                # The command ended first (killed, timed out): so does its run.
                selector.unregister(key.fileobj)
                _kill_group(key.data[1])


def _kill_group(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)


def _why_not_fresh(request: dict[str, object], base_env: dict[str, str], modules: list[str]) -> str:
    env = request["env"]
    assert isinstance(env, dict)
    if _import_time_env(env, tuple(modules)) != _import_time_env(base_env, tuple(modules)):
        return "environment read at import time differs"
    argv = request["argv"]
    assert isinstance(argv, list)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-c", "-m")):
        return f"interpreter options {argv[:1]}"  # "-u" is taken off by the client
    return ""


def _run_child(request: dict[str, object], fds: list[int], base_path: list[str], close: list[int],
               imports: tuple[dict[str, str], list[str]]) -> None:
    """In the forked child: become ``python *argv`` and never return.  ``imports``: the
    variables the preloaded imports set and unset."""
    code = 1
    try:
        os.setsid()  # a process group of its own: killing the command kills what it started
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in {*fds, *close}:
            if fd > 2:
                os.close(fd)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        env = request["env"]
        argv = request["argv"]
        assert isinstance(env, dict) and isinstance(argv, list)
        os.chdir(str(request["cwd"]))
        os.environ.clear()
        os.environ.update(env)
        os.environ.update(imports[0])
        for name in imports[1]:
            os.environ.pop(name, None)
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the child's own streams
        if request.get("unbuffered"):  # python -u
            sys.stdout.reconfigure(write_through=True)  # type: ignore[union-attr]
            sys.stderr.reconfigure(write_through=True)  # type: ignore[union-attr]
        sys.executable = os.path.join(os.path.dirname(str(request["socket"])), "python")
        code = _execute(argv, env, base_path)
    except SystemExit as exc:
        code = _exit_code(exc)
    except BaseException:
        traceback.print_exc()
        code = 1
    _finalize(code)


def _execute(argv: list[str], env: dict[str, str], base_path: list[str]) -> int:
    import random

    # A fresh interpreter seeds these from the OS (torch too: its default generator's initial
    # seed is random); the preloader's states would make every run draw the same numbers.
    random.seed()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    if "torch" in sys.modules:
        sys.modules["torch"].seed()
        threads = env.get(THREADS, "")
        if threads.isdigit() and int(threads) > 0:  # what OpenMP would have read at torch's import
            sys.modules["torch"].set_num_threads(int(threads))
    extra = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = __builtins__
    sys.modules["__main__"] = main
    try:
        if argv[0] == "-c":
            sys.argv = ["-c", *argv[2:]]
            sys.path[:] = ["", *extra, *base_path]
            exec(compile(argv[1], "<string>", "exec"), main.__dict__)
        elif argv[0] == "-m":
            import runpy

            sys.argv = [argv[1], *argv[2:]]
            sys.path[:] = [os.getcwd(), *extra, *base_path]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            script = os.path.abspath(argv[0])
            sys.argv = list(argv)
            sys.path[:] = [os.path.dirname(script), *extra, *base_path]
            main.__dict__["__file__"] = script
            with open(script, "rb") as file:
                source = file.read()
            exec(compile(source, script, "exec"), main.__dict__)
    except SystemExit as exc:
        return _exit_code(exc)
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _finalize(code: int) -> None:
    """What an interpreter does at exit: join threads, run atexit, flush, then exit."""
    try:
        threading._shutdown()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()
    except BaseException:
        traceback.print_exc()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
