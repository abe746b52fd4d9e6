"""Pydantic models of the policy file as written, with per-field validation.

Every model refuses unknown keys (a typo in a security policy must not pass
silently) and is strict about types: `"30"` is not a number and `true` is not 1.
Cross-references between sections (groups, approvers, counters) are checked by
`references.py` once the whole file has parsed.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from gateway_plugin.policy.addresses import plain_address
from gateway_plugin.policy.durations import parse_duration
from gateway_plugin.policy.errors import describe_value
from gateway_plugin.policy.preview import MAX_PREVIEW_TIMEOUT_SECONDS
from gateway_plugin.policy.results import Action, NotificationEvent, OnTimeout, Scope, Window

OPERATORS: tuple[str, ...] = (
    "eq",
    "ne",
    "in",
    "not_in",
    "matches",
    "glob",
    "gt",
    "gte",
    "lt",
    "lte",
    "exists",
)


class StrictModel(BaseModel):
    """Base of the file models: frozen, strict types, unknown keys refused with a hint."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    key_noun: ClassVar[str] = "key"

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown_keys(cls, data: Any) -> Any:
        # Done here rather than by extra="forbid" so the message can list the allowed keys.
        if isinstance(data, dict):
            allowed = [field.alias or name for name, field in cls.model_fields.items()]
            for key in data:
                if key not in allowed:
                    raise PydanticCustomError(
                        "unknown_key",
                        "unknown {noun} {key!r}",
                        {"key": key, "noun": cls.key_noun, "allowed": allowed},
                    )
        return data


def key_error(key: str | int, reason: str) -> PydanticCustomError:
    """An error located at `key` below the value being validated (rendered by the loader)."""
    return PydanticCustomError("key_error", "{reason}", {"key": key, "reason": reason})


def _non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _version(value: Any) -> str:
    # YAML authors write `version: 1`; treat it like "1" rather than fail on the quotes.
    if value == "1" or (type(value) is int and value == 1):
        return "1"
    raise ValueError(f'unsupported version {value!r}; this Signoff reads version "1"')


def _duration(value: Any) -> float | None:
    if value is None:
        return None
    if not isinstance(value, str | int | float):
        raise ValueError("expected a duration such as 30s, 15m, 1h or a number of seconds")
    return parse_duration(value)


def _positive(value: float | None) -> float | None:
    if value is not None and value <= 0:
        raise ValueError("must be longer than zero")
    return value


