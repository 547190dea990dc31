"""Webhooks shared by the API and the workers: URL vetting (SSRF), the retry schedule,
Standard Webhooks signing, per-tenant secrets, and the Redis keys of the delivery outbox.

The outbox: the job's terminal transition (common.jobs UPDATE_SCRIPT) adds the job id to the
`due` sorted set in the same Lua script, scored by when its next attempt is due. Delivery state
(attempt count, outcome, next attempt) is a hash per job and the delivery log a list per job.
"""

from __future__ import annotations

import base64
import ipaddress
import random
import secrets
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import httpx
from pydantic import BaseModel
from standardwebhooks import Webhook

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_URL_CHARS = 2048
SCHEMES = ("http", "https")
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
SECRET_PREFIX = "whsec_"


class WebhookRefused(ValueError):
    """A webhook URL that may not be called, with a machine-readable code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Vetted:
    """A webhook URL and the address it was vetted to; connect to exactly that address."""

    url: httpx.URL
    address: IPAddress


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (IPv4-mapped, 6to4, NAT64, Teredo client), if any."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _allowed(ip: IPAddress, allow: Iterable[IPNetwork]) -> bool:
    return any(ip.version == net.version and ip in net for net in allow)


def _non_global(ip: IPAddress) -> str | None:
    checks = (
        ("loopback", ip.is_loopback),
        ("unspecified", ip.is_unspecified),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
        ("not globally routable", not ip.is_global),
    )
    return next((name for name, hit in checks if hit), None)


def refusal(ip: IPAddress, allow: Iterable[IPNetwork] = ()) -> str | None:
    """Why a webhook may not connect to this address (None: it may).

    An IPv6 address that carries an IPv4 one is judged by the IPv4 address; an address
    inside an allowed network is always accepted.
    """
    allow = tuple(allow)
    inner = embedded_ipv4(ip)
    if _allowed(ip, allow) or (inner is not None and _allowed(inner, allow)):
        return None
    reason = _non_global(inner if inner is not None else ip)
    if reason is None:
        return None
    shown = f"{ip} (carrying {inner})" if inner is not None else str(ip)
    return f"{shown} is {reason}"


def parse_url(url: str) -> httpx.URL:
    """The URL if it is an absolute http(s) URL with a host; WebhookRefused otherwise."""
    if len(url) > MAX_URL_CHARS:
        raise WebhookRefused("invalid_webhook_url", f"webhook URLs are limited to {MAX_URL_CHARS}")
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise WebhookRefused("invalid_webhook_url", f"webhook_url is not a URL: {exc}") from exc
    if parsed.scheme not in SCHEMES:
        raise WebhookRefused("invalid_webhook_url", "webhook_url must be an http or https URL")
    if not parsed.host:
        raise WebhookRefused("invalid_webhook_url", "webhook_url has no host")
    return parsed


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address the host resolves to (an IP literal resolves to itself)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise WebhookRefused(
            "webhook_url_unresolvable", f"webhook host {host!r} does not resolve: {exc}"
        ) from exc
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise WebhookRefused("webhook_url_unresolvable", f"webhook host {host!r} has no address")
    return addresses


def vet(url: str, allow: Iterable[IPNetwork] = ()) -> Vetted:
    """Parse, resolve and vet a webhook URL; every address it resolves to must be allowed."""
    parsed = parse_url(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    addresses = resolve(parsed.host, port)
    allow = tuple(allow)
    for ip in addresses:
        reason = refusal(ip, allow)
        if reason is not None:
            raise WebhookRefused(
                "webhook_url_forbidden",
                f"webhook host {parsed.host!r} resolves to {reason}; "
                "only public addresses (or RAGQ_WEBHOOK_ALLOW_NETWORKS) may be called",
            )
    return Vetted(parsed, addresses[0])


def pinned_request(vetted: Vetted) -> tuple[httpx.URL, dict[str, str], dict[str, str]]:
    """URL, headers and request extensions that reach the vetted address under the URL's name.

    The connection goes to the IP itself (no second DNS lookup that could be rebound); the Host
    header and, for https, the TLS SNI name and certificate check keep the original host name.
    """
    url = vetted.url
    headers = {"Host": url.netloc.decode("ascii")}
    extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
    return url.copy_with(host=str(vetted.address)), headers, extensions


def retry_delay(
    schedule: Sequence[float], attempts_made: int, jitter: float, rng: random.Random | None = None
) -> float | None:
    """Seconds before the next attempt (None: the schedule is exhausted), jittered by ±jitter."""
    if attempts_made >= len(schedule):
        return None
    base = max(0.0, float(schedule[attempts_made]))
    return base * (rng or random).uniform(1.0 - jitter, 1.0 + jitter)


def new_secret() -> str:
    """A fresh `whsec_` secret: 32 random bytes, base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def message_id(job_id: str) -> str:
    """The `webhook-id` of a job's completion event, the same on every attempt."""
    return f"msg_{job_id}"


def signed_headers(
    signing_secrets: Sequence[str], msg_id: str, timestamp: datetime, body: str
) -> dict[str, str]:
    """Standard Webhooks headers; one signature per secret (the previous one after a rotation)."""
    signature = " ".join(Webhook(s).sign(msg_id, timestamp, body) for s in signing_secrets)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


# KEYS: current secret, previous secret. ARGV: new secret, grace seconds.
ROTATE_SCRIPT = """
local cur = redis.call('GET', KEYS[1])
if cur and tonumber(ARGV[2]) > 0 then
  redis.call('SET', KEYS[2], cur, 'EX', ARGV[2])
end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
"""

# KEYS: due set. ARGV: now, lease seconds, limit. Takes the due job ids and pushes each one's
# score a lease into the future, so no other dispatcher takes it meanwhile; a delivery task
# that dies is retried when the lease ends.
CLAIM_SCRIPT = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), id)
end
return ids
"""


# The state hash's `manual` field: the next attempt was asked for by hand (redeliver), either
# after retries were over (one attempt, no new schedule) or while retries were pending.
MANUAL_ONCE = "1"
MANUAL_IN_SCHEDULE = "pending"


class DeliveryState(StrEnum):
    """Where a job's webhook stands."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    GONE = "gone"


class DeliveryAttempt(BaseModel):
    """One POST to the webhook URL."""

    attempt: int
    at: str
    status_code: int | None = None
    error: str | None = None
    duration_s: float
    outcome: DeliveryState
    next_attempt_at: str | None = None
    manual: bool = False


class DeliveryLog(BaseModel):
    """A job's webhook: its URL, where delivery stands, and every attempt so far."""

    job_id: str
    webhook_url: str | None
    state: DeliveryState | None
    next_attempt_at: str | None = None
    deliveries: list[DeliveryAttempt]


def delivery_log(
    job_id: str, webhook_url: str | None, state: dict[str, str], entries: Iterable[str]
) -> DeliveryLog:
    """The public delivery log from the state hash and the log list."""
    current: DeliveryState | None = None
    if state.get("state"):
        current = DeliveryState(state["state"])
    elif webhook_url:
        current = DeliveryState.PENDING
    return DeliveryLog(
        job_id=job_id,
        webhook_url=webhook_url,
        state=current,
        next_attempt_at=state.get("next_at") or None,
        deliveries=[DeliveryAttempt.model_validate_json(e) for e in entries],
    )
