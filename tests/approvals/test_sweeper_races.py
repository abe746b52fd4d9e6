"""The sweeper loses races to other replicas and to approvers without undoing their work."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from support import enforced_policy, held_call

from approvals import lifecycle, migrate
from approvals.db import make_engine, session_scope
from approvals.lifecycle import expiry
from approvals.models import utcnow


@pytest.fixture
def engine(tmp_path: Path) -> Any:
    url = f"sqlite:///{tmp_path / 'sweep.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


def create(engine: Any, n: int) -> str:
    data = held_call(arguments={"n": n})
    with session_scope(engine) as session:
        return lifecycle.create_request(
            session, data, policy=enforced_policy(), created_by="gw"
        ).request.id


def test_after_losing_one_request_the_sweeper_leaves_a_decided_one_alone(
    engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [create(engine, n) for n in range(3)]
    later = utcnow() + timedelta(seconds=700)  # past the 10-minute timeout
    real_expire = expiry.expire
    calls: list[str] = []

    def racing_expire(session: Any, request: Any, now: Any) -> Any:
        if len(calls) == 1:  # between two commits of this sweeper's batch:
            with session_scope(engine) as other:  # another replica expires the 2nd,
                real_expire(other, lifecycle.get_request(other, ids[1]), now)
                other.commit()
            with session_scope(engine) as other:  # and Alice's vote (in time) approves the 3rd
                lifecycle.decide(other, ids[2], approver="alice", decision="approve")
        calls.append(request.id)
        return real_expire(session, request, now)

    monkeypatch.setattr(expiry, "expire", racing_expire)
    with session_scope(engine) as session:
        assert lifecycle.expire_due(session, now=later) == ids[:1]
    monkeypatch.undo()
    with session_scope(engine) as session:
        statuses = [lifecycle.get_request(session, i).status for i in ids]
        assert statuses == ["expired", "expired", "approved"]
        assert lifecycle.get_request(session, ids[2]).decided_by == "alice"
