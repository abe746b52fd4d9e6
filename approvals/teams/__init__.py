"""Microsoft Teams notifications: a group with a `teams_webhook` gets an Adaptive Card per
request (through the outbox), reminders, and a follow-up card naming the outcome."""
