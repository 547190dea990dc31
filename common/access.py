"""Access groups: which of its tenant's documents an API key may read.

A document has a list of group names (none: ungrouped). A key is a tenant admin, which reads all
of its tenant's documents, or has groups of its own: it reads the ungrouped documents and those
that share at least one group with it. Keys stored before groups existed, and the development
key, are admins (they read everything before).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

# The registry field, payload field and job record field that hold a list of group names.
ACCESS_GROUPS = "access_groups"
# The job record field that says the job's key is a tenant admin ('1'/'0').
ACCESS_ADMIN = "access_admin"
# The job record field of the API key that created the job.
KEY_ID = "key_id"
GROUP_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_GROUPS = 32


def check_groups(groups: Iterable[str]) -> list[str]:
    """The group names sorted and without repeats; ValueError for a bad name or too many."""
    found = sorted(set(groups))
    for name in found:
        if not isinstance(name, str) or not GROUP_PATTERN.match(name):
            raise ValueError(
                f"group {name!r}: a group is 1-64 characters of letters, digits, '_', '.' or '-'"
            )
    if len(found) > MAX_GROUPS:
        raise ValueError(f"at most {MAX_GROUPS} groups, not {len(found)}")
    return found


def dumps_groups(groups: Sequence[str]) -> str:
    """Group names as the registry and job records store them (a JSON list)."""
    return json.dumps(list(groups))


def loads_groups(raw: str | None) -> list[str]:
    """Group names from a registry or job field (missing or empty: none)."""
    return list(json.loads(raw)) if raw else []


@dataclass(frozen=True)
class Access:
    """What one API key may read within its tenant."""

    admin: bool
    groups: tuple[str, ...] = ()
    # The key's id (key_…), which the work it asks for is counted under (common/usage.py).
    key_id: str = ""

    def sees(self, document_groups: Sequence[str]) -> bool:
        """Whether the key reads a document with these groups."""
        return self.admin or not document_groups or bool(set(document_groups) & set(self.groups))

    def may_assign(self, groups: Sequence[str]) -> bool:
        """Whether the key may give a document these groups (an admin any, others their own)."""
        return self.admin or set(groups) <= set(self.groups)

    @property
    def search_groups(self) -> list[str] | None:
        """The groups a vector search admits besides ungrouped chunks (None: every chunk)."""
        return None if self.admin else list(self.groups)

    def fields(self) -> dict[str, str]:
        """The job record fields that carry this access to the workers."""
        return {
            ACCESS_ADMIN: "1" if self.admin else "0",
            ACCESS_GROUPS: dumps_groups(self.groups),
            KEY_ID: self.key_id,
        }

    def scope(self, tenant: str) -> str:
        """The tenant, narrowed to this access: what idempotency keys are stored under."""
        return tenant if self.admin else f"{tenant}~{','.join(self.groups)}"

    @classmethod
    def from_fields(cls, raw: Mapping[str, str]) -> Access:
        """The access a job record carries; a record from before groups is an admin's."""
        key_id = raw.get(KEY_ID, "")
        if raw.get(ACCESS_ADMIN, "1") == "1":
            return cls(True, key_id=key_id)
        return cls(False, tuple(loads_groups(raw.get(ACCESS_GROUPS))), key_id)


ADMIN = Access(admin=True)
