"""`ragq keys create | list | revoke` against the test service's Redis, and the key in use."""

from __future__ import annotations

import httpx

from tests.conftest import Service, auth
from tests.helpers import ragq


def test_create_list_revoke(service: Service) -> None:
    created = ragq(service.env, "keys", "create", "--tenant", "cli-tenant", timeout=60)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("rq_")
    key_id = created.stderr.split("created ", 1)[1].split()[0]

    with httpx.Client(base_url=service.base_url, timeout=30, headers=auth(key)) as http:
        assert http.get("/v1/documents").status_code == 200
        listed = ragq(service.env, "keys", "list", timeout=60)
        assert listed.returncode == 0, listed.stderr
        assert f"{key_id}\tcli-tenant" in listed.stdout
        assert key not in listed.stdout
        revoked = ragq(service.env, "keys", "revoke", key_id, timeout=60)
        assert revoked.returncode == 0, revoked.stderr
        assert http.get("/v1/documents").status_code == 401
    assert ragq(service.env, "keys", "revoke", key_id, timeout=60).returncode != 0


def test_bad_tenant_is_a_usage_error(service: Service) -> None:
    result = ragq(service.env, "keys", "create", "--tenant", "no spaces", timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_commands_use_the_dev_key_file_or_ragq_api_key(service: Service) -> None:
    """`ragq up` wrote the development key under the data folder; RAGQ_API_KEY overrides it."""
    assert service.settings.key_file.read_text().strip() == service.api_key
    env = {**service.env, "RAGQ_API_KEY": "rq_not-a-valid-key-0123456789"}
    result = ragq(env, "reindex", "--all", timeout=60)
    assert result.returncode != 0
    assert "401 invalid_api_key" in result.stderr


def test_keys_with_groups_or_admin(service: Service) -> None:
    created = ragq(
        service.env, "keys", "create", "--tenant", "cli-groups", "--groups", "hr, eng", timeout=60
    )
    assert created.returncode == 0, created.stderr
    key_id = created.stderr.split("created ", 1)[1].split()[0]
    admin = ragq(service.env, "keys", "create", "--tenant", "cli-groups", "--admin", timeout=60)
    assert admin.returncode == 0, admin.stderr
    admin_id = admin.stderr.split("created ", 1)[1].split()[0]
    listed = ragq(service.env, "keys", "list", timeout=60).stdout
    assert f"{key_id}\tcli-groups\t" in listed
    lines = {line.split("\t")[0]: line for line in listed.splitlines()}
    assert lines[key_id].split("\t")[3] == "groups=eng,hr"
    assert lines[admin_id].split("\t")[3] == "admin"
    for bad in (["--groups", "no spaces"], ["--groups", "hr", "--admin"]):
        refused = ragq(service.env, "keys", "create", "--tenant", "cli-groups", *bad, timeout=60)
        assert refused.returncode == 2, refused.stdout
        assert "Traceback" not in refused.stderr


def test_tenants_set_quota_and_show(service) -> None:  # type: ignore[no-untyped-def]
    tenant = "cli-quota-tenant"
    set_ = ragq(service.env, "tenants", "set-quota", tenant, "--tokens-per-month", "5000",
                "--documents", "10", timeout=60)  # fmt: skip
    assert set_.returncode == 0, set_.stderr
    assert "tokens_per_month" in set_.stdout and "used of 5000" in set_.stdout, set_.stdout
    shown = ragq(service.env, "tenants", "show", tenant, timeout=60)
    assert "documents" in shown.stdout and "used of 10" in shown.stdout, shown.stdout
    assert "chunks" in shown.stdout and "used of unlimited" in shown.stdout, shown.stdout
    removed = ragq(service.env, "tenants", "set-quota", tenant, "--documents", "none", timeout=60)
    assert "used of 10" not in removed.stdout, removed.stdout
    wrong = ragq(service.env, "tenants", "set-quota", tenant, "--chunks", "-3", timeout=60)
    assert wrong.returncode == 2 and "at least 0" in wrong.stderr, wrong.stderr
