"""`ragq up`: Redis, the workers and the API as child processes of one command.

Written here rather than with a Procfile runner because the set of children depends on the
environment (a Redis child unless RAGQ_REDIS_URL names one that answers, its port chosen at
start) and readiness is judged through our own /readyz.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import redis

from cli.commands import api_command, flower_command, redis_command, worker_command
from cli.processes import LOCK_NAME, describe, die_with_parent, lock_holders, port_holder, spawn
from common.apikeys import ensure_dev_key, open_redis
from common.contract import CPU_WORKER_QUEUES, LLM_QUEUE
from common.keys import VECTOR_STORE_KEY
from common.liveness import starting_steps
from common.settings import Settings
from ragq_client import NO_RETRY, Client, RagqError
from workers.llm_engine import bound_cpus, fork_env
from workers.standby import STANDING_BY, Takeover


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_answers(url: str) -> bool:
    """Whether a Redis server answers at the URL."""
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def claim_store(redis_url: str, vectors: Path, own: bool = False) -> None:
    """Bind a Redis to one embedded vector store; refuse one that lists another store's
    documents, since its registry and that store would disagree. The data folder's own Redis
    follows its folder wherever it moves."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        path = str(vectors.resolve())
        client.set(VECTOR_STORE_KEY, path, nx=not own)
        owner = client.get(VECTOR_STORE_KEY)
    finally:
        client.close()
    if owner != path:
        raise RuntimeError(
            f"the Redis at {redis_url} holds the documents of the vector store {owner}, not of "
            f"{path}: use that data folder (RAGQ_DATA_DIR), another Redis database, or leave "
            "RAGQ_REDIS_URL unset so that ragq up starts a Redis of this data folder's own"
        )


def readiness(checks: dict[str, Any] | None, steps: dict[str, str]) -> str:
    """One line from the checks of a /readyz answer (None: the API does not answer yet) and the
    start-up steps of the workers still loading: Redis, the API, and each queue's worker."""
    if checks is None:
        return " · ".join(["API starting", *_grouped(steps)])
    states = {
        q: "ready" if up else steps.get(q, "starting")
        for q, up in checks.get("workers", {}).items()
    }
    return " · ".join(["API up", f"Redis {checks.get('redis', '?')}", *_grouped(states)])


def _grouped(states: dict[str, str]) -> list[str]:
    """ "ingest+query ready", "llm starting vLLM": queues in the same state together."""
    queues: dict[str, list[str]] = {}
    for queue, state in states.items():
        queues.setdefault(state, []).append(queue)
    return [f"{'+'.join(names)} {state}" for state, names in queues.items()]


# A child's first death, or one after it ran a minute, restarts it at once (its queue's jobs wait
# for it); a child that keeps dying waits longer each time.
RESTART_BACKOFF_S = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
STOP_MARGIN_S = 10.0
STABLE_AFTER_S = 60.0
# A worker's environment: SIGTERM starts Celery's soft shutdown (drain for the grace period,
# then requeue).
DRAIN = {"REMAP_SIGTERM": "SIGQUIT"}
# The idle llm worker that takes a dead one's place (RAGQ_LLM_STANDBY).
STANDBY = "llm-standby"


