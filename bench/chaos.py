"""Faults for the load benchmark: SIGKILL a random worker process every K seconds, and Redis
once, while the supervisor of `ragq up` restarts whatever dies."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

import psutil
import redis

WORKERS = ("cpu-worker", "llm-worker")


@dataclass
class Fault:
    """One kill: when (seconds into the phase), which process, and for Redis how long it was
    away (seconds until it answered again, None if it never did within a minute)."""

    at_s: float
    target: str
    pid: int
    command: str
    down_s: float | None = None


def targets(children: Mapping[str, subprocess.Popen[bytes]]) -> list[tuple[str, psutil.Process]]:
    """Every live process of the workers: each worker's main process and all its descendants."""
    found: list[tuple[str, psutil.Process]] = []
    for name, child in sorted(children.items()):
        if not name.startswith(WORKERS) or child.poll() is not None:
            continue
        try:
            main = psutil.Process(child.pid)
            found.append((name, main))
            found += [(f"{name} child", p) for p in main.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
    return [(name, p) for name, p in found if _alive(p)]


def _alive(process: psutil.Process) -> bool:
    """Running, and not a zombie (killed, but not yet reaped by its parent)."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def command_of(process: psutil.Process) -> str:
    """A short description of the process (its command line, or its name)."""
    try:
        line = " ".join(process.cmdline()) or process.name()
    except psutil.Error:
        return "?"
    return line[:100]


def kill_one(
    children: Mapping[str, subprocess.Popen[bytes]], rng: random.Random, at_s: float
) -> Fault | None:
    """SIGKILL one process drawn from `targets`; None if there was none alive."""
    found = targets(children)
    if not found:
        return None
    name, process = rng.choice(found)
    command = command_of(process)
    try:
        os.kill(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        return None
    return Fault(at_s, name, process.pid, command)


def kill_redis(child: subprocess.Popen[bytes], url: str, at_s: float) -> Fault:
    """SIGKILL the Redis child and wait (up to a minute) until the restarted one answers."""
    pid = child.pid
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    down: float | None = None
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    time.sleep(0.2)
    while time.monotonic() - killed < 60:
        try:
            if client.ping():
                down = time.monotonic() - killed
                break
        except redis.RedisError:
            pass
        time.sleep(0.1)
    client.close()
    return Fault(at_s, "redis", pid, "redis-server (AOF)", down)


class Chaos:
    """A thread that kills a worker process every `every_s` seconds and Redis once at
    `redis_at_s`, counted from `started` (time.monotonic), until `stop` is set."""

    def __init__(
        self,
        children: Mapping[str, subprocess.Popen[bytes]],
        redis_url: str,
        every_s: float,
        redis_at_s: float | None,
        seed: int,
        started: float,
    ) -> None:
        self.children = children
        self.redis_url = redis_url
        self.every_s = every_s
        self.redis_at_s = redis_at_s
        self.rng = random.Random(f"{seed}-chaos")
        self.started = started
        self.faults: list[Fault] = []
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos", daemon=True)

    def start(self) -> None:
        """Start killing."""
        self._thread.start()

    def join(self) -> None:
        """Stop killing and wait for the thread."""
        self.stop.set()
        self._thread.join()

    def _run(self) -> None:
        next_kill = self.every_s
        redis_due = self.redis_at_s
        while not self.stop.is_set():
            now = time.monotonic() - self.started
            if redis_due is not None and now >= redis_due:
                redis_due = None
                child = self.children.get("redis")
                if child is not None:
                    self._note(kill_redis(child, self.redis_url, now))
            elif now >= next_kill:
                next_kill += self.every_s
                fault = kill_one(self.children, self.rng, now)
                if fault is not None:
                    self._note(fault)
            self.stop.wait(0.2)

    def _note(self, fault: Fault) -> None:
        self.faults.append(fault)
        down = "" if fault.down_s is None else f", back after {fault.down_s:.1f} s"
        print(
            f"  chaos {fault.at_s:6.1f} s: SIGKILL {fault.target} pid {fault.pid} "
            f"({fault.command[:60]}){down}",
            flush=True,
        )
