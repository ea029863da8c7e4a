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

// The parts of the answer's latest attempt. After `data-retry` a worker started the
// answer over (replaying the steps it keeps), so what came before it is not shown: the
// same message as the server's GET /v1/chat/{id}/messages.
function latestAttempt(parts) {
  const retry = parts.findLastIndex((p) => p.type === "data-retry");
  return { retry: retry < 0 ? null : parts[retry], parts: parts.slice(retry + 1) };
}

// Text a node shows, set in place: grown text is appended to the text node already there
// (a selection in it stays), other text replaces it. Text, never markup.
function setText(node, value) {
  const text = String(value ?? "");
  const now = node.firstChild; // the one text node textContent made (none for "")
  if (now && text.startsWith(now.data)) {
    if (text.length > now.data.length) now.appendData(text.slice(now.data.length));
  } else node.textContent = text;
}

// What a tool part's box shows: drawn again only when this changes.
function toolShows(part, onDecide) {
  const approval = part.state === "approval-requested" && onDecide ? part.approval.id : null;
  return JSON.stringify([part.state, part.input, part.output, part.errorText, approval]);
}

// A part that shows something (`partKey`), drawn: its key, its node, and the node its
// text goes in (text, reasoning) or what its box shows (a tool call).
function newPart(part, onDecide) {
  if (part.type === "text") {
    const node = el("span", "part-text", part.text);
    return { key: "text", node, textNode: node };
  }
  if (part.type === "reasoning") {
    const node = el("details", "part-reasoning");
    const textNode = el("div", "reasoning-text", part.text);
    node.append(el("summary", null, "reasoning"), textNode);
    return { key: "reasoning", node, textNode };
  }
  return { key: partKey(part), node: toolPart(part, onDecide), shows: toolShows(part, onDecide) };
}

// What a part is, for matching it with the part drawn at its place: its kind, and a tool
// call's id; null for a part that shows nothing (step boundaries, data parts).
function partKey(part) {
  if (part.type === "text" || part.type === "reasoning") return part.type;
  return isTool(part) ? `tool:${part.toolCallId}` : null;
}

// A part drawn before, brought up to date in place: its text grows in the node it is in (a
// reasoning box the reader opened stays open); a tool's box is drawn again if it changed.
function updatePart(drawnPart, part, onDecide) {
  if (drawnPart.textNode) {
    setText(drawnPart.textNode, part.text);
    return;
  }
  const shows = toolShows(part, onDecide);
  if (shows !== drawnPart.shows) {
    const box = toolPart(part, onDecide);
    drawnPart.node.replaceWith(box);
    Object.assign(drawnPart, { node: box, shows });
  }
}

// What each message element shows: the message object it was drawn for last, its role's
// and retry note's elements, its parts as drawn (`newPart`), in order.
const shown = new WeakMap();

function messageElement(message, onDecide) {
  const box = el("div", "msg");
  shown.set(box, { message: null, role: box.appendChild(el("div", "msg-role")), retry: null, parts: [] });
  drawMessage(box, message, onDecide);
  return box;
}

// Brings a message element up to date with `message` (the same message, changed: the
// answer streaming) in place: the parts drawn before are kept and updated, the parts from
// the first that differs in kind on are drawn again, new parts are appended.
function drawMessage(box, message, onDecide) {
  const drawn = shown.get(box);
  drawn.message = message;
  box.dataset.role = message.role;
  box.dataset.messageId = message.id;
  setText(drawn.role, message.role === "user" ? "you" : message.role);
  const { retry, parts } = latestAttempt(message.parts);
  if (retry) {
    if (!drawn.retry) {
      drawn.retry = el("div", "retry-note");
      drawn.role.after(drawn.retry);
    }
    setText(drawn.retry, `started over (attempt ${retry.data?.attempt ?? "?"})`);
  } else if (drawn.retry) {
    drawn.retry.remove();
    drawn.retry = null;
  }
  let i = 0;
  for (const part of parts) {
    const key = partKey(part);
    if (key === null) continue;
    const before = drawn.parts[i];
    if (before && before.key === key) updatePart(before, part, onDecide);
    else {
      for (const gone of drawn.parts.splice(i)) gone.node.remove();
      const fresh = newPart(part, onDecide);
      drawn.parts.push(fresh);
      box.appendChild(fresh.node);
    }
    i += 1;
  }
  for (const gone of drawn.parts.splice(i)) gone.node.remove();
}

// What each container shows: its message elements by message id, and the approval
// handler their buttons call. The chat's state puts a new object in place of a message
// that changed and keeps the others as they were (chat.mjs): an element whose message is
// the very object it was drawn for is left untouched; one whose message changed (the
// answer streaming) is updated in place (`drawMessage`), so what the reader does in it (a
// reasoning box opened, text selected) stays.
const containers = new WeakMap();

// Draws `messages` in `container`, in their order: the element drawn before for each
// message (by id), brought up to date, a new one for the others; the elements of messages
// no longer there go. `onDecide(approvalId, approved)`: what the approval buttons call
// (the one of the latest draw, also from an element drawn before it); none, no buttons.
export function renderMessages(container, messages, onDecide) {
  let state = containers.get(container);
  if (!state || state.decides !== Boolean(onDecide)) {
    state = { decides: Boolean(onDecide), byId: new Map(), onDecide };
    containers.set(container, state);
  }
  state.onDecide = onDecide;
  const decide = onDecide && ((id, approved) => state.onDecide(id, approved));
  const nearBottom = container.scrollHeight - container.scrollTop - container.clientHeight < 40;
  const boxes = new Set();
  const byId = new Map();
  for (const message of messages) {
    let box = state.byId.get(message.id);
    if (!box || boxes.has(box)) box = messageElement(message, decide); // an id seen twice: its own
    else if (shown.get(box).message !== message) drawMessage(box, message, decide);
    boxes.add(box);
    if (!byId.has(message.id)) byId.set(message.id, box);
  }
  state.byId = byId;
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
