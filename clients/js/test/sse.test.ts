// The SSE parser against the stream format's rules, and against eventsource-parser (what
// the AI SDK's own transport parses with) on the same bytes cut at random places.
import { createParser } from "eventsource-parser";
import { describe, expect, it } from "vitest";
import { SSEParser, type SSEFrame } from "../src/sse.js";

function parseAll(text: string, cuts: number[] = []): SSEFrame[] {
  const parser = new SSEParser();
  const out: SSEFrame[] = [];
  let at = 0;
  for (const cut of [...cuts, text.length]) {
    out.push(...parser.push(text.slice(at, cut)));
    at = cut;
  }
  return out;
}

function reference(text: string): Array<{ id: string | undefined; event: string; data: string }> {
  const out: Array<{ id: string | undefined; event: string; data: string }> = [];
  const parser = createParser({
    onEvent: (e) => out.push({ id: e.id, event: e.event ?? "message", data: e.data }),
  });
  parser.feed(text);
  return out;
}

// A seeded generator, so that a failure can be run again.
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe("SSEParser", () => {
  it("reads the server's frames: id, event, data; ignores comments and retry", () => {
    const text =
      'retry: 1372\n\nid: 7.3f9c0a1b\nevent: text-delta\ndata: {"type":"text-delta","delta":"Hel"}\n\n: ping\n\ndata: [DONE]\n\n';
    const parser = new SSEParser();
    expect(parser.push(text)).toEqual([
      { id: "7.3f9c0a1b", event: "text-delta", data: '{"type":"text-delta","delta":"Hel"}' },
      { id: undefined, event: "message", data: "[DONE]" },
    ]);
    expect(parser.retry).toBe(1372);
  });

  it("takes CRLF, CR and LF line ends, a BOM, and multi-line data", () => {
    const text = "\ufeffdata: a\r\ndata: b\r\n\r\nid: 1\rdata:c\r\rdata\n\n";
    expect(parseAll(text)).toEqual([
      { id: undefined, event: "message", data: "a\nb" },
      { id: "1", event: "message", data: "c" },
      { id: undefined, event: "message", data: "" },
    ]);
  });

  it("keeps a CR at the end of a piece from making an empty line with the next LF", () => {
    expect(parseAll("data: x\r\n\r\n", [8, 9])).toEqual([{ id: undefined, event: "message", data: "x" }]);
  });

  it("ignores an id with a NUL, and a frame with no data", () => {
    expect(parseAll("id: a\0b\ndata: 1\n\nevent: e\n\n")).toEqual([{ id: undefined, event: "message", data: "1" }]);
  });

  it("gives what eventsource-parser gives, however the bytes are cut", () => {
    const random = rng(73);
    const pieces = ["id: 1.aa", "event: text-delta", 'data: {"a":1}', "data: second line", ": ping", "retry: 20", "data:", "event:"];
    const ends = ["\n", "\r\n", "\r"];
    for (let round = 0; round < 300; round++) {
      let text = "";
      const lines = 1 + Math.floor(random() * 20);
      for (let i = 0; i < lines; i++) {
        const end = ends[Math.floor(random() * ends.length)]!;
        text += pieces[Math.floor(random() * pieces.length)]! + end;
        if (random() < 0.4) text += end;
      }
      text += "\n\n";
      const cuts = Array.from({ length: Math.floor(random() * 6) }, () => Math.floor(random() * text.length)).sort((a, b) => a - b);
      const ours = parseAll(text, cuts);
      expect(ours).toEqual(reference(text));
    }
  });
});
