"""The access rule: admins read all; other keys read ungrouped documents and their groups'."""

from __future__ import annotations

import pytest

from common.access import ADMIN, Access, check_groups


def test_a_key_reads_ungrouped_documents_and_those_of_its_groups() -> None:
    reader = Access(False, ("eng", "ops"))
    assert reader.sees([]) and reader.sees(["ops"]) and reader.sees(["hr", "eng"])
    assert not reader.sees(["hr"])
    assert not Access(False).sees(["hr"]) and Access(False).sees([])
    assert ADMIN.sees(["hr"]) and ADMIN.search_groups is None
    assert reader.search_groups == ["eng", "ops"]


def test_only_own_groups_may_be_assigned() -> None:
    reader = Access(False, ("eng",))
    assert reader.may_assign([]) and reader.may_assign(["eng"])
    assert not reader.may_assign(["eng", "hr"])
    assert ADMIN.may_assign(["anything"])


def test_job_fields_carry_the_access_and_old_records_are_admins() -> None:
    reader = Access(False, ("eng",))
    assert Access.from_fields(reader.fields()) == reader
    assert Access.from_fields(ADMIN.fields()) == ADMIN
    assert Access.from_fields({}) == ADMIN


def test_idempotency_scopes_differ_by_access() -> None:
    scopes = {ADMIN.scope("t"), Access(False).scope("t"), Access(False, ("eng",)).scope("t")}
    assert len(scopes) == 3 and ADMIN.scope("t") == "t"


@pytest.mark.parametrize("groups", [["a b"], [""], ["x" * 65], ["ü"], [f"g{n}" for n in range(33)]])
def test_bad_groups_are_refused(groups: list[str]) -> None:
    with pytest.raises(ValueError):
        check_groups(groups)


def test_groups_are_sorted_without_repeats() -> None:
    assert check_groups(["b", "a.b", "b", "A_1-x"]) == ["A_1-x", "a.b", "b"]
    assert check_groups([f"g{n}" for n in range(32)])
