"""Mail over STARTTLS and implicit TLS (smtps://), with the server's certificate checked.

The SMTP server has a self-signed certificate for 127.0.0.1. A service told to
trust it (SSL_CERT_FILE, read by the standard library's default context)
delivers; one that does not trust it sends nothing.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from mail_standin import MailStandin
from mail_support import mail_service
from support import queue_held_call


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own authority, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "signoff test SMTP")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


@pytest.mark.parametrize("mode", ["starttls", "smtps"])
def test_mail_goes_over_tls_to_a_server_whose_certificate_is_trusted(
    tmp_path: Path, mode: str
) -> None:
    cert, key = self_signed(tmp_path)
    context = server_context(cert, key)
    smtp = (
        MailStandin(starttls=context) if mode == "starttls" else MailStandin(tls=context)
    ).start()
    service = mail_service(tmp_path, smtp, SSL_CERT_FILE=str(cert))
    service.start()
    try:
        gateway = service.client(service.token("gateway", "gw-tls"))
        rid = queue_held_call(gateway, server="")["id"]

        [mail] = smtp.wait_for(lambda: smtp.to("alice@example.com", rid))

        assert mail.message["X-Signoff-Request"] == rid
    finally:
        service.stop()
        smtp.stop()


def test_nothing_is_sent_to_a_server_whose_certificate_is_not_trusted(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    smtp = MailStandin(starttls=server_context(cert, key)).start()
    service = mail_service(tmp_path, smtp)  # the system's trust store only
    service.start()
    try:
        gateway = service.client(service.token("gateway", "gw-untrusted"))
        rid = queue_held_call(gateway, server="")["id"]
        time.sleep(3.0)  # several attempts, each refused by the certificate check

        assert smtp.to("alice@example.com", rid) == []
        assert "CERTIFICATE_VERIFY_FAILED" in service.log_path.read_text()
    finally:
        service.stop()
        smtp.stop()
