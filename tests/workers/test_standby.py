"""The standby's hand-over line, as the supervisor writes it and the standby reads it."""

from __future__ import annotations

import io
import socket

import pytest

from workers.standby import Takeover, wait_for_takeover


def test_the_standby_reads_the_line_the_supervisor_writes_with_the_hostname_expanded() -> None:
    line = Takeover("llm@%h", 9102).line()
    takeover = wait_for_takeover(io.StringIO(f"{line}\n"))
    assert takeover == Takeover(f"llm@{socket.gethostname()}", 9102)


def test_a_closed_pipe_ends_the_standby() -> None:
    with pytest.raises(SystemExit):
        wait_for_takeover(io.StringIO(""))
