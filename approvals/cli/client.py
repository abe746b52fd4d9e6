"""How CLI commands talk to a running service: through the one `ServiceClient`.

Each command makes its call(s) on a short-lived event loop; whatever goes wrong
(unreachable, a 4xx or 5xx) becomes a `CliError`, printed as one line.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from approvals.cli.errors import CliError

# httpx and the client load when a command calls the service, not for `--help`.
if TYPE_CHECKING:
    from gateway_plugin.service_client import ServiceClient

DEFAULT_SERVICE_URL = "http://127.0.0.1:8000"
# Tells the service's logs and audit that a person at the command line acted.
_CLI_HEADERS = {"X-Signoff-Channel": "cli"}


def add_service_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --service and --token; left unset, they take SIGNOFF_SERVICE_URL and SIGNOFF_TOKEN
    (see `fill_service_arguments`)."""
    parser.add_argument(
        "--service", help=f"service URL (SIGNOFF_SERVICE_URL, default {DEFAULT_SERVICE_URL})"
    )
    parser.add_argument("--token", help="your API token (SIGNOFF_TOKEN)")


def fill_service_arguments(args: argparse.Namespace) -> None:
    """Give --service and --token left unset their SIGNOFF_* values, read through the typed
    settings when the command runs (not for --help, which need not load them)."""
    from approvals.settings import get_settings

    settings = get_settings()
    if args.service is None:
        args.service = settings.service_url
    if args.token is None:
        args.token = settings.token


def service_url(args: argparse.Namespace) -> str:
    """The service the command talks to (after `fill_service_arguments`)."""
    return str(args.service).rstrip("/")


def _client(args: argparse.Namespace) -> ServiceClient:
    from gateway_plugin.service_client import ServiceClient

    fill_service_arguments(args)
    if not args.token:
        raise CliError("an API token is required: pass --token or set SIGNOFF_TOKEN")
    return ServiceClient(args.service, args.token, headers=_CLI_HEADERS)


def _run(args: argparse.Namespace, work: Callable[[ServiceClient], Any]) -> Any:
    import anyio

    from gateway_plugin.service_client import ServiceRefused, ServiceUnavailable

    client = _client(args)

    async def go() -> Any:
        try:
            return await work(client)
        finally:
            await client.aclose()

    try:
        return anyio.run(go)
    except ServiceRefused as exc:
        raise CliError(f"{exc.message} (HTTP {exc.status})") from None
    except ServiceUnavailable as exc:
        raise CliError(str(exc)) from None


def call_service(args: argparse.Namespace, method: str, path: str, **kwargs: Any) -> Any:
    """Send a request to /api/v1`path` and return the decoded JSON body."""
    return _run(args, lambda client: client.call(method, path, **kwargs))


def stream_service(
    args: argparse.Namespace,
    method: str,
    path: str,
    opened: Callable[[], Callable[[bytes], None]],
    **kwargs: Any,
) -> None:
    """Send a request to /api/v1`path` and hand its body over in chunks: `opened` is
    called once the service has accepted the request and returns where chunks go."""

    async def work(client: ServiceClient) -> None:
        async with client.stream(method, path, **kwargs) as response:
            write = opened()
            async for chunk in response.aiter_bytes(1 << 16):
                write(chunk)

    _run(args, work)
