"""Routes for operators and their tools: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from approvals.api.deps import MetricsDep, MonitorDep
from approvals.api.errors import error_body
from approvals.readiness import ReadinessProbe

router = APIRouter()


# Liveness only, on the event loop: no thread and no database, so it answers
# at once however busy the thread pool or the store is.
@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={503: {"description": "not ready: `error.message` says why"}},
)
async def readyz(request: Request) -> JSONResponse:
    """Readiness: the database answers and its schema is at the migrations' head."""
    probe: ReadinessProbe = request.app.state.readiness
    answer = await probe()
    if not answer.ready:
        return JSONResponse(error_body("not_ready", answer.detail), status_code=503)
    return JSONResponse({"status": "ready", "schema": answer.detail})


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
def metrics(metrics: MetricsDep, _: MonitorDep) -> Response:
    """Prometheus metrics of this process (auditor and admin tokens).

    A plain `def`: rendering counts pending requests in the database, off the event loop."""
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
