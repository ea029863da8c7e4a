import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { approvalBinding, canonicalJson, inputHash } from "../src/chat/approval.js";

describe("canonical JSON (RFC 8785)", () => {
  it("sorts members by UTF-16 code units and writes numbers as JavaScript does", () => {
    expect(canonicalJson({ b: 5, a: 2 })).toBe('{"a":2,"b":5}');
    // RFC 8785 section 3.2.3's ordering example.
    const sorted = canonicalJson({ "\u20ac": 1, "\r": 2, "\ufb33": 3, "1": 4, "\ud83d\ude00": 5, "\u0080": 6, "\u00f6": 7 });
    expect(sorted).toBe('{"\\r":2,"1":4,"\u0080":6,"\u00f6":7,"\u20ac":1,"\ud83d\ude00":5,"\ufb33":3}');
    expect(canonicalJson([1.0, 1e-7, 1e21, "x", null, true, { z: undefined }])).toBe('[1,1e-7,1e+21,"x",null,true,{}]');
  });

  it("hashes the canonical text with SHA-256, lowercase hex", async () => {
    const expected = createHash("sha256").update('{"a":2,"b":5}').digest("hex");
    expect(await inputHash({ b: 5, a: 2 })).toBe(expected);
  });

  it("finds the call an approval asks about", async () => {
    const messages = [
      { id: "u1", role: "user", parts: [{ type: "text", text: "hi" }] },
      {
        id: "a1",
        role: "assistant",
        parts: [{ type: "tool-add", toolCallId: "toolu_1", input: { y: 2, x: 1 }, state: "approval-requested", approval: { id: "apr_1" } }],
      },
    ];
    expect(await approvalBinding(messages, "apr_1")).toEqual({ toolCallId: "toolu_1", inputHash: await inputHash({ x: 1, y: 2 }) });
    expect(await approvalBinding(messages, "apr_2")).toBeNull();
  });
});
