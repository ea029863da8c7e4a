// Draws a chat's UI messages. Every string from the model or the user goes in as text
// (textContent), never as markup.

export function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = String(text);
  return e;
}

function json(value) {
  if (value === undefined) return "";
  return typeof value === "string" ? value : JSON.stringify(value, null, 2);
}

function isTool(part) {
  return part.type === "dynamic-tool" || part.type.startsWith("tool-");
}

function toolPart(part, onDecide) {
  const name = part.type === "dynamic-tool" ? part.toolName : part.type.slice("tool-".length);
  const box = el("div", "tool");
  box.dataset.toolName = name;
  box.dataset.toolState = part.state;
  box.dataset.toolCallId = part.toolCallId;
  box.appendChild(el("div", "tool-name", `tool: ${name} · ${part.state}`));
  if (part.input !== undefined) {
    box.appendChild(el("div", "tool-label", "input"));
    box.appendChild(el("pre", "tool-input", json(part.input)));
  }
  if (part.state === "output-available") {
    box.appendChild(el("div", "tool-label", "output (run by the worker)"));
    box.appendChild(el("pre", "tool-output", json(part.output)));
  } else if (part.state === "output-error") {
    box.appendChild(el("pre", "tool-error", part.errorText));
  } else if (part.state === "output-denied") {
    box.appendChild(el("div", "tool-denied", "denied"));
  } else if (part.state === "approval-requested" && onDecide) {
    // The worker waits for a person before it runs this call: any pane may decide.
    const row = el("div", "tool-approval");
    const approve = el("button", "approve", "Approve");
    const deny = el("button", "deny", "Deny");
    for (const btn of [approve, deny]) btn.type = "button";
    approve.addEventListener("click", () => onDecide(part.approval.id, true));
    deny.addEventListener("click", () => onDecide(part.approval.id, false));
    row.append(el("span", "tool-label", "waiting for your decision"), approve, deny);
    box.appendChild(row);
  }
  return box;
}

function partElement(part, onDecide) {
  if (part.type === "text") return el("span", "part-text", part.text);
  if (part.type === "reasoning") {
    const box = el("details", "part-reasoning");
    box.appendChild(el("summary", null, "reasoning"));
    box.appendChild(el("div", "reasoning-text", part.text));
    return box;
  }
  if (isTool(part)) return toolPart(part, onDecide);
  return null; // step boundaries, data parts: nothing to show
}

// The parts of the answer's latest attempt. After `data-retry` a worker started the
// answer over (replaying the steps it keeps), so what came before it is not shown: the
// same message as the server's GET /v1/chat/{id}/messages.
function latestAttempt(parts) {
  const retry = parts.findLastIndex((p) => p.type === "data-retry");
  return { retry: retry < 0 ? null : parts[retry], parts: parts.slice(retry + 1) };
}

// What each container shows: the element drawn for each message object, and the approval
// handler its buttons call. The chat's state puts a new object in place of a message that
// changed and keeps the others as they were (chat.mjs), so an element drawn for an object
// still shows it: while an answer streams, only that answer's element is built again.
const drawn = new WeakMap();

function messageElement(message, onDecide) {
  const box = el("div", "msg");
  box.dataset.role = message.role;
  box.dataset.messageId = message.id;
  box.appendChild(el("div", "msg-role", message.role === "user" ? "you" : message.role));
  const { retry, parts } = latestAttempt(message.parts);
  if (retry) box.appendChild(el("div", "retry-note", `started over (attempt ${retry.data?.attempt ?? "?"})`));
  for (const part of parts) {
    const node = partElement(part, onDecide);
    if (node) box.appendChild(node);
  }
  return box;
}

// Draws `messages` in `container`, in their order: an element kept from an earlier draw for
// each message object drawn before, a new one for the others; the elements of messages no
// longer there go. `onDecide(approvalId, approved)`: what the approval buttons call (the
// one of the latest draw, also from an element drawn before it); none, no buttons.
export function renderMessages(container, messages, onDecide) {
  let state = drawn.get(container);
  if (!state || state.decides !== Boolean(onDecide)) {
    state = { decides: Boolean(onDecide), elements: new WeakMap(), onDecide };
    drawn.set(container, state);
  }
  state.onDecide = onDecide;
  const decide = onDecide && ((id, approved) => state.onDecide(id, approved));
  const nearBottom = container.scrollHeight - container.scrollTop - container.clientHeight < 40;
  const boxes = new Set(); // a message object twice in the list (none is) gets two elements
  for (const message of messages) {
    let box = state.elements.get(message);
    if (!box || boxes.has(box)) {
      box = messageElement(message, decide);
      state.elements.set(message, box);
    }
    boxes.add(box);
  }
  // Into place: the elements already where they belong stay put, untouched.
  let next = container.firstChild;
  for (const box of boxes) {
    if (box === next) next = next.nextSibling;
    else container.insertBefore(box, next);
  }
  while (next) {
    const after = next.nextSibling;
    next.remove();
    next = after;
  }
  if (nearBottom) container.scrollTop = container.scrollHeight;
}
