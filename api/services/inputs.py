"""Checks of request values shared by the services, each failure a 422 with its own code."""

from __future__ import annotations

from api.errors import ApiError


def text(value: str, name: str, limit: int) -> str:
    """`value` without surrounding space; 422 `empty_<name>` or `<name>_too_long`."""
    value = value.strip()
    if not value:
        raise ApiError(422, f"empty_{name}", f"the {name} is empty")
    if len(value) > limit:
        raise ApiError(422, f"{name}_too_long", f"a {name} is limited to {limit} characters")
    return value


def top_k(value: int, limit: int) -> None:
    """422 `invalid_top_k` above the limit (the schema already refuses values below 1)."""
    if value > limit:
        raise ApiError(422, "invalid_top_k", f"top_k must be at most {limit}")
