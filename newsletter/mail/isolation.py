"""Run a function in a child process under a CPU-time limit, an address-space limit and a
wall-clock deadline: how email templates staff wrote are rendered (`newsletter.mail.render`).

Children come from a *zygote*: a single-threaded Python process started once per app
process (fork + exec, safe from a threaded gunicorn worker) that imports and warms the
renderer (`PRELOAD`) and then forks one child per request. So a child costs a fork and
starts warm. (A plain `fork()` of a threaded worker could copy a lock another thread
holds; "spawn" would pay the imports every time; multiprocessing's own forkserver
re-imports the parent's `__main__` script in every child.) The zygote runs with an
environment of its own (no secrets in it) and exits when its parent does.

- In the child: `RLIMIT_CPU` (at the soft limit SIGXCPU raises `CpuLimitExceeded` where the
  code is, so the error can name a template line; a second later the hard limit kills),
  `RLIMIT_AS` (allocations past the limit raise `MemoryError`), no core files. It answers
  in JSON, so nothing it sends back is executed by the parent.
- In the parent: the calling thread waits on a socket without holding the GIL and has the
  child killed at the deadline, so the process's other threads keep answering requests.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import pickle
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

# What the zygote imports before it forks anything: the renderer, warmed.
PRELOAD = ("newsletter.mail.warm",)
MAX_ANSWER_BYTES = 256 * 1024 * 1024

A = TypeVar("A")
_PID = struct.Struct("!q")
_LENGTH = struct.Struct("!Q")


@dataclass(frozen=True)
class Limits:
    cpu_seconds: int  # CPU time of the child (whole seconds: what RLIMIT_CPU counts)
    memory_bytes: int  # address space the child may add to what it starts with
    wall_seconds: float  # the parent's deadline, for a child that stalls without CPU


class CpuLimitExceeded(Exception):
    """Raised inside the child when it has used its CPU time."""


class LimitExceeded(Exception):
    """The child broke a limit or died before answering: `kind` is "cpu", "memory",
    "wall" or "died"."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


# --- framing -----------------------------------------------------------------------------


def _send_frame(sock: socket.socket, data: bytes) -> None:
    sock.sendall(_LENGTH.pack(len(data)) + data)


def _recv_exact(sock: socket.socket, size: int, deadline: float | None) -> bytes:
    chunks, left = [], size
    while left:
        if deadline is not None:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _recv_frame(sock: socket.socket, deadline: float | None = None) -> bytes:
    (size,) = _LENGTH.unpack(_recv_exact(sock, _LENGTH.size, deadline))
    if size > MAX_ANSWER_BYTES:
        raise EOFError
    return _recv_exact(sock, size, deadline)


# --- the zygote and its children ---------------------------------------------------------


def _address_space() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * resource.getpagesize()


def _on_sigxcpu(signum: int, frame: Any) -> None:
    raise CpuLimitExceeded


def _child(job: socket.socket) -> None:
    """A forked child: read the job, run it under the limits, answer."""
    fn, arg, limits = pickle.loads(_recv_frame(job))  # noqa: S301 (sent by our parent)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
    ceiling = _address_space() + limits.memory_bytes
    resource.setrlimit(resource.RLIMIT_AS, (ceiling, ceiling))
    signal.signal(signal.SIGXCPU, _on_sigxcpu)
    try:
        outcome: dict[str, Any] = {"status": "ok", "value": fn(arg)}
        answer = json.dumps(outcome).encode()
    except CpuLimitExceeded:
        answer = b'{"status": "cpu"}'
    except MemoryError:
        answer = b'{"status": "memory"}'
    except BaseException as exc:  # reported to the parent, which raises it there
        failure = {"status": "error", "value": f"{type(exc).__name__}: {exc}"}
        answer = json.dumps(failure).encode()
    _send_frame(job, answer)


def _reap(children: set[int]) -> None:
    for pid in list(children):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            children.discard(pid)


