"""The `ragq` command: run the service, and talk to it."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import click
import httpx
from rich.console import Console

from cli import client
from common.settings import get_settings

console = Console(stderr=True)


@click.group()
def main() -> None:
    """ragq: asynchronous retrieval-augmented question answering."""


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


@main.command()
@click.option("--timeout", default=600.0, show_default=True, help="Seconds to wait for readiness.")
def up(timeout: float) -> None:
    """Start Redis (if none answers), the workers and the API; Ctrl-C stops them all."""
    from cli.supervisor import Supervisor
    from common.models import convert_default_llm, default_llm_dir

    settings = get_settings()
    code = 0
    if not settings.llm_model and not default_llm_dir(settings).exists():
        console.print("preparing the default language model (once)…")
        convert_default_llm(settings)
    # SIGTERM (a process manager, `kill`) stops the children like Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    logs = settings.data_dir / "logs"
    supervisor = Supervisor(settings, logs)
    try:
        redis_url = supervisor.start_all()
        console.print("starting workers and loading models (the first start compiles vLLM)…")
        supervisor.wait_ready(timeout)
        console.print(
            f"[green]ragq is up[/green]\n"
            f"  API       {settings.base_url}  (docs: {settings.base_url}/docs)\n"
            f"  Redis     {redis_url}\n"
            f"  vectors   {settings.qdrant_url or settings.vector_path.resolve()}\n"
            f"  Flower    http://{settings.api_host}:{settings.flower_port}  "
            f"(basic auth: RAGQ_FLOWER_BASIC_AUTH)\n"
            f"  metrics   {settings.base_url}/metrics, "
            + ", ".join(f"{n} :{p}/metrics" for n, p in supervisor.metrics.items())
            + "\n"
            f"  logs      {logs.resolve()}\n"
            f'try: ragq ingest README.md && ragq ask "How do I run the tests?"\n'
            f"Ctrl-C stops everything."
        )
        while True:
            supervisor.check()
            time.sleep(1)
    except KeyboardInterrupt:
        console.print("stopping…")
    except RuntimeError as exc:
        console.print(f"[red]{exc}")
        code = 1
    finally:
        supervisor.stop()
    sys.exit(code)


@main.command()
def flower() -> None:
    """Start Flower alone (basic auth from RAGQ_FLOWER_BASIC_AUTH) on RAGQ_FLOWER_PORT."""
    from cli.supervisor import flower_command

    os.execv(sys.executable, flower_command(get_settings()))


@main.command("convert-model")
@click.option("--force", is_flag=True, help="Convert again even if the folder exists.")
def convert_model(force: bool) -> None:
    """Convert the packaged SmolLM2 GGUF to the safetensors folder vLLM loads."""
    from common.models import convert_default_llm

    click.echo(convert_default_llm(get_settings(), force=force))


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def ingest(paths: tuple[Path, ...]) -> None:
    """Ingest files and folders (text, Markdown, HTML, PDF), with a progress bar."""
    try:
        failed = client.ingest(get_settings().base_url, paths)
    except (client.ClientError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    except httpx.TransportError as exc:
        raise click.ClickException(
            f"cannot reach the API at {get_settings().base_url}: {exc}"
        ) from exc
    sys.exit(1 if failed else 0)


@main.command()
@click.argument("question")
@click.option("--top-k", default=5, show_default=True, help="Passages to retrieve.")
def ask(question: str, top_k: int) -> None:
    """Ask a question; the answer streams, then its numbered sources."""
    try:
        code = client.ask(get_settings().base_url, question, top_k)
    except client.ClientError as exc:
        raise click.ClickException(str(exc)) from exc
    except httpx.TransportError as exc:
        raise click.ClickException(
            f"cannot reach the API at {get_settings().base_url}: {exc}"
        ) from exc
    sys.exit(code)
