"""The command side of tests/preloaded.py: ``python -E -S preloaded_client.py SOCKET ARGV...``.

Sends ARGV, the environment, the working directory and this process's stdin/stdout/stderr to
the preloader, waits for the forked run to end and exits with its status (or dies by its
signal).  When the preloader says a fork could not look fresh, it becomes a real interpreter.
Standard library only, started without ``site`` (-S): it costs milliseconds.
"""

import contextlib
import json
import os
import signal
import socket
import struct
import sys


def main() -> None:
    path, argv = sys.argv[1], sys.argv[2:]
    unbuffered = argv[:1] == ["-u"]  # torchrun starts its workers with python -u
    fresh = argv[1:] if unbuffered else argv
    request = json.dumps(
        {"argv": fresh, "env": dict(os.environ), "cwd": os.getcwd(), "unbuffered": unbuffered, "socket": path}
    ).encode()
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(path)
    socket.send_fds(conn, [struct.pack("!I", len(request))], [0, 1, 2])
    conn.sendall(request)
    replies = conn.makefile("rb")
    first = json.loads(replies.readline())
    if "fallback" in first:
        conn.close()
        os.execv(sys.executable, [sys.executable, *argv])  # a real interpreter, options and all
    child = first["pid"]

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(OSError):
            os.kill(child, signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, forward)
    line = replies.readline()
    if not line:
        sys.exit("the preloader went away")
    status = json.loads(line)["status"]
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        if signum not in (signal.SIGKILL, signal.SIGSTOP):  # these two have no handler to reset
            signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    sys.exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main()
