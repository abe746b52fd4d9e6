"""A mail that was due when the service died is sent after it restarts, and only once.

The request is created while the SMTP server answers "451 try later" (so the first
attempts fail and the message waits in the outbox), the service is SIGKILLed, the
SMTP server starts accepting, the service restarts on the same database: the message
arrives, once.
"""

from __future__ import annotations

import time
from pathlib import Path

from mail_standin import MailStandin
from mail_support import mail_service
from support import queue_held_call


def test_a_sigkill_between_the_request_and_its_mail_still_delivers_once(tmp_path: Path) -> None:
    smtp = MailStandin().start()
    smtp.refuse_next("451 4.3.0 mail system busy, try later", times=10_000)
    service = mail_service(tmp_path, smtp)
    service.start()
    try:
        gateway = service.client(service.token("gateway", "gw-crash"))
        rid = queue_held_call(gateway, server="")["id"]
        smtp.wait_for(lambda: smtp.refusals and len(smtp.refusals) <= 10_000 - 2)
        time.sleep(0.5)  # a few attempts fail: 451
        assert service._proc is not None
        service._proc.kill()  # SIGKILL: no shutdown, nothing flushed
        service._proc.wait()
        service._proc = None

        smtp.accept_all()
        assert smtp.received == []
        service.start()

        smtp.wait_for(lambda: smtp.to("alice@example.com", rid) and smtp.to("bob@example.com", rid))
        time.sleep(2.0)  # a duplicate would come within the retry schedule's first steps
        assert len(smtp.to("alice@example.com", rid)) == 1
        assert len(smtp.to("bob@example.com", rid)) == 1
        assert smtp.to("alice@example.com", rid)[0].message["X-Signoff-Request"] == rid
    finally:
        service.stop()
        smtp.stop()
