"""The repository stands alone: nothing it tracks points outside it (a `../shared` folder)."""

from __future__ import annotations

import re

from tests.ops.support import REPO, repository_files

# A path into a folder beside the checkout, which whoever clones the repository does not have.
OUTSIDE = re.compile(r"\.\./shared|shared/data|parent\s*/\s*\"shared\"")


def test_nothing_points_outside_the_repository() -> None:
    """No README, document, script or module names a path outside the checkout."""
    found = []
    for name in repository_files():
        path = REPO / name
        if path.name == "test_standalone.py" or not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        found += [
            f"{name}:{n}: {line.strip()}"
            for n, line in enumerate(text.splitlines(), 1)
            if OUTSIDE.search(line)
        ]
    assert not found, "\n".join(found)
