"""API keys: `rq_…` bearer tokens mapped to tenants; Redis stores only their SHA-256.

Layout: `ragq:apikey:<sha256>` is a hash {id, tenant, created_at, dev, admin, groups} (groups
comma-separated; a hash without `admin` is from before access groups: an admin's); the set
`ragq:apikeys` holds every stored hash (for listing, counting and revoking by id). The API
reads with `redis.asyncio`, the CLI and the supervisor write with the sync client; both clients
decode responses.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import redis

from common.access import Access, check_groups
from common.clock import now_iso
from common.keys import APIKEY_INDEX_KEY, apikey_key

KEY_PREFIX = "rq_"
ID_PREFIX = "key_"
DEFAULT_TENANT = "default"
TENANT_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass(frozen=True)
class KeyInfo:
    """What is stored about a key (never the key itself)."""

    key_id: str
    tenant: str
    created_at: str
    dev: bool
    admin: bool = True
    groups: tuple[str, ...] = ()

    @property
    def access(self) -> Access:
        """What the key may read within its tenant."""
        return Access(self.admin, () if self.admin else self.groups)


def new_key() -> str:
    """A fresh random key."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    """The SHA-256 (hex) under which a key is stored."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_id(digest: str) -> str:
    """The public id of a key: a prefix of its hash, safe to print and log."""
    return ID_PREFIX + digest[:12]


def check_tenant(tenant: str) -> str:
    """The tenant name if it is usable in keys and payloads, else ValueError."""
    if not TENANT_PATTERN.match(tenant):
        raise ValueError("a tenant is 1-64 characters of letters, digits, '.', '_' or '-'")
    return tenant


def _info(digest: str, raw: dict[str, str]) -> KeyInfo:
    return KeyInfo(
        raw.get("id") or key_id(digest),
        raw["tenant"],
        raw.get("created_at", ""),
        raw.get("dev") == "1",
        raw.get("admin", "1") == "1" or raw.get("dev") == "1",
        tuple(g for g in raw.get("groups", "").split(",") if g),
    )


def store_key(
    client: redis.Redis,
    tenant: str,
    key: str,
    *,
    dev: bool = False,
    admin: bool = False,
    groups: Iterable[str] = (),
) -> KeyInfo:
    """Store a key's hash for the tenant (replacing what that hash had); its description.

    The development key is an admin; ValueError for a bad tenant or group name."""
    if not key.startswith(KEY_PREFIX) or len(key) < len(KEY_PREFIX) + 16:
        raise ValueError(
            f"an API key starts with {KEY_PREFIX!r} and has at least 16 more characters"
        )
    digest = key_hash(key)
    fields = {
        "id": key_id(digest),
        "tenant": check_tenant(tenant),
        "created_at": now_iso(),
        "dev": "1" if dev else "0",
        "admin": "1" if admin or dev else "0",
        "groups": ",".join(check_groups(groups)),
    }
    with client.pipeline(transaction=True) as pipe:
        pipe.hset(apikey_key(digest), mapping=fields)
        pipe.sadd(APIKEY_INDEX_KEY, digest)
        pipe.execute()
    return _info(digest, fields)


def create_key(
    client: redis.Redis,
    tenant: str,
    *,
    dev: bool = False,
    admin: bool = False,
    groups: Iterable[str] = (),
) -> tuple[str, KeyInfo]:
    """A new key for the tenant, stored as its hash; (the key, shown once, and its description).

    A non-admin key reads the tenant's ungrouped documents and those of its `groups`."""
    key = new_key()
    return key, store_key(client, tenant, key, dev=dev, admin=admin, groups=groups)


def list_keys(client: redis.Redis) -> list[KeyInfo]:
    """Every stored key, oldest first."""
    found = []
    for digest in client.smembers(APIKEY_INDEX_KEY):  # type: ignore[union-attr]
        raw: dict[str, str] = client.hgetall(apikey_key(digest))  # type: ignore[assignment]
        if raw:
            found.append(_info(digest, raw))
    return sorted(found, key=lambda info: info.created_at)


def revoke_key(client: redis.Redis, key_or_id: str) -> KeyInfo | None:
    """Delete a key given as itself or by its id; its description, or None if unknown."""
    if key_or_id.startswith(KEY_PREFIX):
        digests = [key_hash(key_or_id)]
    else:
        members: set[str] = client.smembers(APIKEY_INDEX_KEY)  # type: ignore[assignment]
        digests = [d for d in members if key_id(d) == key_or_id]
    for digest in digests:
        info = next((i for i in list_keys(client) if i.key_id == key_id(digest)), None)
        with client.pipeline(transaction=True) as pipe:
            pipe.delete(apikey_key(digest))
            pipe.srem(APIKEY_INDEX_KEY, digest)
            pipe.execute()
        if info is not None:
            return info
    return None


def open_redis(url: str) -> redis.Redis:
    """A sync client with decoded responses, as the functions here expect."""
    return redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=5)


def key_is_stored(client: redis.Redis, key: str) -> bool:
    """Whether the key (its hash) is stored."""
    return bool(client.exists(apikey_key(key_hash(key))))


def ensure_dev_key(client: redis.Redis, key_file: Path, preset: str = "") -> tuple[str, bool]:
    """The development key of tenant `default`; (the key, whether it was created just now).

    `preset` (RAGQ_DEV_API_KEY) is used as the key when given; otherwise the key in `key_file`
    if it is still stored; otherwise a new one (a revoked key stays revoked). The key is
    written to `key_file` (mode 0600) so that `ragq` commands find it.
    """
    key = preset or (key_file.read_text().strip() if key_file.exists() else "")
    created = not key or not key_is_stored(client, key)
    if created and not preset:
        key = new_key()  # never bring back a key from the file that was revoked
    if created:
        store_key(client, DEFAULT_TENANT, key, dev=True)
    if not key_file.exists() or key_file.read_text().strip() != key:
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.touch(mode=0o600)
        key_file.write_text(key + "\n")
    return key, created


def production_problem(client: redis.Redis) -> str | None:
    """Why production mode must not start with these stored keys (none, or a dev key), or None."""
    keys = list_keys(client)
    if not keys:
        return "production mode needs an API key: create one with `ragq keys create --tenant T`"
    dev = [info.key_id for info in keys if info.dev]
    if dev:
        return (
            f"production mode refuses the development key ({', '.join(dev)}): "
            "revoke it with `ragq keys revoke ID`"
        )
    return None