def _approvers(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        return _non_empty(value)
    if isinstance(value, list):
        if not value:
            raise ValueError("an empty list names nobody; leave approvers out to let anyone decide")
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise key_error(index, f"expected an approver name, got {describe_value(item)}")
        return tuple(value)
    raise ValueError(
        f"expected a group name, an approver name or a list of approver names, "
        f"got {describe_value(value)}"
    )


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    return value


def _comparable(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("expected a number or a string to compare with")
    return value


def _argument_path(value: str) -> str:
    if not value or any(not segment for segment in value.split(".")):
        raise ValueError(f"invalid argument path {value!r}: use dotted names like a.b.0.c")
    return value


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
MAX_URL_LENGTH = 2048


def _webhook_url(value: str) -> str:
    if len(value) > MAX_URL_LENGTH:
        raise ValueError(f"a URL of at most {MAX_URL_LENGTH} characters is expected")
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ValueError("the URL contains spaces or control characters")
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError(f"expected an http:// or https:// URL with a host, got {value!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "the URL must not carry a user or password (gateways can read the policy); "
            "receivers authenticate Signoff by the signature"
        )
    return value


def _env_name(value: str) -> str:
    if not _ENV_NAME.match(value):
        raise ValueError(
            f"expected the name of an environment variable (letters, digits, _), got {value!r}"
        )
    return value


def _distinct_events(value: list[str]) -> list[str]:
    for index, item in enumerate(value):
        if item in value[:index]:
            raise key_error(index, f"{item!r} is listed twice")
    return value


NonEmptyStr = Annotated[str, AfterValidator(_non_empty)]
Email = Annotated[str, AfterValidator(plain_address)]
WebhookUrl = Annotated[str, AfterValidator(_webhook_url)]
Duration = Annotated[float | None, BeforeValidator(_duration)]
PositiveDuration = Annotated[float | None, BeforeValidator(_duration), AfterValidator(_positive)]
ApproversRef = Annotated[str | tuple[str, ...] | None, BeforeValidator(_approvers)]
Comparable = Annotated[int | float | str | None, BeforeValidator(_comparable)]
ArgumentPath = Annotated[str, AfterValidator(_argument_path)]


class ConditionModel(StrictModel):
    """The operators applied to one argument path; all of them must hold."""

    key_noun: ClassVar[str] = "operator"

    eq: Any = None
    ne: Any = None
    in_: list[Any] | None = Field(default=None, alias="in")
    not_in: list[Any] | None = None
    matches: Annotated[str, AfterValidator(_regex)] | None = None
    glob: str | None = None
    gt: Comparable = None
    gte: Comparable = None
    lt: Comparable = None
    lte: Comparable = None
    exists: bool | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> ConditionModel:
        if not self.model_fields_set:
            raise ValueError(f"no operator given; use one of {', '.join(OPERATORS)}")
        for name, value in self.operators():
            if value is None and name not in ("eq", "ne"):
                raise key_error(name, f"{name} needs a value, got null")
        return self

    def operators(self) -> list[tuple[str, Any]]:
        """The operators actually written (an explicit `eq: null` counts), in canonical order."""
        given = self.model_fields_set
        return [
            (field.alias or name, getattr(self, name))
            for name, field in type(self).model_fields.items()
            if name in given
        ]


class LimitModel(StrictModel):
    """One rate limit as written."""

    counter: NonEmptyStr
    window: Window
    max: int = Field(ge=1)
    scope: Scope = "grant"


class EscalationModel(StrictModel):
    """`{"after": "30m", "to": "oncall"}`: that long with no decision, group `to` may decide."""

    after: Annotated[float, BeforeValidator(_duration), AfterValidator(_positive)]
    to: NonEmptyStr


def _preview_timeout(value: float | None) -> float | None:
    if value is not None and value > MAX_PREVIEW_TIMEOUT_SECONDS:
        raise ValueError(f"must be at most {MAX_PREVIEW_TIMEOUT_SECONDS:g}s")
    return value


class PreviewModel(StrictModel):
    """`preview`: a read-only call whose output approvers see; `{path}` takes a value from
    the held call's arguments (see `preview.py`)."""

    tool: NonEmptyStr
    arguments: dict[str, Any] = {}
    timeout: Annotated[PositiveDuration, AfterValidator(_preview_timeout)] = None


class ApprovalFields(StrictModel):
    """Fields shared by tool entries and rules; a rule's fields override its entry's."""

    reason: str | None = None
    approvers: ApproversRef = None
    quorum: int | None = Field(default=None, ge=1)
    timeout: PositiveDuration = None
    on_timeout: OnTimeout | None = None
    hold: Duration = None
    # The question a `confirm` rule puts to the person at the client.
    message: str | None = Field(default=None, min_length=1, max_length=2000)
    # False: approvers may only approve or reject the call as made, never edit its arguments.
    editable: bool | None = None
    remind_every: PositiveDuration = None
    escalate: list[EscalationModel] | None = None
    preview: PreviewModel | None = None


class RuleModel(ApprovalFields):
    """`{"if": {path: {op: value}}, "action": ...}`; a rule without `if` always matches."""

    if_: dict[ArgumentPath, ConditionModel] | None = Field(default=None, alias="if")
    action: Action


class ToolEntryModel(ApprovalFields):
    """One key of `tools`; with no `action` the tool is allowed within its limits."""

    action: Action | None = None
    limits: list[LimitModel] = []
    rules: list[RuleModel] = []
    redact: list[NonEmptyStr] = []
    # Also record allowed calls of this tool in the audit log (denials always are).
    audit: bool = False


class ApproverModel(StrictModel):
    """An entry of `approvers`."""

    slack_user: str | None = None
    email: Email | None = None


class GroupModel(StrictModel):
    """An entry of `approver_groups`."""

    members: list[NonEmptyStr] = Field(min_length=1)
    slack_channel: str | None = None
    teams_webhook: WebhookUrl | None = None


class WebhookModel(StrictModel):
    """An entry of `webhooks`: where signed events go, and which ones."""

    url: Annotated[str, AfterValidator(_webhook_url)]
    secret_env: Annotated[str, AfterValidator(_env_name)]
    events: Annotated[list[NotificationEvent], AfterValidator(_distinct_events)] = Field(
        min_length=1
    )


class AllToolsModel(StrictModel):
    """`all_tools`: limits applied to every call."""

    limits: list[LimitModel] = []


class PolicyFileModel(StrictModel):
    """The whole policy file."""

    version: Annotated[str, BeforeValidator(_version)]
    name: str | None = None
    description: str | None = None
    default: Action = "deny"
    approvers: dict[NonEmptyStr, ApproverModel] = {}
    approver_groups: dict[NonEmptyStr, GroupModel] = {}
    hide: list[NonEmptyStr] = []
    all_tools: AllToolsModel = AllToolsModel()
    tools: dict[NonEmptyStr, ToolEntryModel] = {}
    redact: list[NonEmptyStr] = []
    webhooks: list[WebhookModel] = []
