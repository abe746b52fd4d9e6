"""Signed webhooks: events posted to the `webhooks` of the policy, through the outbox."""
