"""Reminders and escalation, as the lifecycle rules them (clock given, no waiting).

The qa-leads (alice, bob) are asked; after 30 s with no decision the oncall group
(carol, dave) may decide too. Before then carol's vote is refused; from then on
every channel accepts it, because every channel asks `lifecycle.may_decide`.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select
from support import held_call

from approvals import errors, escalation, lifecycle, migrate
from approvals.audit.models import AuditEvent
from approvals.db import make_engine, session_scope
from gateway_plugin.policy import Policy, parse_policy

POLICY = {
    "version": "1",
    "approvers": {name: {} for name in ("alice", "bob", "carol", "dave", "erin")},
    "approver_groups": {
        "qa-leads": {"members": ["alice", "bob"]},
        "oncall": {"members": ["carol", "dave"]},
        "managers": {"members": ["erin"]},
    },
    "tools": {
        "end_codegen_session": {
            "action": "require_approval",
            "approvers": "qa-leads",
            "timeout": "100s",
            "remind_every": "10s",
            "escalate": [{"after": "30s", "to": "oncall"}, {"after": "60s", "to": "managers"}],
        },
        "plain_tool": {"action": "require_approval", "approvers": "qa-leads", "timeout": "100s"},
    },
}


STORES = ("sqlite", "postgresql")


@pytest.fixture
def engine(store: str, tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    if store == "sqlite":
        url = f"sqlite:///{tmp_path / 'escalation.db'}"
    else:
        url = request.getfixturevalue("postgres").database("escalation")
    migrate.upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def policy() -> Policy:
    return parse_policy(POLICY)


def create(engine: Any, policy: Policy, **overrides: Any) -> tuple[str, datetime]:
    data = held_call(**{"server": "", **overrides})
    with session_scope(engine) as session:
        created = lifecycle.create_request(session, data, policy=policy, created_by="gw")
    return created.request.id, created.request.created_at


def vote(engine: Any, request_id: str, who: str, at: datetime) -> lifecycle.Decided:
    with session_scope(engine) as session:
        return lifecycle.decide(session, request_id, approver=who, decision="approve", now=at)


def audit_types(engine: Any, request_id: str) -> list[str]:
    with session_scope(engine) as session:
        rows = session.exec(
            select(AuditEvent).where(AuditEvent.request_id == request_id).order_by(AuditEvent.id)
        ).all()
        return [row.type for row in rows]


def test_an_escalation_member_is_refused_before_the_step_and_decides_after(
    engine: Any, policy: Policy
) -> None:
    request_id, created = create(engine, policy)

    with pytest.raises(errors.Forbidden) as refused:
        vote(engine, request_id, "carol", created + timedelta(seconds=29))
    assert refused.value.status == 403
    assert "escalates to oncall" in refused.value.message
    # A later step's member (erin) waits for her own step, not the first one.
    with pytest.raises(errors.Forbidden):
        vote(engine, request_id, "erin", created + timedelta(seconds=45))

    decided = vote(engine, request_id, "carol", created + timedelta(seconds=30))

    assert decided.final and decided.request.status == "approved"
    assert decided.view.decided_by == "carol"


def test_someone_in_no_group_is_refused_at_any_time(engine: Any, policy: Policy) -> None:
    request_id, created = create(engine, policy)

    with pytest.raises(errors.Forbidden) as refused:
        vote(engine, request_id, "mallory", created + timedelta(seconds=90))

    assert "not a member of qa-leads" in refused.value.message


def test_the_caller_stays_refused_even_if_an_escalation_group_names_them(
    engine: Any, policy: Policy
) -> None:
    request_id, created = create(engine, policy, caller="carol")

    with pytest.raises(errors.Forbidden) as refused:
        vote(engine, request_id, "carol", created + timedelta(seconds=50))

    assert "cannot approve" in refused.value.message


def test_the_sweeper_announces_each_step_once_and_the_view_shows_it(
    engine: Any, policy: Policy
) -> None:
    request_id, created = create(engine, policy)

    with session_scope(engine) as session:
        assert escalation.escalate_due(session, now=created + timedelta(seconds=29)) == []
        assert escalation.escalate_due(session, now=created + timedelta(seconds=31)) == [request_id]
        # A second sweeper (another replica) at the same time finds nothing left to do.
        assert escalation.escalate_due(session, now=created + timedelta(seconds=31)) == []
        view = lifecycle.public(session, lifecycle.get_request(session, request_id))

    assert [(s.group, s.announced) for s in view.escalations] == [
        ("oncall", True),
        ("managers", False),
    ]
    assert view.escalations[0].at == created + timedelta(seconds=30)
    assert audit_types(engine, request_id).count("request.escalated") == 1


def test_a_sweeper_that_was_down_announces_every_step_due_in_one_go(
    engine: Any, policy: Policy
) -> None:
    request_id, created = create(engine, policy)

    with session_scope(engine) as session:
        assert escalation.escalate_due(session, now=created + timedelta(seconds=70)) == [request_id]

    assert audit_types(engine, request_id).count("request.escalated") == 2


def test_reminders_come_every_period_while_pending_and_stop_at_the_decision(
    engine: Any, policy: Policy
) -> None:
    request_id, created = create(engine, policy)

    with session_scope(engine) as session:
        assert escalation.remind_due(session, now=created + timedelta(seconds=9)) == []
        assert escalation.remind_due(session, now=created + timedelta(seconds=10)) == [request_id]
        assert escalation.remind_due(session, now=created + timedelta(seconds=15)) == []
        assert escalation.remind_due(session, now=created + timedelta(seconds=20)) == [request_id]
    vote(engine, request_id, "alice", created + timedelta(seconds=21))
    with session_scope(engine) as session:
        assert escalation.remind_due(session, now=created + timedelta(seconds=30)) == []

    assert audit_types(engine, request_id).count("request.reminded") == 2


def test_a_reminder_does_not_change_the_request_so_a_vote_read_before_it_still_lands(
    engine: Any, policy: Policy
) -> None:
    request_id, created = create(engine, policy)
    with session_scope(engine) as session:
        before = lifecycle.get_request(session, request_id).version
        escalation.remind_due(session, now=created + timedelta(seconds=10))
        assert lifecycle.get_request(session, request_id).version == before


def test_missed_reminders_are_not_sent_in_a_burst(engine: Any, policy: Policy) -> None:
    request_id, created = create(engine, policy)

    with session_scope(engine) as session:
        # The sweeper was down for 55 s: one reminder now, the next 10 s later.
        assert escalation.remind_due(session, now=created + timedelta(seconds=55)) == [request_id]
        assert escalation.remind_due(session, now=created + timedelta(seconds=56)) == []
        assert escalation.remind_due(session, now=created + timedelta(seconds=65)) == [request_id]


def test_a_request_without_reminders_or_escalation_is_never_touched(
    engine: Any, policy: Policy
) -> None:
    request_id, created = create(engine, policy, tool="plain_tool")

    with session_scope(engine) as session:
        later = created + timedelta(seconds=99)
        assert escalation.remind_due(session, now=later) == []
        assert escalation.escalate_due(session, now=later) == []
    with pytest.raises(errors.Forbidden):
        vote(engine, request_id, "carol", created + timedelta(seconds=99))


def test_the_waiting_list_of_a_reminder_names_who_has_not_voted(
    engine: Any, policy: Policy
) -> None:
    quorum_two = {**POLICY, "tools": {"end_codegen_session": {
        **POLICY["tools"]["end_codegen_session"], "quorum": 2}}}  # type: ignore[dict-item]  # fmt: skip
    request_id, created = create(engine, parse_policy(quorum_two))
    vote(engine, request_id, "alice", created + timedelta(seconds=1))

    def waiting() -> list[str]:
        with session_scope(engine) as session:
            view = lifecycle.public(session, lifecycle.get_request(session, request_id))
        return escalation.waiting_on(view)

    assert waiting() == ["bob"]
    with session_scope(engine) as session:  # once the step is announced, oncall is asked too
        escalation.escalate_due(session, now=created + timedelta(seconds=31))
    assert waiting() == ["bob", "carol", "dave"]


def test_two_sweepers_racing_send_one_reminder_and_one_escalation(
    engine: Any, policy: Policy
) -> None:
    ids = [create(engine, policy, arguments={"n": n})[0] for n in range(20)]
    with session_scope(engine) as session:
        created = min(lifecycle.get_request(session, i).created_at for i in ids)
    at = created + timedelta(seconds=35)  # a reminder and the first step due for all
    barrier = threading.Barrier(2)
    done: list[list[str]] = []

    def sweeper() -> None:
        barrier.wait()
        with session_scope(engine) as session:
            escalated = escalation.escalate_due(session, now=at)
        with session_scope(engine) as session:
            reminded = escalation.remind_due(session, now=at)
        done.append(escalated + reminded)

    threads = [threading.Thread(target=sweeper) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    counts = {
        request_id: (
            audit_types(engine, request_id).count("request.escalated"),
            audit_types(engine, request_id).count("request.reminded"),
        )
        for request_id in ids
    }
    assert set(counts.values()) == {(1, 1)}, counts
    assert sorted(done[0] + done[1]) == sorted(ids + ids)  # each id: one step, one reminder