def serve(fd: int) -> None:
    """The zygote's loop (run as `python -c`): on "R" with a socket, fork a child for it and
    answer its pid; on "K" with a pid, kill that child if it is still running. Ends when
    the parent closes its end. The warm-up calls its parent wrote on stdin are made one
    at a time, in the zygote itself, while no request waits."""
    for name in PRELOAD:
        importlib.import_module(name)
    steps: list[tuple[Callable[[Any], Any], Any]] = pickle.load(sys.stdin.buffer)  # noqa: S301
    # Children share the zygote's memory until they write to it: keep the collector from
    # touching (and so copying) every object it loaded.
    gc.freeze()
    control = socket.socket(fileno=fd)
    children: set[int] = set()
    while True:
        readable, _, _ = select.select([control], [], [], 0 if steps else 1.0)
        _reap(children)
        if not readable:
            if steps:  # more warming, between requests
                fn, arg = steps.pop(0)
                try:
                    fn(arg)
                except Exception:  # a colder child, not a broken one
                    traceback.print_exc()
                gc.freeze()
            continue
        try:
            message, fds, _flags, _addr = socket.recv_fds(control, 16, 1)
        except OSError:
            return
        if not message:
            return
        if message[:1] == b"R" and fds:
            job = socket.socket(fileno=fds[0])
            pid = os.fork()
            if pid == 0:  # the child
                code = 0
                try:
                    control.close()
                    _child(job)
                except BaseException:  # the parent reports a child that died
                    code = 1
                finally:
                    os._exit(code)
            job.close()
            children.add(pid)
            control.send(_PID.pack(pid))
        elif message[:1] == b"K":
            (pid,) = _PID.unpack(message[1:9])
            if pid in children:
                os.kill(pid, signal.SIGKILL)
            control.send(_PID.pack(pid))
        else:
            for extra in fds:
                os.close(extra)
            control.send(_PID.pack(-1))


class _Zygote:
    def __init__(self, warm: list[tuple[Callable[[Any], Any], Any]]) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        code = f"from newsletter.mail.isolation import serve; serve({theirs.fileno()})"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
            "LANG": "C.UTF-8",
        }
        self.process = subprocess.Popen(  # noqa: S603 (our own interpreter and code)
            [sys.executable, "-c", code],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.PIPE,
            env=env,
        )
        theirs.close()
        assert self.process.stdin is not None  # noqa: S101 (stdin=PIPE)
        self.process.stdin.write(pickle.dumps(warm))
        self.process.stdin.close()
        self.control = ours
        self.lock = threading.Lock()

    def ask(self, message: bytes, fds: list[int] | None = None) -> int:
        with self.lock:
            socket.send_fds(self.control, [message], fds or [])
            answer = self.control.recv(_PID.size)
        if len(answer) != _PID.size:
            raise EOFError
        return int(_PID.unpack(answer)[0])

    def close(self) -> None:
        self.control.close()


_zygote: _Zygote | None = None
_zygote_lock = threading.Lock()
_warm: list[tuple[Callable[[Any], Any], Any]] = []


def _current(restart: bool = False) -> _Zygote:
    global _zygote
    with _zygote_lock:
        if _zygote is None or restart or _zygote.process.poll() is not None:
            if _zygote is not None:
                _zygote.close()
            _zygote = _Zygote(_warm)
        return _zygote


def start(warm: Sequence[tuple[Callable[[Any], Any], Any]] = ()) -> None:
    """Start the zygote now, in the background, so the first render does not wait for it
    to import the renderer (this returns at once; the zygote loads meanwhile). `warm`:
    calls `fn(arg)` (module-level `fn`, picklable `arg`) the zygote makes once loaded,
    so that the children it forks find their results in memory (caches filled)."""
    with _zygote_lock:
        if not _warm:
            _warm.extend(warm)
    _current()


def _forget_zygote() -> None:
    # A process forked from one that started the zygote (gunicorn --preload) shares its
    # control socket; give it a zygote of its own on first use.
    global _zygote, _zygote_lock
    _zygote, _zygote_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_zygote)


def _fork_child(job: socket.socket) -> tuple[_Zygote, int]:
    for attempt in (0, 1):
        zygote = _current(restart=attempt == 1)
        try:
            return zygote, zygote.ask(b"R", [job.fileno()])
        except (OSError, EOFError):
            if attempt == 1:
                raise
    raise AssertionError("unreachable")


def run(fn: Callable[[A], Any], arg: A, limits: Limits) -> Any:
    """`fn(arg)` in a child under `limits`, and its result (which must be JSON). `fn`
    must be a module-level function and `arg` picklable. Raises `LimitExceeded` when a
    limit is broken or the child dies, `RuntimeError` when `fn` raised."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        zygote, pid = _fork_child(theirs)
        theirs.close()
        deadline = time.monotonic() + limits.wall_seconds
        try:
            _send_frame(ours, pickle.dumps((fn, arg, limits)))
            answer = json.loads(_recv_frame(ours, deadline))
        except TimeoutError:
            zygote.ask(b"K" + _PID.pack(pid))
            raise LimitExceeded("wall") from None
        except (OSError, EOFError, ValueError):
            raise LimitExceeded("died") from None
    finally:
        ours.close()
        theirs.close()
    status = answer.get("status")
    if status == "ok":
        return answer.get("value")
    if status in ("cpu", "memory"):
        raise LimitExceeded(status)
    raise RuntimeError(answer.get("value"))
