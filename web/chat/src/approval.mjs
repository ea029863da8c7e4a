// What binds a decision to the call it approves (docs/resuming.md): the call's id and
// `inputHash`, the lowercase hex SHA-256 of the input's RFC 8785 JSON (members sorted by
// their names' UTF-16 code units, no whitespace, JSON.stringify's strings and numbers).

export function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value !== null && typeof value === "object") {
    // Default sort compares UTF-16 code units, as RFC 8785 asks.
    const names = Object.keys(value).filter((n) => value[n] !== undefined).sort();
    return `{${names.map((n) => `${JSON.stringify(n)}:${canonical(value[n])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

export async function inputHash(input) {
  const bytes = new TextEncoder().encode(canonical(input));
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// The decision's binding for the tool part that asks for approval `approvalId`, found
// in `messages`; empty if no part asks for it.
export async function boundTo(messages, approvalId) {
  for (const message of messages) {
    for (const part of message.parts ?? []) {
      if (part.approval?.id === approvalId && part.toolCallId) {
        return { toolCallId: part.toolCallId, inputHash: await inputHash(part.input ?? null) };
      }
    }
  }
  return {};
}
