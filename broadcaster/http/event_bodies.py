"""The request bodies that carry events, as the models that validate and document them:
a feed's publish, an AG-UI publish (its JSON form) and the worker protocol's append. What
no schema says (a terminal event only last) is the event log's to refuse."""

from __future__ import annotations

from typing import Annotated, Any, cast

from pydantic import ConfigDict, Field, RootModel, StringConstraints, ValidationError, with_config
from typing_extensions import TypedDict

from broadcaster.core import names
from broadcaster.http.errors import ApiError


@with_config(ConfigDict(extra="allow", strict=True))
class Event(TypedDict):
    """One event: a ``type`` and any other JSON fields."""

    type: Annotated[str, StringConstraints(pattern=names.EVENT_TYPE_PATTERN)]


class PublishBody(RootModel[Event | Annotated[list[Event], Field(min_length=1)]]):
    """One event, or a non-empty list appended atomically."""

    model_config = ConfigDict(strict=True)


@with_config(ConfigDict(extra="allow", strict=True))
class AgUiEvent(TypedDict):
    """One AG-UI event: its ``type`` and the fields of that type (docs/agui.md)."""

    type: Annotated[str, StringConstraints(pattern=names.AGUI_EVENT_TYPE_PATTERN)]


class AgUiPublishBody(RootModel[AgUiEvent | Annotated[list[AgUiEvent], Field(min_length=1)]]):
    """AG-UI events: one, or a non-empty list. The route also takes SSE text
    (``Content-Type: text/event-stream``, as an AG-UI endpoint answers), left out of the
    document so that the schema fuzzer's run stays within its time."""

    model_config = ConfigDict(strict=True)


def events_in(model: type[PublishBody | AgUiPublishBody], body: Any) -> list[dict[str, Any]]:
    """The events of a publish body checked as ``model``; else 422 ``invalid_event``
    naming what is wrong with the form the body has (one event, or a list)."""
    try:
        root = model.model_validate(body).root
    except ValidationError as exc:
        if body == []:
            what = "AG-UI event" if model is AgUiPublishBody else "event"
            raise ApiError(422, "invalid_event", f"no {what} in the body: an empty list") from None
        message, details = _refusal(exc, body)
        raise ApiError(422, "invalid_event", message, details=details) from None
    return cast(list[dict[str, Any]], root if isinstance(root, list) else [root])


def _refusal(exc: ValidationError, body: Any) -> tuple[str, list[dict[str, Any]]]:
    """The message and ``details`` of a refused publish body: the errors of the union's
    member of the body's form, located as the client wrote them."""
    if not isinstance(body, dict | list):
        return "the body must be an event object or a non-empty list of them", []
    listed = isinstance(body, list)
    details = [
        {"loc": list(e["loc"][1:]), "msg": e["msg"].replace("a valid dictionary", "a JSON object")}
        for e in exc.errors(include_url=False, include_context=False, include_input=False)
        if str(e["loc"][0]).startswith("list[") == listed
    ]
    first = details[0]
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
    return f"{'events' if listed else 'event'}{where}: {first['msg']}"[:300], details
