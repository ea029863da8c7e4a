// What binds a decision to the call it approves: the call's id and `inputHash`, the
// lowercase hex SHA-256 of the input's RFC 8785 JSON (members sorted by their names'
// UTF-16 code units, no whitespace, strings and numbers as JSON.stringify writes them).

/** The JSON Canonicalization Scheme (RFC 8785) text of `value`. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v === undefined ? null : v)).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const record = value as Record<string, unknown>;
    // The default sort compares UTF-16 code units, as RFC 8785 asks.
    const names = Object.keys(record)
      .filter((n) => record[n] !== undefined)
      .sort();
    return `{${names.map((n) => `${JSON.stringify(n)}:${canonicalJson(record[n])}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

/** The lowercase hex SHA-256 of `input`'s canonical JSON: a decision's `inputHash`. */
export async function inputHash(input: unknown): Promise<string> {
  const bytes = new TextEncoder().encode(canonicalJson(input));
  const digest = await globalThis.crypto.subtle.digest("SHA-256", bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A message as the AI SDK holds it, as far as approvals need it. */
export interface MessageLike {
  id: string;
  role: string;
  parts: ReadonlyArray<unknown>;
}

interface ToolPartLike {
  toolCallId?: unknown;
  input?: unknown;
  approval?: { id?: unknown };
}

/** The call that approval `approvalId` asks about, found in `messages`, as a decision
 * names it (`toolCallId`, `inputHash`); null if no tool part asks for it. */
export async function approvalBinding(
  messages: ReadonlyArray<MessageLike>,
  approvalId: string,
): Promise<{ toolCallId: string; inputHash: string } | null> {
  for (const message of messages) {
    for (const raw of message.parts) {
      const part = raw as ToolPartLike;
      if (part?.approval?.id === approvalId && typeof part.toolCallId === "string") {
        return { toolCallId: part.toolCallId, inputHash: await inputHash(part.input ?? null) };
      }
    }
  }
  return null;
}
