"""Slack: request cards in the approver group's channel, decided by a click.

- `cards.py` builds the Block Kit card (and the reject modal) from a request;
- `client.py` calls the Web API with retries that honour `Retry-After`;
- `notifier.py` listens to the event hub and posts or updates cards in the
  background, never in the way of the API or the gateway;
- `interactions.py` serves `POST /slack/interactions` (signed by Slack) and
  holds the handlers that Socket Mode (`socket_mode.py`) feeds too;
- `models.py` is the `slack_messages` table (where each card was posted);
- `runtime.py` switches the parts on from the settings and runs them in the
  service's lifespan.
"""
