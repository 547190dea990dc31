"""Parse PDFs in a child process under a time limit and a memory bound.

A decompression bomb or a pathological PDF then fails its job with `document_too_complex`
instead of taking the worker's memory or threads. The child sets its own limits (RLIMIT_AS,
RLIMIT_CPU) before reading the PDF, so the worker's threads are never forked with a preexec
hook; the parent also kills it at the wall-clock limit.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from dataclasses import dataclass

from pypdf.errors import LimitReachedError

from common.parsing import ParsedDocument, ParseError, Section, _parse_pdf

MIB = 1024 * 1024


@dataclass(frozen=True)
class PdfLimits:
    """How long and how much memory (address space) one PDF may take to parse."""

    timeout_s: float
    memory_mib: int

    def __call__(self, data: bytes) -> ParsedDocument:
        """Parse the PDF in a bounded child process; ParseError on failure or over a limit."""
        command = [
            sys.executable, "-m", "common.pdf_sandbox",
            str(self.memory_mib * MIB), str(int(self.timeout_s) + 1),
        ]  # fmt: skip
        try:
            done = subprocess.run(
                command, input=data, capture_output=True, timeout=self.timeout_s, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise ParseError(
                "document_too_complex", f"the PDF took longer than {self.timeout_s:g} s to parse"
            ) from exc
        if done.returncode != 0 or not done.stdout:
            raise ParseError(
                "document_too_complex",
                f"parsing the PDF exceeded its limits ({self.memory_mib} MiB, "
                f"{self.timeout_s:g} s; exit status {done.returncode})",
            )
        reply = json.loads(done.stdout)
        if "error" in reply:
            raise ParseError(reply["error"]["code"], reply["error"]["message"])
        sections = [Section(s["text"], s["page"]) for s in reply["sections"]]
        return ParsedDocument("pdf", reply["title"], sections)


def _child(memory_bytes: int, cpu_s: int) -> int:
    """Limit this process, parse the PDF on stdin, write the sections (or the error) as JSON."""
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
    data = sys.stdin.buffer.read()
    try:
        parsed = _parse_pdf(data)
        sections = [{"text": s.text, "page": s.page} for s in parsed.sections]
        reply: dict[str, object] = {"title": parsed.title, "sections": sections}
    except ParseError as exc:
        cause = exc.__cause__
        if isinstance(cause, MemoryError):
            return 3
        code = "document_too_complex" if isinstance(cause, LimitReachedError) else exc.code
        reply = {"error": {"code": code, "message": str(exc)}}
    except MemoryError:
        return 3
    sys.stdout.write(json.dumps(reply))
    return 0


if __name__ == "__main__":
    sys.exit(_child(int(sys.argv[1]), int(sys.argv[2])))
