"""Start the API: uvicorn with RAGQ_API_PROCESSES processes on one port.

`ragq up`, the container image and the Kubernetes manifests start the API this way. One
process serves about one core's worth of requests, so two is the default. With more than one,
each counts its metrics in files of a folder made for this run (Prometheus multiprocess mode)
and `/metrics` adds them up whichever process answers; the folder is removed when uvicorn stops.

    python -m api.serve [--host H] [--port P] [--timeout-graceful-shutdown S]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from common.settings import get_settings

APP = "api.main:create_app"
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"


def serve(config: uvicorn.Config) -> int:
    """Run uvicorn's processes until they stop; the exit status (3 if one could not start).

    uvicorn's own command exits 0 when a worker process fails to start (its app's start-up
    raised): a supervisor could not tell that from a stop it asked for.
    """
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    supervisor.run()
    failed = any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes)
    return STARTUP_FAILURE if failed else 0


def main(args: list[str] | None = None) -> None:
    """Serve the API with the configured host, port and number of processes."""
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m api.serve", description=__doc__)
    parser.add_argument("--host", default=settings.api_host)
    parser.add_argument("--port", type=int, default=settings.api_port)
    parser.add_argument("--timeout-graceful-shutdown", type=int, default=None)
    options = parser.parse_args(args)
    address = {"host": options.host, "port": options.port}
    shutdown = {"timeout_graceful_shutdown": options.timeout_graceful_shutdown}
    processes = settings.api_processes
    if processes == 1:
        uvicorn.run(APP, factory=True, **address, **shutdown)
        return
    made = None
    if not os.environ.get(MULTIPROCESS_DIR):
        # Read by prometheus_client as each process imports it: set before they start.
        made = os.environ[MULTIPROCESS_DIR] = tempfile.mkdtemp(prefix="ragq-api-metrics-")
    try:
        config = uvicorn.Config(APP, factory=True, workers=processes, **address, **shutdown)
        status = serve(config)
    finally:
        if made:
            shutil.rmtree(made, ignore_errors=True)
    sys.exit(status)


if __name__ == "__main__":
    main()
