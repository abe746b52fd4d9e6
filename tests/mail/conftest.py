"""Fixtures for email stories: a real SMTP server and a service that mails through it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from mail_standin import MailStandin
from mail_support import mail_service
from support import ServiceProcess


@pytest.fixture(scope="module")
def smtp() -> Iterator[MailStandin]:
    standin = MailStandin().start()
    yield standin
    standin.stop()


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, smtp: MailStandin
) -> Iterator[ServiceProcess]:
    proc = mail_service(tmp_path_factory.mktemp("mail-service"), smtp)
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def gateway(service: ServiceProcess) -> Iterator[httpx.Client]:
    with service.client(service.token("gateway", "gw-mail")) as client:
        yield client
