"""The service's own check of a policy's webhooks: their secrets must be in its environment.

Gateways load the same policy format without these secrets, so the check is not
part of the policy engine; the service runs it whenever it loads a policy (at
start, where a failure stops `signoff serve`, and on every reload, where a
failure keeps the last good policy).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from approvals.webhooks.signing import secrets_of
from gateway_plugin.policy import Policy, PolicyError, load_policy
from gateway_plugin.policy.errors import json_path

# A guessable secret lets anyone forge events to the receiver.
MIN_SECRET_LENGTH = 16


def check_webhook_secrets(policy: Policy, environ: Mapping[str, str] | None = None) -> None:
    """PolicyError, with the path of the entry, for a webhook whose secret is not set."""
    env = os.environ if environ is None else environ
    for index, hook in enumerate(policy.webhooks):
        where = json_path(("webhooks", index, "secret_env"))
        secrets = secrets_of(env.get(hook.secret_env))
        if not secrets:
            raise PolicyError(
                policy.source,
                where,
                f"the environment variable {hook.secret_env} is not set (or empty) in the "
                "service's environment; it must hold the webhook's signing secret",
            )
        if any(len(secret) < MIN_SECRET_LENGTH for secret in secrets):
            raise PolicyError(
                policy.source,
                where,
                f"a secret in {hook.secret_env} is shorter than {MIN_SECRET_LENGTH} "
                "characters; use a long random one (e.g. `openssl rand -hex 32`)",
            )


def load_service_policy(path: str) -> Policy:
    """Load a policy file as the service does: the engine's checks, then the service's."""
    policy = load_policy(path)
    check_webhook_secrets(policy)
    return policy
