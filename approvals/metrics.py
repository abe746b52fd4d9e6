"""Prometheus metrics of one service process, served at GET /metrics.

Counters are bumped from what already happens (a committed event reaching the
hub, an HTTP request ending), never by an extra database read: the create and
decide routes stay as cheap as they were. The two numbers that need a look at
shared state are read when Prometheus scrapes: pending requests (one indexed
COUNT) and open websocket subscriptions.

Each replica counts what it did itself (events relayed from other replicas are
not counted again), so sums over replicas are right; `signoff_requests_pending`
is the shared table's count, the same on every replica (aggregate it with max).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from approvals.db import read_session
from approvals.live_events import EventHub, LiveEvent
from approvals.models import ApprovalRequest, RequestStatus
from approvals.outbox import store as outbox_store
from approvals.schemas import RequestPublic

log = logging.getLogger(__name__)

# Approvals take seconds to hours: a person has to notice and decide.
DECISION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0)
# Long-polls and websockets last up to a minute; most routes answer in milliseconds.
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0)
# Any other method is one label value: a client cannot grow the label set.
_GATEWAY_FACT_OUTCOMES = {
    "policy.denied": "denied",
    "policy.rate_limited": "rate_limited",
    "call.allowed": "allowed",
    "call.confirmed": "confirmed",
    "call.declined": "declined",
}
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


class _PendingCollector(Collector):
    """signoff_requests_pending, counted in the database when scraped."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "signoff_requests_pending", "Requests waiting for a decision (whole database)"
        )
        try:
            with read_session(self.engine) as session:
                count = session.exec(
                    select(func.count())
                    .select_from(ApprovalRequest)
                    .where(ApprovalRequest.status == RequestStatus.PENDING)
                ).one()
        except Exception as exc:  # a scrape must still answer when the database is away
            log.warning("metrics: could not count pending requests: %r", exc)
            return
        gauge.add_metric([], float(count))
        yield gauge


class _OutboxCollector(Collector):
    """signoff_outbox_deliveries{channel,status}: the outbox rows, counted when scraped."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "signoff_outbox_deliveries",
            "Notifications in the outbox by channel and status (pending, delivered, failed)",
            labels=["channel", "status"],
        )
        try:
            found = outbox_store.counts(self.engine)
        except Exception as exc:  # a scrape must still answer when the database is away
            log.warning("metrics: could not count outbox deliveries: %r", exc)
            return
        for (channel, status), count in sorted(found.items()):
            gauge.add_metric([channel, status], float(count))
        yield gauge


class _SlackFailures(Collector):
    """signoff_slack_delivery_failures_total, read from the notifier's own tally."""

    def __init__(self, failures: Callable[[], dict[str, int]]) -> None:
        self.failures = failures

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "signoff_slack_delivery_failures",
            "Slack posts and card updates that failed, by kind of job",
            labels=["kind"],
        )
        for kind in ("post", "sync"):
            family.add_metric([kind], float(self.failures().get(kind, 0)))
        yield family


class Metrics:
    """The metrics of one app; `registry` is what /metrics renders."""

    def __init__(
        self,
        engine: Engine,
        hub: EventHub,
        slack_failures: Callable[[], dict[str, int]] = dict,
    ) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=False)
        self.requests_created = Counter(
            "signoff_requests_created",
            "Approval requests created, by tool",
            ["tool"],
            registry=registry,
        )
        self.decisions = Counter(
            "signoff_decisions",
            "Requests settled by a person, by outcome and channel (api, dashboard, slack, cli)",
            ["outcome", "channel"],
            registry=registry,
        )
        self.decision_seconds = Histogram(
            "signoff_decision_seconds",
            "Time from a request's creation to its settling decision",
            buckets=DECISION_BUCKETS,
            registry=registry,
        )
        self.claims = Counter(
            "signoff_claims", "Approvals used by their gateway to run the call", registry=registry
        )
        self.expiries = Counter(
            "signoff_expiries",
            "Requests that timed out, by what on_timeout did (allowed or denied)",
            ["on_timeout"],
            registry=registry,
        )
        self.cancellations = Counter(
            "signoff_cancellations", "Requests cancelled (the agent went away)", registry=registry
        )
        self.gateway_outcomes = Counter(
            "signoff_gateway_outcomes",
            "Call outcomes reported by gateways (ok, error, denied, rate_limited, allowed)",
            ["outcome"],
            registry=registry,
        )
        self.http_seconds = Histogram(
            "signoff_http_request_duration_seconds",
            "HTTP request duration by method, route template and status",
            ["method", "route", "status"],
            buckets=HTTP_BUCKETS,
            registry=registry,
        )
        self.wait_reads = Counter(
            "signoff_wait_reads",
            "Database reads by long-poll waits (one as each starts; more only if the "
            "cross-replica listener reconnected)",
            registry=registry,
        )
        waiting = Gauge(
            "signoff_waits", "Long-poll waits open (GET /requests/{id}/wait)", registry=registry
        )
        waiting.set_function(lambda: float(hub.watch_count))
        subscribers = Gauge(
            "signoff_websocket_subscribers",
            "Open event-stream subscriptions (websockets, the Slack notifier)",
            registry=registry,
        )
        subscribers.set_function(lambda: float(hub.subscriber_count))
        self.deliveries = Counter(
            "signoff_deliveries",
            "Notification attempts by channel and outcome (delivered, retried, failed)",
            ["channel", "outcome"],
            registry=registry,
        )
        registry.register(_PendingCollector(engine))
        registry.register(_OutboxCollector(engine))
        registry.register(_SlackFailures(slack_failures))

    def observe_event(self, evt: LiveEvent) -> None:
        """Count a committed change made in this process (the hub calls it on publish)."""
        view = evt.request
        if not isinstance(view, RequestPublic):  # relayed from a replica: counted there
            return
        if evt.type == "request.created":
            self.requests_created.labels(view.tool).inc()
        elif evt.type == "request.decided":
            # A vote short of the quorum settles nothing: only settling decisions count.
            if view.status in (RequestStatus.APPROVED, RequestStatus.REJECTED):
                self.decisions.labels(view.status.value, view.channel or "api").inc()
                if view.decided_at is not None:
                    waited = (view.decided_at - view.created_at).total_seconds()
                    self.decision_seconds.observe(max(0.0, waited))
        elif evt.type == "request.expired":
            self.expiries.labels("allowed" if view.on_timeout == "allow" else "denied").inc()
        elif evt.type == "request.cancelled":
            self.cancellations.inc()

    def delivery_outcome(self, channel: str, outcome: str) -> None:
        """Count one finished outbox attempt (the outbox worker calls it)."""
        self.deliveries.labels(channel, outcome).inc()

    def gateway_fact(self, fact_type: str) -> None:
        """Count a call a gateway settled itself (denied, rate limited or allowed)."""
        self.gateway_outcomes.labels(_GATEWAY_FACT_OUTCOMES.get(fact_type, "other")).inc()


class HttpTimer:
    """Pure ASGI middleware: times every HTTP request by its route template.

    The template (`/api/v1/requests/{request_id}`), not the path, so that ids do
    not become label values; a path no route matched is `unmatched`."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.histogram = metrics.http_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            self.histogram.labels(method, template, str(status)).observe(
                time.perf_counter() - started
            )
