"""The program of a spare operator process (spares.py): wait for one operator, then become it.

Run as ``python -I -S spare_exec.py`` with a Unix socket on its stdin; standard library only (it runs
without clarad's packages on its path). It says it is waiting with one byte; clarad then sends the
descriptor of the operator's log file with a first byte, then the operator as JSON (argv, env, cwd),
then closes its end. The spare puts the
log on stdout and stderr, /dev/null on stdin, moves to cwd and execs argv (searched on env's PATH,
as setpriv would), keeping its pid, session and cgroup. EOF without a message: it is not needed,
and exits 0. A program that cannot be executed: one line in the log and exit status 127.
"""

import ctypes
import json
import os
import signal
import socket
import sys

PR_SET_DUMPABLE = 4


def main() -> int:
    # Not dumpable while it waits: another process of the same user (an earlier job's operator)
    # cannot ptrace it and so take over the next job's operator. The exec gives the operator the
    # usual setting back.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    channel = socket.socket(fileno=os.dup(0))
    channel.sendall(b"r")  # started, and waiting
    data: bytes = b""
    fds: list[int] = []
    while True:
        chunk, received, _flags, _address = socket.recv_fds(channel, 1 << 16, 1)
        if not chunk:
            break
        data, fds = data + chunk, fds + received
    channel.close()
    if not data:
        return 0
    for fd in fds[1:]:
        os.close(fd)
    if fds:
        os.dup2(fds[0], 1)
        os.dup2(fds[0], 2)
        os.close(fds[0])
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    for number in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores them; the operator must not inherit that
        signal.signal(number, signal.SIG_DFL)
    try:
        message = json.loads(data[1:])
        os.chdir(message["cwd"])
        os.execvpe(message["argv"][0], message["argv"], message["env"])
    except (OSError, ValueError, KeyError, IndexError) as exc:
        print(f"clarad: cannot execute the operator: {exc}", file=sys.stderr, flush=True)
    return 127


if __name__ == "__main__":
    sys.exit(main())
