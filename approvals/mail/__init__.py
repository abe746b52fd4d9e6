"""Email notifications: approvers with an `email` in the policy get a message per request
(through the outbox), with reminders threaded under it."""
