"""Processes that `ragq up` owns: children that die with it, and who holds a port or a lock."""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import socket
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import psutil

T = TypeVar("T")

PR_SET_PDEATHSIG = 1
LOCK_NAME = "ragq-up.lock"


def die_with_parent(signum: int) -> Callable[[], None] | None:
    """A `preexec_fn` that has Linux send the child `signum` when its parent goes away."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signum)

    return preexec


class _Spawner:
    """Runs every fork of the process on one thread that lives as long as the process.

    Linux sends the parent-death signal when the *thread* that forked the child exits, so
    children started from a short-lived thread (the supervisor's watcher) would otherwise be
    signalled when that thread ends, not when the supervisor dies.
    """

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], Any], Future[Any]]] = queue.Queue()
        threading.Thread(target=self._run, name="ragq-spawner", daemon=True).start()

    def _run(self) -> None:
        while True:
            job, future = self._jobs.get()
            try:
                future.set_result(job())
            except BaseException as exc:
                future.set_exception(exc)

    def __call__(self, job: Callable[[], T]) -> T:
        """Run `job` on the spawner thread; its result."""
        future: Future[T] = Future()
        self._jobs.put((job, future))
        return future.result()


_spawner_lock = threading.Lock()
_spawner: _Spawner | None = None


def spawn(job: Callable[[], T]) -> T:
    """Run `job` (one that starts a process) on the process-wide spawner thread."""
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = _Spawner()
    return _spawner(job)


def describe(pid: int) -> str:
    try:
        command = " ".join(psutil.Process(pid).cmdline()) or "?"
    except psutil.Error:
        command = "?"
    return f"pid {pid} ({command[:120]})"


def lock_holders(path: Path) -> list[int]:
    """The processes that have the lock file open (best effort: those this user may inspect)."""
    target = str(path.resolve())
    holders = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if any(f.path == target for f in proc.open_files()):
                holders.append(proc.pid)
    return sorted(holders)


def port_holder(host: str, port: int) -> str | None:
    """Who listens on the TCP port (None if it is free)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not "in use"
        try:
            sock.bind((host, port))
            return None
        except OSError:
            pass
    with contextlib.suppress(psutil.Error):
        for conn in psutil.net_connections(kind="tcp"):
            if _listens(conn, port):
                return describe(_opener(conn.pid, port)) if conn.pid else "another user's process"
    return "another process"


def _listens(conn: Any, port: int) -> bool:
    """Whether a psutil connection is a socket listening on the port."""
    return bool(conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port)


def _opener(pid: int, port: int) -> int:
    """Of the processes that share a listening socket (a server's workers, its parent), the
    eldest: psutil names one of them, any one."""
    with contextlib.suppress(psutil.Error):
        while (parent := psutil.Process(pid).parent()) is not None and any(
            _listens(c, port) for c in parent.net_connections("tcp")
        ):
            pid = parent.pid
    return pid
