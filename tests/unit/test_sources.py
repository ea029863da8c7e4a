"""Citations and URL annotations as source parts: Anthropic's ``citations_delta``, Chat
Completions' and the Responses API's ``url_citation`` annotations, through each stream
reader and the one mapping, into the AI SDK's ``source-url``/``source-document`` chunks."""

from __future__ import annotations

from typing import Any

from broadcaster.chat.ui_message import UIMessageFold
from worker.mapping import EventMapper
from worker.providers.anthropic_stream import AnthropicReader
from worker.providers.openai_responses_stream import ResponsesTranslator
from worker.providers.openai_stream import ChunkTranslator
from worker.providers.parts import Source

WEB = {
    "type": "web_search_result_location",
    "url": "https://example.com/a",
    "title": "Example A",
    "encrypted_index": "x",
    "cited_text": "A says so",
}
CHARS = {
    "type": "char_location",
    "cited_text": "the sky is blue",
    "document_index": 0,
    "document_title": "Sky facts",
    "start_char_index": 0,
    "end_char_index": 15,
}
PAGES = {"type": "page_location", "cited_text": "p", "document_index": 1, "document_title": None}


def sources(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if str(e["type"]).startswith("source-")]


def anthropic_events(citations: list[Any]) -> list[dict[str, Any]]:
    raws: list[dict[str, Any]] = [
        {"type": "message_start", "message": {"model": "m", "usage": {"input_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        *(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "citations_delta", "citation": c},
            }
            for c in citations
        ),
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {}},
        {"type": "message_stop"},
    ]
    reader, mapper = AnthropicReader(), EventMapper("g1")
    return [out for raw in raws for event in reader.feed(raw) for out in mapper.feed(event)]


def test_anthropic_citations_become_source_parts() -> None:
    search = {"type": "search_result_location", "source": "https://example.com/b", "title": "B"}
    block = {"type": "content_block_location", "document_title": "Notes", "cited_text": "n"}
    events = anthropic_events([WEB, CHARS, PAGES, search, block])
    assert sources(events) == [
        {
            "type": "source-url",
            "sourceId": "s0.0",
            "url": "https://example.com/a",
            "title": "Example A",
        },
        {
            "type": "source-document",
            "sourceId": "s0.1",
            "mediaType": "text/plain",
            "title": "Sky facts",
        },
        {
            "type": "source-document",
            "sourceId": "s0.2",
            "mediaType": "application/pdf",
            "title": "Document",
        },
        {"type": "source-url", "sourceId": "s0.3", "url": "https://example.com/b", "title": "B"},
        {
            "type": "source-document",
            "sourceId": "s0.4",
            "mediaType": "text/plain",
            "title": "Notes",
        },
    ]
    # in place: after the text that cites them, before the block ends
    kinds = [e["type"] for e in events]
    assert kinds.index("source-url") > kinds.index("text-delta")
    assert kinds.index("text-end") > len(kinds) - 5


def test_anthropic_citations_without_usable_fields_are_skipped() -> None:
    junk: list[Any] = [
        None,
        "x",
        {},
        {"type": "web_search_result_location"},
        {"type": "web_search_result_location", "url": 3},
        {"type": "search_result_location", "source": "not a url"},
        {"type": "something_new", "url": "https://example.com"},
    ]
    events = anthropic_events([*junk, WEB])
    assert sources(events) == [
        {
            "type": "source-url",
            "sourceId": "s0.0",
            "url": "https://example.com/a",
            "title": "Example A",
        }
    ]
    assert events[-1]["type"] == "finish"


def test_chat_completions_url_annotations_become_source_urls() -> None:
    cited = {"url": "https://example.com/c", "title": "C", "start_index": 0, "end_index": 2}
    chunks: list[dict[str, Any]] = [
        {
            "model": "gpt",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}}],
        },
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "annotations": [
                            {"type": "url_citation", "url_citation": cited},
                            {"type": "url_citation", "url_citation": {"title": "no url"}},
                            {"type": "file_citation"},
                            "junk",
                            {
                                "type": "url_citation",
                                "url_citation": {"url": "https://example.com/d"},
                            },
                        ]
                    },
                }
            ]
        },
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    translator, mapper = ChunkTranslator(), EventMapper("g1", id_prefix="a1-")
    neutral = [e for c in chunks for e in translator.feed(c)] + translator.end()
    events = [out for e in neutral for out in mapper.feed(e)]
    assert sources(events) == [
        {"type": "source-url", "sourceId": "a1-s0", "url": "https://example.com/c", "title": "C"},
        {"type": "source-url", "sourceId": "a1-s1", "url": "https://example.com/d"},
    ]
    assert events[-1]["finishReason"] == "stop"


def test_responses_url_annotations_become_source_urls_named_by_place() -> None:
    where = {"output_index": 1, "content_index": 0}
    annotation = {"type": "url_citation", "url": "https://example.com/e", "title": "E"}
    stream: list[dict[str, Any]] = [
        {"type": "response.created", "response": {"id": "resp_1", "model": "gpt"}},
        {"type": "response.output_text.delta", **where, "delta": "Hi"},
        {
            "type": "response.output_text.annotation.added",
            **where,
            "annotation_index": 0,
            "annotation": annotation,
        },
        {
            "type": "response.output_text.annotation.added",
            **where,
            "annotation_index": 1,
            "annotation": {"type": "file_citation"},
        },
        {"type": "response.output_text.annotation.added", **where, "annotation_index": 2},
        {"type": "response.completed", "response": {"usage": {}}},
    ]
    translator, mapper = ResponsesTranslator(), EventMapper("g1")
    events = [out for raw in stream for e in translator.feed(raw) for out in mapper.feed(e)]
    assert sources(events) == [
        {"type": "source-url", "sourceId": "s1.0.0", "url": "https://example.com/e", "title": "E"}
    ]


def test_a_document_source_keeps_its_filename_and_the_fold_keeps_both_kinds() -> None:
    mapper = EventMapper("g1")
    doc = Source("document", "7", title="Report", media_type="application/pdf", filename="r.pdf")
    url = Source("url", "8", url="https://example.com/f")
    events = [*mapper.feed(doc), *mapper.feed(url), *mapper.feed(Source("url", "9"))]
    assert events == [
        {
            "type": "source-document",
            "sourceId": "s7",
            "mediaType": "application/pdf",
            "title": "Report",
            "filename": "r.pdf",
        },
        {"type": "source-url", "sourceId": "s8", "url": "https://example.com/f"},
    ]
    fold = UIMessageFold({"id": "g1", "role": "assistant", "parts": []})
    for event in events:
        fold.feed(event)
    assert [p["type"] for p in fold.message["parts"]] == ["source-document", "source-url"]
