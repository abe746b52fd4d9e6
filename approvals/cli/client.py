"""A small HTTP client for CLI commands that talk to a running service."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from approvals.cli.errors import CliError

# httpx loads when a client is made, not for `--help`.
if TYPE_CHECKING:
    import httpx

DEFAULT_SERVICE_URL = "http://127.0.0.1:8000"


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


class ServiceClient:
    """Calls the service's REST API, turning every failure into a CliError."""

    def __init__(self, base_url: str, token: str | None) -> None:
        if not token:
            raise CliError("an API token is required: pass --token or set SIGNOFF_TOKEN")
        self.base_url = base_url.rstrip("/")
        import httpx

        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}", "X-Signoff-Channel": "cli"},
            timeout=30,
        )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ServiceClient:
        fill_service_arguments(args)
        return cls(args.service, args.token)

    @contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """Send a request to /api/v1`path`; yields the response with its body unread."""
        import httpx

        try:
            with self._http.stream(
                method, f"/api/v1{path}", timeout=httpx.Timeout(30, read=300), **kwargs
            ) as response:
                if not response.is_success:
                    response.read()
                    raise CliError(f"{_error_message(response)} (HTTP {response.status_code})")
                yield response
        except httpx.HTTPError as exc:
            raise CliError(
                f"lost the connection to the approval service at {self.base_url}: {exc}"
            ) from exc

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request to /api/v1`path` and return the decoded JSON body."""
        import httpx

        try:
            response = self._http.request(method, f"/api/v1{path}", **kwargs)
        except httpx.HTTPError as exc:
            raise CliError(
                f"could not reach the approval service at {self.base_url}: {exc}"
            ) from exc
        if response.is_success:
            return response.json()
        raise CliError(f"{_error_message(response)} (HTTP {response.status_code})")


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200] or response.reason_phrase
