"""Socket Mode: with an app token, clicks arrive over a websocket the service opens to Slack.

The stand-in answers `apps.connections.open` with its own websocket URL, says
`hello`, pushes envelopes, and records the acknowledgements.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from slack_standin import APP_TOKEN, SlackStandin
from slack_support import block_action, card_text, settled, slack_env, view_submission
from support import ServiceProcess


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, standin: SlackStandin, service_policy: Path
) -> Iterator[ServiceProcess]:
    """No signing secret and no public URL: only the app token."""
    env = slack_env(standin, service_policy, SIGNOFF_SLACK_APP_TOKEN=APP_TOKEN)
    env["SIGNOFF_SLACK_SIGNING_SECRET"] = ""
    proc = ServiceProcess(tmp_path_factory.mktemp("slack-socket") / "signoff.db", env=env)
    proc.start()
    yield proc
    proc.stop()


def acked(standin: SlackStandin, envelope_id: str) -> bool:
    return any(ack.get("envelope_id") == envelope_id for ack in list(standin.acks))


def test_the_service_connects_and_clicks_over_socket_mode_decide(
    standin: SlackStandin,
    service: ServiceProcess,
    queue_call: Callable[..., dict[str, Any]],
    alice: httpx.Client,
) -> None:
    standin.wait_for(lambda: standin.connected_sockets() >= 1)
    [opened, *_] = standin.calls_of("apps.connections.open")
    assert opened.token == APP_TOKEN

    request = queue_call()
    card = standin.wait_for(lambda: standin.card_for(request["id"]))
    envelope = standin.send_envelope(block_action("U0ALICE", card, "signoff_approve"))
    standin.wait_for(lambda: acked(standin, envelope), timeout=5)

    decided = settled(alice, request["id"])
    assert decided["status"] == "approved" and decided["decided_by"] == "alice"
    assert decided["channel"] == "slack"
    standin.wait_for(
        lambda: (c := standin.card_for(request["id"])) and "Approved by alice" in card_text(c)
    )


def test_reject_over_socket_mode_uses_the_same_modal(
    standin: SlackStandin,
    queue_call: Callable[..., dict[str, Any]],
    alice: httpx.Client,
) -> None:
    standin.wait_for(lambda: standin.connected_sockets() >= 1)
    request = queue_call()
    card = standin.wait_for(lambda: standin.card_for(request["id"]))
    first = standin.send_envelope(block_action("U0BOB", card, "signoff_reject"))
    view = standin.wait_for(lambda: standin.view_for(request["id"]))
    second = standin.send_envelope(view_submission("U0BOB", view, "not today"))
    standin.wait_for(lambda: acked(standin, first) and acked(standin, second), timeout=5)

    decided = settled(alice, request["id"])
    assert decided["status"] == "rejected" and decided["comment"] == "not today"


def test_without_a_signing_secret_the_http_route_is_off(service: ServiceProcess) -> None:
    answer = httpx.post(f"{service.url}/slack/interactions", content=b"payload=%7B%7D")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "slack_not_configured"
