"""Email addresses as Signoff takes them: one plain ASCII address, nothing around it.

A display name, a comment, a second address or a line break could smuggle
recipients or headers into the messages Signoff sends, so only the dot-atom
form is accepted (`local@host.domain`, RFC 5322 3.4.1). Internal domains
(`corp.local`, `localhost`) are fine: mail may never leave the company.
"""

from __future__ import annotations

import re

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"(?P<local>{_ATEXT}(?:\.{_ATEXT})*)@(?P<domain>{_LABEL}(?:\.{_LABEL})*)")


def plain_address(value: str) -> str:
    """`value` if it is one plain address; otherwise ValueError saying why not."""
    match = _ADDRESS.fullmatch(value)
    if match is None:
        raise ValueError(
            f"invalid email address {value!r}: write one plain address like alice@example.com"
        )
    if len(value) > 254 or len(match["local"]) > 64:
        raise ValueError(f"invalid email address {value!r}: too long")
    return value
