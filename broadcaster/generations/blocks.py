"""The content blocks of a generation request's messages, as Anthropic's Messages API
has them: known types checked field by field (base64 decoded, an image's or a PDF's
magic number read), any other type (Anthropic's server-tool results and whatever comes
next) passed through for Anthropic to judge."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    JsonValue,
    Tag,
    model_validator,
)

from broadcaster.core import names

_IMAGE_MAGIC = {
    "image/png": (b"\x89PNG",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),
}


def _base64(data: str) -> str:
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64") from None
    return data


def _head(data: str) -> bytes:
    """The first bytes of valid base64 data (enough for a file's magic number)."""
    return base64.b64decode(data[:24])


Base64Data = Annotated[str, AfterValidator(_base64)]


class PassThrough(BaseModel):
    """Fields beyond the checked ones pass through (cache_control, citations, ...)."""

    model_config = ConfigDict(extra="allow", strict=True)


class TextBlock(PassThrough):
    type: Literal["text"]
    text: str


class Base64Image(PassThrough):
    type: Literal["base64"]
    media_type: Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
    data: Base64Data

    @model_validator(mode="after")
    def _image(self) -> Base64Image:
        if not _head(self.data).startswith(_IMAGE_MAGIC[self.media_type]):
            raise ValueError(f"data is not {self.media_type} data")
        return self


class UrlSource(PassThrough):
    type: Literal["url"]
    url: str = Field(pattern=r"^https?://", max_length=8192)


class ImageBlock(PassThrough):
    type: Literal["image"]
    source: Annotated[Base64Image | UrlSource, Field(discriminator="type")]


class Base64Pdf(PassThrough):
    type: Literal["base64"]
    media_type: Literal["application/pdf"]
    data: Base64Data

    @model_validator(mode="after")
    def _pdf(self) -> Base64Pdf:
        if not _head(self.data).startswith(b"%PDF"):
            raise ValueError("data is not a PDF document")
        return self


class PlainText(PassThrough):
    type: Literal["text"]
    media_type: Literal["text/plain"]
    data: str


def as_blocks(value: Any) -> Any:
    # A string is shorthand for one text block (Anthropic's own rule).
    return [{"type": "text", "text": value}] if isinstance(value, str) else value


class ContentSource(PassThrough):
    type: Literal["content"]
    content: Annotated[
        list[Annotated[TextBlock | ImageBlock, Field(discriminator="type")]],
        BeforeValidator(as_blocks, json_schema_input_type=str | list[TextBlock | ImageBlock]),
    ]


class DocumentBlock(PassThrough):
    type: Literal["document"]
    source: Annotated[
        Base64Pdf | PlainText | UrlSource | ContentSource, Field(discriminator="type")
    ]
    title: str | None = None
    context: str | None = None


class ToolUseBlock(PassThrough):
    type: Literal["tool_use"]
    id: str = Field(pattern=names.TOOL_USE_ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    input: dict[str, Any]


_ResultPart = Annotated[TextBlock | ImageBlock | DocumentBlock, Field(discriminator="type")]


class ToolResultBlock(PassThrough):
    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1)
    content: (
        Annotated[
            list[_ResultPart],
            BeforeValidator(as_blocks, json_schema_input_type=str | list[_ResultPart]),
        ]
        | None
    ) = None
    is_error: bool | None = None


class ThinkingBlock(PassThrough):
    type: Literal["thinking"]
    thinking: str
    signature: str
    """Empty for thinking from a provider that does not sign it (OpenAI-compatible
    servers): such a block is dropped on its way to Anthropic, which would refuse it."""


class RedactedThinkingBlock(PassThrough):
    type: Literal["redacted_thinking"]
    data: str = Field(min_length=1)


BLOCK_TYPES = frozenset(
    {"text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking"}
)
"""The content block types checked field by field; any other passes through as sent."""

_CHECKED_TYPES: list[JsonValue] = [*sorted(BLOCK_TYPES)]


class OtherBlock(PassThrough):
    """Any other block type: passed through as sent. Its documented ``type`` excludes the
    checked ones, as ``Block``'s discriminator does: else a text block would match both
    ``TextBlock`` and this in the schema's ``oneOf``, and the document would refuse it."""

    type: str = Field(
        pattern=names.BLOCK_TYPE_PATTERN,
        json_schema_extra={"not": {"enum": _CHECKED_TYPES}},
    )


def _block_tag(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if isinstance(kind, str) and kind in BLOCK_TYPES else "other"


Block = Annotated[
    Annotated[TextBlock, Tag("text")]
    | Annotated[ImageBlock, Tag("image")]
    | Annotated[DocumentBlock, Tag("document")]
    | Annotated[ToolUseBlock, Tag("tool_use")]
    | Annotated[ToolResultBlock, Tag("tool_result")]
    | Annotated[ThinkingBlock, Tag("thinking")]
    | Annotated[RedactedThinkingBlock, Tag("redacted_thinking")]
    | Annotated[OtherBlock, Tag("other")],
    Discriminator(_block_tag),
]


class Message(PassThrough):
    role: Literal["user", "assistant"]
    content: Annotated[
        list[Block], BeforeValidator(as_blocks, json_schema_input_type=str | list[Block])
    ]
