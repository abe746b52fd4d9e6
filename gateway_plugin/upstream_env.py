"""The environment an upstream MCP server starts with: the gateway's, minus Signoff's secrets.

The upstream server is untrusted code. The gateway's environment carries its
service URL, its gateway token and other `SIGNOFF_*` settings; with the token
the upstream could read the approval queue or write audit facts as the
gateway. So every `SIGNOFF_*` variable is held back unless the operator names
it (`signoff gateway --pass-env NAME`), and so is any variable, whatever its
name, whose value contains a token the gateway holds.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping

__all__ = ["SIGNOFF_PREFIX", "upstream_environment"]

SIGNOFF_PREFIX = "SIGNOFF_"


# Any Signoff API token (approvals/tokens.py: "so_" and 43 URL-safe characters), not
# only the gateway's own: an operator's admin token in OPS_TOKEN must not leak either.
_ANY_TOKEN = re.compile(r"so_[A-Za-z0-9_-]{43}")


def upstream_environment(
    environ: Mapping[str, str],
    *,
    secrets: Iterable[str] = (),
    pass_env: Collection[str] = (),
) -> dict[str, str]:
    """`environ` without `SIGNOFF_*` variables (except those in `pass_env`) and without any
    variable whose value contains one of `secrets`; named pass-throughs are no exception."""
    held = [secret for secret in secrets if secret]
    return {
        name: value
        for name, value in environ.items()
        if (not name.startswith(SIGNOFF_PREFIX) or name in pass_env)
        and not any(secret in value for secret in held)
        and not _ANY_TOKEN.search(value)
    }
