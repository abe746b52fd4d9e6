"""Slack is down when a request is made, and the service is killed (SIGKILL) before it
could post the card; after a restart, with Slack back, the card is posted: the job was
in the outbox, committed with the request."""

from __future__ import annotations

import time
from pathlib import Path

from slack_standin import SlackStandin
from slack_support import slack_env, write_service_policy
from support import ServiceProcess, queue_held_call

FAST_RETRIES = {
    "SIGNOFF_DELIVERY_RETRY_FIRST_SECONDS": "0.5",
    "SIGNOFF_DELIVERY_RETRY_CAP_SECONDS": "1",
    "SIGNOFF_DELIVERY_POLL_SECONDS": "0.2",
    # The killed process held the job while Slack was down; its hold runs out this fast.
    "SIGNOFF_DELIVERY_LEASE_SECONDS": "2",
}


def test_sigkill_while_slack_is_down_still_posts_the_card_after_restart(
    tmp_path: Path, standin: SlackStandin
) -> None:
    standin.down = True
    policy = write_service_policy(tmp_path)
    service = ServiceProcess(tmp_path / "signoff.db", env=slack_env(standin, policy) | FAST_RETRIES)
    service.start()
    try:
        gateway = service.client(service.token("gateway", "gw-slack-crash"))
        request = queue_held_call(gateway, arguments={"sessionId": "crash"})
        # Tried, and failed: Slack is down.
        standin.wait_for(
            lambda: [c for c in standin.calls_of("chat.postMessage") if "crash" in str(c.params)]
        )
        service.kill()
        assert standin.card_for(request["id"]) is None
        recovered_at = time.monotonic()
        standin.recover()
        service.start()
        card = standin.wait_for(lambda: standin.card_for(request["id"]), timeout=30)
        assert card is not None
        posts = [
            c
            for c in standin.calls_of("chat.postMessage")
            if request["id"] in str(c.params)
            and not c.params.get("thread_ts")
            and c.at >= recovered_at
        ]
        assert len(posts) == 1
    finally:
        service.stop()