@dataclass
class Supervisor:
    """Starts the children, waits until the API is ready, restarts a child that dies (with
    backoff), and stops them all together."""

    settings: Settings
    logs: Path
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    metrics: dict[str, int] = field(default_factory=dict)
    redis_url: str = ""
    api_key: str = ""
    api_key_created: bool = False
    commands: dict[str, tuple[list[str], dict[str, str]]] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)
    held: set[str] = field(default_factory=set)
    # Each llm worker's (and the standby's) Celery hostname, as `name@%h`.
    hosts: dict[str, str] = field(default_factory=dict)
    # Each llm place's engine environment (its OpenMP set-up and CPUs, see fork_env).
    _engine_envs: dict[str, dict[str, str]] = field(default_factory=dict)
    _started_at: dict[str, float] = field(default_factory=dict)
    _due: dict[str, float] = field(default_factory=dict)
    _streak: dict[str, int] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _watcher: threading.Thread | None = None
    _claim: IO[str] | None = None

    def start(self, name: str, command: list[str], **env: str) -> None:
        """Start one child with its output in logs/NAME.log; it gets SIGTERM if we die."""
        self.logs.mkdir(parents=True, exist_ok=True)
        # The child keeps the data folder's lock open, so that a new `ragq up` waits for it too.
        held = (self._claim.fileno(),) if self._claim is not None else ()
        with self._lock, (self.logs / f"{name}.log").open("ab") as log:
            self.commands[name] = (command, env)
            self.children[name] = spawn(
                lambda: subprocess.Popen(
                    command,
                    env={**self.env, **env},
                    stdin=subprocess.PIPE if name == STANDBY else None,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    pass_fds=held,
                    preexec_fn=die_with_parent(signal.SIGTERM),
                )
            )
            self._started_at[name] = time.monotonic()

    def claim(self) -> None:
        """Take the data folder (an exclusive lock naming our pid) and check the ports are free.

        Raises RuntimeError naming what holds them: another `ragq up`, the children of one
        that died and are still stopping, or whatever listens on the API or Flower port.
        """
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        path = s.data_dir / LOCK_NAME
        claim = path.open("a+")
        try:
            fcntl.flock(claim, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            claim.seek(0)
            owner = claim.read().strip()
            claim.close()
            holders = [p for p in lock_holders(path) if p != os.getpid()]
            running = f"ragq up (pid {owner})" if owner else "another ragq up"
            if owner.isdigit() and int(owner) in holders:
                raise RuntimeError(
                    f"{running} is already running on {s.data_dir.resolve()}; "
                    "stop it first (Ctrl-C there, or kill it)"
                ) from None
            who = "; ".join(describe(p) for p in holders) or "unknown processes"
            raise RuntimeError(
                f"processes of an earlier {running} still hold {s.data_dir.resolve()} "
                f"(they are finishing their tasks, at most RAGQ_SHUTDOWN_GRACE_S): {who}"
            ) from None
        claim.truncate(0)
        claim.write(f"{os.getpid()}\n")
        claim.flush()
        self._claim = claim
        ports = [("the API", "RAGQ_API_PORT", s.api_port)]
        if s.flower_port:
            ports.append(("Flower", "RAGQ_FLOWER_PORT", s.flower_port))
        for what, setting, port in ports:
            holder = port_holder(s.api_host, port)
            if holder is not None:
                self.release()
                raise RuntimeError(
                    f"port {port} for {what} ({setting}) on {s.api_host} is in use by {holder}; "
                    f"stop it or set {setting}"
                )

    def release(self) -> None:
        """Give the data folder's lock back (our children hold it until they exit)."""
        if self._claim is not None:
            self._claim.close()
            self._claim = None

    def keep_alive(self) -> list[str]:
        """Restart the children that died (not those held), each after its backoff; their names.

        The dead child's process group is killed first, so a grandchild it left behind (vLLM's
        engine process) does not hold the memory or the port the new one needs. There is no
        backoff at a first death or after a minute's run; it grows with each quick death after
        that (1 s … 30 s).
        """
        restarted = []
        with self._lock:
            for name, child in list(self.children.items()):
                if name in self.held or child.poll() is None or self._stopping.is_set():
                    continue
                now = time.monotonic()
                if name not in self._due:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(child.pid, signal.SIGKILL)
                    if self._take_over(name):
                        self.restarts[name] = self.restarts.get(name, 0) + 1
                        restarted.append(name)
                        continue
                    quick = now - self._started_at.get(name, now) < STABLE_AFTER_S
                    streak = self._streak.get(name, 0) if quick else 0
                    self._streak[name] = streak + 1
                    delay = RESTART_BACKOFF_S[min(streak, len(RESTART_BACKOFF_S) - 1)]
                    self._due[name] = now + delay
                    print(
                        f"ragq: {name} exited with code {child.returncode}; "
                        f"restarting in {delay:g} s",
                        file=sys.stderr,
                    )
                if now >= self._due[name]:
                    del self._due[name]
                    command, env = self.commands[name]
                    self.start(name, command, **env)
                    self.restarts[name] = self.restarts.get(name, 0) + 1
                    restarted.append(name)
        return restarted

    def watch(self, every: float = 0.5) -> None:
        """Keep the children alive from a background thread until `stop`."""

        def loop() -> None:
            while not self._stopping.wait(every):
                self.keep_alive()

        self._watcher = threading.Thread(target=loop, name="ragq-supervisor", daemon=True)
        self._watcher.start()

    def stop_child(self, name: str) -> None:
        """Stop one child (SIGTERM, then its group) and keep it stopped until `resume`."""
        with self._lock:
            self.held.add(name)
            child = self.children[name]
        self._terminate([child])

    def resume(self, name: str) -> None:
        """Start a child stopped by `stop_child` again, with the same command."""
        with self._lock:
            self.held.discard(name)
            command, env = self.commands[name]
            self.start(name, command, **env)

    def start_all(self) -> str:
        """Start Redis (unless one is given), the workers and the API; the Redis URL."""
        s = self.settings
        self.claim()
        url = s.redis_url
        # Without RAGQ_REDIS_URL the Redis is the data folder's own, like the embedded vector
        # store: a Redis shared by two data folders would list documents one store lacks.
        own = "redis_url" not in s.model_fields_set or not redis_answers(url)
        if own:
            port = free_port()
            self.start("redis", redis_command(port, s.data_dir / "redis"))
            url = f"redis://127.0.0.1:{port}/0"
            self.env["RAGQ_REDIS_URL"] = url
            self._wait(lambda: redis_answers(url), 30, "redis")
        if not s.qdrant_url:
            claim_store(url, s.vector_path, own)
        self.ensure_api_key(url)
        # The embedded vector store belongs to one process: one CPU worker serves both queues,
        # and webhook deliveries (short I/O tasks) ride along on its thread pool.
        cpu = worker_command("cpu", list(CPU_WORKER_QUEUES), s.cpu_worker_concurrency)
        self.metrics = {"cpu-worker": free_port()}
        self.start("cpu-worker", cpu, RAGQ_METRICS_PORT=str(self.metrics["cpu-worker"]), **DRAIN)
        for n in range(1, s.llm_workers + 1):
            # Each its own hostname: a restarted one takes back its own predecessor's jobs.
            name, host = ("llm-worker", "llm") if n == 1 else (f"llm-worker-{n}", f"llm{n}")
            self.metrics[name] = free_port()
            self._start_llm(name, host)
        self.start("api", api_command(s))
        if s.flower_port:
            self.start("flower", flower_command(s))
        self.redis_url = url
        return url

    def _start_llm(self, name: str, host: str) -> None:
        """Start an llm worker (or, as STANDBY, the standby) under the Celery hostname `host`."""
        self.hosts[name] = host
        command, env = self._llm_command(name, host)
        self.start(name, command, **env)

    def _llm_command(self, name: str, host: str) -> tuple[list[str], dict[str, str]]:
        """The command and environment of the llm worker `name` under the hostname `host`."""
        command = worker_command(host, [LLM_QUEUE], self.settings.llm_worker_concurrency)
        role = {"RAGQ_STANDBY": "true"} if name == STANDBY else {}
        port = {"RAGQ_METRICS_PORT": str(self.metrics[name])} if name in self.metrics else {}
        if name not in self._engine_envs:
            # Started with their engine's OpenMP set-up, so the engine's processes are forked.
            # A standby's engine loads on the CPUs the serving engines leave, where it can (on
            # two cores, the other one): beside them, it made their answers twice as slow.
            serving = [env for place, env in self._engine_envs.items() if place != STANDBY]
            avoid = set().union(*map(bound_cpus, serving)) if name == STANDBY else set()
            self._engine_envs[name] = {**fork_env(self.env, avoid=avoid), **DRAIN}
        return command, {**self._engine_envs[name], **role, **port}

    def start_standby(self) -> None:
        """Start the standby llm worker (RAGQ_LLM_STANDBY; once the service is ready, so that its
        engine does not slow the others' start), under a hostname no llm worker has."""
        if STANDBY not in self.children:
            self._start_llm(STANDBY, f"llm{self.settings.llm_workers + 1}")

    def standing_by(self) -> bool:
        """Whether the standby has loaded and waits for a place (its log says so)."""
        try:
            text = (self.logs / f"{STANDBY}.log").read_text(errors="replace")
        except OSError:
            return False
        return STANDBY in self.children and STANDING_BY in text

    def _take_over(self, name: str) -> bool:
        """Put the standby in the place of the dead llm worker `name`, if a standby has loaded;
        start a new standby under the dead one's hostname. Whether it did.

        The standby re-enqueues the dead worker's jobs and serves its metrics port; its log
        becomes `name`'s, the dead one's is kept as `name.prev.log`. A standby that is still
        loading is not taken: one that cannot start would otherwise replace itself without end,
        past the restart backoff.
        """
        spare = self.children.get(STANDBY)
        if (
            name not in self.hosts
            or name == STANDBY
            or spare is None
            or spare.poll() is not None
            or spare.stdin is None
            or STANDBY in self.held
            or not self.standing_by()
        ):
            return False
        dead_host = self.hosts[name]
        takeover = Takeover(f"{dead_host}@%h", self.metrics.get(name, 0))
        try:
            spare.stdin.write(f"{takeover.line()}\n".encode())
            spare.stdin.close()
        except OSError:
            return False  # it died meanwhile: restarted as any other child
        logs = {n: self.logs / f"{n}.log" for n in (name, STANDBY)}
        with contextlib.suppress(OSError):
            logs[name].replace(self.logs / f"{name}.prev.log")
        with contextlib.suppress(OSError):
            logs[STANDBY].replace(logs[name])
        self.children[name] = self.children.pop(STANDBY)
        self.hosts[name] = self.hosts.pop(STANDBY)
        self._engine_envs[name] = self._engine_envs.pop(STANDBY)
        # How this place is started should it die with no standby: as a worker, under its new host.
        self.commands[name] = self._llm_command(name, self.hosts[name])
        self._started_at[name] = time.monotonic()
        print(f"ragq: {name} died; the standby llm worker took its place", file=sys.stderr)
        self._start_llm(STANDBY, dead_host)
        return True

    def ensure_api_key(self, redis_url: str) -> None:
        """Outside production, store the development key (tenant `default`) if it is missing
        and write it to the key file that `ragq` commands read."""
        if self.settings.environment == "production":
            return
        client = open_redis(redis_url)
        try:
            self.api_key, self.api_key_created = ensure_dev_key(
                client, self.settings.key_file, self.settings.dev_api_key
            )
        finally:
            client.close()

    def _wait(self, ready: object, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            if callable(ready) and ready():
                return
            time.sleep(0.5)
        raise RuntimeError(f"{what} was not ready within {timeout:.0f} s; see {self.logs}")

    def wait_ready(self, timeout: float, report: Callable[[str], None] | None = None) -> None:
        """Block until /readyz says every queue has a worker; `report` hears each new state."""
        started = time.monotonic()
        last = ""

        def ready() -> bool:
            nonlocal last
            checks: dict[str, Any] | None = None
            try:
                with Client(self.settings.base_url, "", timeout=2, retry=NO_RETRY) as http:
                    health = http.health()
                checks, ok = health.checks, health.status == "ready"
            except RagqError:
                ok = False
            state = readiness(checks, {} if ok else self._steps())
            if report is not None and state != last:
                report(f"{time.monotonic() - started:5.1f} s  {state}")
                last = state
            return ok

        self._wait(ready, timeout, "the service")

    def _steps(self) -> dict[str, str]:
        """What each starting worker is doing, by queue; empty if Redis does not say."""
        client = redis.Redis.from_url(
            self.redis_url or self.settings.redis_url, socket_timeout=1, decode_responses=True
        )
        try:
            return starting_steps(client)
        except redis.RedisError:
            return {}
        finally:
            client.close()

    def check(self) -> None:
        """Raise if a child has exited, with the end of its log."""
        for name, child in self.children.items():
            if child.poll() is not None:
                log = self.logs / f"{name}.log"
                raise RuntimeError(
                    f"{name} exited with code {child.returncode}; the end of {log}:\n"
                    + relevant_lines(log)
                )

    def stop(self) -> None:
        """Stop the API first, then the workers (they finish their tasks), then Redis.

        Each child leads its own process group; the group is killed at the end so that
        grandchildren (vLLM's engine process) never outlive their worker.
        """
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join()
        front = ["api", "flower"]
        workers = [n for n in self.children if n not in front and n != "redis"]
        for stage in (front, workers, ["redis"]):
            self._terminate([self.children[n] for n in stage if n in self.children])
        self.release()

    def _terminate(self, children: list[subprocess.Popen[bytes]]) -> None:
        """SIGTERM the children together, wait for them (workers drain), then kill the groups."""
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        # The workers' soft shutdown lasts up to the grace period; then they requeue and exit.
        deadline = time.monotonic() + self.settings.shutdown_grace_s + STOP_MARGIN_S
        for child in children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(max(0.0, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()


def relevant_lines(path: Path, lines: int = 15, most: int = 40) -> str:
    """What explains a child's exit: its last traceback (at most `most` lines from its end),
    else its last `lines` lines."""
    text = path.read_text(errors="replace").splitlines() if path.exists() else []
    starts = [n for n, line in enumerate(text) if line.startswith("Traceback (most recent")]
    if starts and len(text) - starts[-1] <= most:
        return "\n".join(text[starts[-1] :])
    return "\n".join(text[-lines:])


def _tail(path: Path, lines: int = 60) -> str:
    text = path.read_text(errors="replace").splitlines() if path.exists() else []
    return "\n".join(text[-lines:])


@contextmanager
def running(settings: Settings, env: dict[str, str], timeout: float = 600) -> Iterator[Supervisor]:
    """The whole service, started with these settings and environment, until the block ends.

    If it does not come up, the tail of every child's log is printed.
    """
    logs = settings.data_dir / "logs"
    supervisor = Supervisor(settings, logs, env)
    try:
        supervisor.redis_url = supervisor.start_all()
        supervisor.wait_ready(timeout)
        if settings.llm_standby:
            supervisor.start_standby()
    except RuntimeError:
        supervisor.stop()
        for log in sorted(logs.glob("*.log")):
            print(f"----- {log.name}\n{_tail(log)}", file=sys.stderr)
        raise
    supervisor.watch()
    try:
        yield supervisor
    finally:
        supervisor.stop()
