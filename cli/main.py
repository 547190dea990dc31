"""The `ragq` command: run the service, and talk to it."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click
import redis
from rich.console import Console

from cli import runtime
from common.settings import get_settings

if TYPE_CHECKING:
    from cli.supervisor import Supervisor
    from common.quotas import Quotas
    from ragq_client import Client

console = Console(stderr=True)


@click.group()
def main() -> None:
    """ragq: asynchronous retrieval-augmented question answering."""


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


@main.command()
@click.option("--timeout", default=600.0, show_default=True, help="Seconds to wait for readiness.")
def up(timeout: float) -> None:
    """Start Redis (the data folder's own unless RAGQ_REDIS_URL is set), the workers and the API;
    Ctrl-C stops them all."""
    from cli.supervisor import Supervisor
    from common.models import convert_default_llm, default_llm_dir

    settings = get_settings()
    code = 0
    if not settings.llm_model and not default_llm_dir(settings).exists():
        console.print("preparing the default language model (once)…")
        convert_default_llm(settings)
    # SIGTERM (a process manager, `kill`) stops the children like Ctrl-C does; and Ctrl-C (SIGINT)
    # does so even where `ragq up` was started with SIGINT ignored, as a script's background job is.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    logs = settings.data_dir / "logs"
    supervisor = Supervisor(settings, logs)
    announced = runtime.runtime_path(settings)
    try:
        redis_url = supervisor.start_all()
        console.print("starting the workers and the API; each part's state as it changes:")
        supervisor.wait_ready(timeout, report=_show_state)
        if settings.llm_standby:
            supervisor.start_standby()
        flower = (
            f"http://{settings.api_host}:{settings.flower_port}" if settings.flower_port else ""
        )
        runtime.write(
            announced,
            runtime.Runtime(
                pid=os.getpid(),
                api_url=settings.base_url,
                redis_url=redis_url,
                flower_url=flower,
                key_file=str(settings.key_file.resolve()),
                data_dir=str(settings.data_dir.resolve()),
                logs=str(logs.resolve()),
            ),
        )
        console.print(
            f"[green]ragq is up[/green]\n"
            f"  API       {settings.base_url}  (docs: {settings.base_url}/docs)\n"
            f"  console   {settings.base_url}/console/  (sign in with the API key)\n"
            f"  API key   {_shown_key(supervisor)}\n"
            f"  Redis     {redis_url}\n"
            f"  vectors   {settings.qdrant_url or settings.vector_path.resolve()}\n"
            f"  Flower    http://{settings.api_host}:{settings.flower_port}  "
            f"(basic auth: RAGQ_FLOWER_BASIC_AUTH)\n"
            f"  metrics   {settings.base_url}/metrics, "
            + ", ".join(f"{n} :{p}/metrics" for n, p in supervisor.metrics.items())
            + "\n"
            f"  logs      {logs.resolve()}\n"
            f"  runtime   {announced}  (how `ragq` commands in any folder find this service)\n"
            f'try: ragq ingest samples/ && ragq ask "When was the Harrow Point lighthouse built?"\n'
            f"Ctrl-C (or `ragq down`) stops everything; `ragq status` shows its health."
        )
        supervisor.watch()
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        console.print("stopping…")
    except RuntimeError as exc:
        console.print(f"[red]{exc}")
        code = 1
    finally:
        runtime.remove(announced, os.getpid())
        supervisor.stop()
    sys.exit(code)


@main.command()
def status() -> None:
    """Show where the running `ragq up` is and whether it is ready (exit 1 if not)."""
    settings = get_settings()
    target = runtime.resolve(settings)
    found = target.runtime
    where = runtime.runtime_path(settings)
    if found is None:
        console.print(f"no running `ragq up` announced in {where}")
    else:
        click.echo(f"ragq up   pid {found.pid}, data {found.data_dir}, logs {found.logs}")
    click.echo(f"API       {target.api_url}")
    click.echo(f"Redis     {target.redis_url}")
    if found is not None and found.flower_url:
        click.echo(f"Flower    {found.flower_url}")
    from ragq_client import NO_RETRY, Client, RagqError

    try:
        with Client(target.api_url, "", timeout=5, retry=NO_RETRY) as http:
            health = http.health()
    except RagqError as exc:
        click.echo(f"ready     no: {exc}")
        sys.exit(1)
    ready = health.status == "ready"
    checks = health.checks
    workers = ", ".join(
        f"{q} {'ok' if up else 'none'}" for q, up in checks.get("workers", {}).items()
    )
    click.echo(f"ready     {'yes' if ready else 'no'}")
    click.echo(f"  redis   {checks.get('redis', '?')}")
    if workers:
        click.echo(f"  workers {workers}")
    sys.exit(0 if ready else 1)


@main.command()
@click.option("--timeout", default=400.0, show_default=True, help="Seconds to wait for it to stop.")
def down(timeout: float) -> None:
    """Stop the running `ragq up` (as Ctrl-C would: running tasks drain first)."""
    settings = get_settings()
    where = runtime.runtime_path(settings)
    found = runtime.read(where)
    if found is None:
        raise click.ClickException(f"no running `ragq up` announced in {where}")
    console.print(f"stopping ragq up (pid {found.pid}); running tasks drain first…")
    os.kill(found.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while runtime.alive(found.pid):
        if time.monotonic() > deadline:
            raise click.ClickException(f"ragq up (pid {found.pid}) is still stopping")
        time.sleep(0.2)
    console.print("stopped")


def _show_state(state: str) -> None:
    console.print(f"  {state}", soft_wrap=True)


def _shown_key(supervisor: Supervisor) -> str:
    if not supervisor.api_key:
        return "production mode: keys from `ragq keys create --tenant T`"
    state = "created now" if supervisor.api_key_created else "existing"
    return (
        f"{supervisor.api_key}  (development key, {state}, tenant default; "
        f"in {supervisor.settings.key_file} for ragq commands)"
    )


@main.group()
def keys() -> None:
    """Create, list and revoke API keys (stored in Redis as SHA-256 hashes only)."""


def _service_redis() -> redis.Redis:
    """The Redis of the running service (or RAGQ_REDIS_URL), for the operator commands."""
    from common.apikeys import open_redis

    settings = get_settings()
    target = runtime.resolve(settings)
    if target.runtime is None and "redis_url" not in settings.model_fields_set:
        raise click.ClickException(
            "no running `ragq up`, whose Redis holds the keys and quotas: start it first, "
            "or set RAGQ_REDIS_URL to the Redis the service uses"
        )
    return open_redis(target.redis_url)


@keys.command("create")
@click.option("--tenant", required=True, help="The tenant the key acts for.")
@click.option(
    "--groups",
    default="",
    help="Access groups the key reads, comma-separated (hr,eng): besides the tenant's "
    "ungrouped documents, it reads those of one of these groups.",
)
@click.option("--admin", is_flag=True, help="A tenant admin key: it reads every document.")
def keys_create(tenant: str, groups: str, admin: bool) -> None:
    """Create a key for a tenant and print it (the only time it is shown)."""
    from common.apikeys import check_tenant, create_key

    names = [name.strip() for name in groups.split(",") if name.strip()]
    if admin and names:
        raise click.BadParameter(
            "an admin key reads every group; give no --groups", param_hint="--admin"
        )
    try:
        check_tenant(tenant)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--tenant") from exc
    try:
        key, info = create_key(_service_redis(), tenant, admin=admin, groups=names)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--groups") from exc
    except redis.RedisError as exc:
        raise click.ClickException(f"cannot reach Redis: {exc}") from exc
    reads = "every document" if info.admin else f"groups: {', '.join(info.groups) or 'none'}"
    console.print(f"created {info.key_id} for tenant {info.tenant} ({reads}); store the key now:")
    click.echo(key)


@keys.command("list")
def keys_list() -> None:
    """List the keys: id, tenant, creation time, access (never the keys themselves)."""
    from common.apikeys import list_keys

    try:
        found = list_keys(_service_redis())
    except redis.RedisError as exc:
        raise click.ClickException(f"cannot reach Redis: {exc}") from exc
    for info in found:
        dev = "\tdevelopment" if info.dev else ""
        reads = "admin" if info.admin else f"groups={','.join(info.groups)}"
        click.echo(f"{info.key_id}\t{info.tenant}\t{info.created_at}\t{reads}{dev}")


@keys.command("revoke")
@click.argument("key_or_id")
def keys_revoke(key_or_id: str) -> None:
    """Revoke a key, given as itself or by its id (key_…); it stops working at once."""
    from common.apikeys import revoke_key

    try:
        info = revoke_key(_service_redis(), key_or_id)
    except redis.RedisError as exc:
        raise click.ClickException(f"cannot reach Redis: {exc}") from exc
    if info is None:
        raise click.ClickException(f"no key {key_or_id}")
    console.print(f"revoked {info.key_id} of tenant {info.tenant}")


@main.group()
def tenants() -> None:
    """Operator commands: a tenant's quotas (stored in Redis; the API holds requests to them)."""


def _quota(value: str) -> int | None:
    return None if value == "none" else int(value)


@tenants.command("set-quota")
@click.argument("tenant")
@click.option("--tokens-per-month", help="Prompt and completion tokens per UTC month, or none.")
@click.option("--documents", help="Documents stored, or none.")
@click.option("--chunks", help="Chunks stored, or none.")
def tenants_set_quota(
    tenant: str, tokens_per_month: str | None, documents: str | None, chunks: str | None
) -> None:
    """Set or remove (`none`) a tenant's quotas; the ones not given stay as they are."""
    from common import quotas

    given = {"tokens_per_month": tokens_per_month, "documents": documents, "chunks": chunks}
    try:
        changes = {name: _quota(v) for name, v in given.items() if v is not None}
        if not changes:
            raise click.UsageError("give --tokens-per-month, --documents or --chunks")
        now = quotas.update(_service_redis(), tenant, changes)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    except redis.RedisError as exc:
        raise click.ClickException(f"cannot reach Redis: {exc}") from exc
    _show_quotas(tenant, now)


@tenants.command("show")
@click.argument("tenant")
def tenants_show(tenant: str) -> None:
    """A tenant's quotas and what it uses against each now."""
    from common import quotas

    try:
        _show_quotas(tenant, quotas.read(_service_redis(), tenant))
    except redis.RedisError as exc:
        raise click.ClickException(f"cannot reach Redis: {exc}") from exc


def _show_quotas(tenant: str, limits: Quotas) -> None:
    from common import quotas, usage

    month = quotas.month_of(usage.today())
    used = quotas.standing(_service_redis(), tenant, month)
    click.echo(f"tenant {tenant} (tokens counted for {month}, UTC)")
    for name in quotas.NAMES:
        limit = getattr(limits, name)
        click.echo(
            f"  {name:<17} {used[name]:>12} used of {'unlimited' if limit is None else limit}"
        )


@main.command()
def flower() -> None:
    """Start Flower alone (basic auth from RAGQ_FLOWER_BASIC_AUTH) on RAGQ_FLOWER_PORT."""
    from cli.commands import flower_command

    os.execv(sys.executable, flower_command(get_settings()))


@main.command("convert-model")
@click.option("--force", is_flag=True, help="Convert again even if the folder exists.")
def convert_model(force: bool) -> None:
    """Convert the packaged SmolLM2 GGUF to the safetensors folder vLLM loads."""
    from common.models import convert_default_llm

    click.echo(convert_default_llm(get_settings(), force=force))


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--include", multiple=True, help="Only files in folders matching this glob.")
@click.option("--exclude", multiple=True, help="Leave out files in folders matching this glob.")
def ingest(paths: tuple[Path, ...], include: tuple[str, ...], exclude: tuple[str, ...]) -> None:
    """Ingest files and folders (text, Markdown, HTML, PDF), then report every file's outcome.

    Exit status 1 if any file failed (a skipped file is reported, not failed).
    """
    from cli import client

    limit = get_settings().max_upload_bytes

    def run(http: Client) -> int:
        failed = client.ingest(http, paths, max_bytes=limit, include=include, exclude=exclude)
        return 1 if failed else 0

    _exit_with(run)


@main.command()
@click.argument("document_ids", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Re-index every ready document.")
def reindex(document_ids: tuple[str, ...], everything: bool) -> None:
    """Re-embed stored chunks (after a model or index change), with a progress bar."""
    if everything == bool(document_ids):
        raise click.UsageError("give either document ids or --all")
    from cli import client

    _exit_with(lambda http: 1 if client.reindex(http, document_ids) else 0)


@main.command()
@click.argument("question")
@click.option("--top-k", default=5, show_default=True, help="Passages to retrieve.")
@click.option(
    "--mode",
    type=click.Choice(["hybrid", "dense", "sparse"]),
    default=None,
    help="How passages are retrieved (default: the server's RAGQ_SEARCH_MODE).",
)
@click.option(
    "--quote/--no-quote",
    default=None,
    help="Open the answer with the passage sentence that answers it, quoted word for word, "
    "and write it from the passages it may quote (default: the server's RAGQ_ANSWER_QUOTE, on).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the final job record as JSON on stdout instead of streaming (for scripts).",
)
def ask(question: str, top_k: int, mode: str | None, quote: bool | None, as_json: bool) -> None:
    """Ask a question; the answer streams, then its numbered sources (all on stdout)."""
    from cli import client

    _exit_with(lambda http: client.ask(http, question, top_k, mode, as_json=as_json, quote=quote))


@main.command()
@click.option(
    "--from",
    "start",
    default=None,
    help="First UTC day, YYYY-MM-DD (default: 29 days before --to).",
)
@click.option("--to", "end", default=None, help="Last UTC day (default: today).")
@click.option(
    "--by", "group_by", type=click.Choice(["day", "key"]), default="day", show_default=True
)
def usage(start: str | None, end: str | None, group_by: str) -> None:
    """Show your tenant's usage: answers, tokens, searches, documents, webhooks, by day or key."""
    from cli import client

    _exit_with(lambda http: client.usage(http, start, end, group_by))


def _exit_with(action: Callable[[Client], int]) -> NoReturn:
    """Run a client action against the API and exit with its code; errors as one clear line."""
    from ragq_client import Client, ConnectionFailed, RagqError

    target = runtime.resolve(get_settings())
    if not target.key:
        raise click.ClickException(
            f"no API key: looked in {', '.join(target.tried)}; "
            "run `ragq up` (it writes a development key) or set RAGQ_API_KEY"
        )
    try:
        with Client(target.api_url, target.key, timeout=120) as http:
            code = action(http)
    except ConnectionFailed as exc:
        hint = "" if target.runtime else "; is `ragq up` running? (`ragq status`)"
        raise click.ClickException(f"{exc}{hint}") from exc
    except (RagqError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    sys.exit(code)
