// The demo page's chat tab, built on the client package (@llm-stream-broadcaster/client:
// its BroadcasterChatTransport under the AI SDK's own Chat, its followStream for the list)
// and bundled into broadcaster/http/static/chat.js by `make chat-bundle`.
//
// Two panes hold two Chat instances with the same chat id, as two browser tabs would.
// The chat id lives in the address (#chat=<id>), so a reload finds the chat again: each
// pane loads the messages from the server and resumes the running answer. Stop asks the
// server to cancel (the transport's stop); every pane then sees the answer end with
// `abort`. Closing or reloading the page never cancels anything. History comes newest
// page first (the transport's loadMessages), older pages on demand. Beside the panes, the
// list of the caller's chats (list.mjs), whose one connection (GET /v1/chats/events) also
// tells the page of a turn started in another tab. The Dashboard tab (dashboard.mjs)
// comes in the same bundle; this module shows whichever tab the address names.

import { chatTransport } from "./chat.mjs";
import { Dashboard } from "./dashboard.mjs";
import { ChatList } from "./list.mjs";
import { ChatPane } from "./pane.mjs";

const API = "/v1/chat";
const PAGE = 50; // messages per history page: the newest first, older ones on demand
const LAST_CHAT = "broadcaster-demo-chat";
const OWNER = "demo"; // the `sub` of the chat tokens minted with a key typed in: whose chats
// Who answers: the page's `?provider=` (a built-in provider, or an agent a worker serves
// under that name), else the deployment's default provider.
const PROVIDER = new URLSearchParams(location.search).get("provider") || null;

const created = new Set(); // chats this page made: the server knows nothing of them yet

function newChatId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16)); // 128 random bits
  const id = btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  created.add(id);
  return id;
}

async function failure(res) {
  const text = await res.text();
  let message = text;
  try {
    const body = JSON.parse(text);
    message = body.message || body.detail || body.error || text;
  } catch {
    // not JSON: the text as it came
  }
  return new Error(`HTTP ${res.status}: ${typeof message === "string" ? message : JSON.stringify(message)}`);
}

function apiKey() {
  return ((document.querySelector("#chat-api-key") || {}).value || "").trim();
}

// The chat both panes show: its id, its credential (a chat token when the page was given
// an API key to mint one), the panes themselves, and a transport of its own for what
// belongs to no pane (history pages, stop).
class ChatSession {
  constructor(root, chatId) {
    this.chatId = chatId;
    this.provider = PROVIDER;
    this.root = root;
    this.tokenKey = `broadcaster-chat-token:${chatId}`;
    this.minting = null;
    this.errorEl = root.querySelector("#chat-error");
    this.transport = this.newTransport();
    this.panes = Array.from(root.querySelectorAll("section.chat-pane"), (section, i) => {
      return new ChatPane(section, `Pane ${i + 1}`, this);
    });
    this.seen = new Set(); // the generations the panes already show or follow
    this.onActive = null; // told when the chat is known to the server (its first submit)
  }

  // A transport for this chat (`onChunk`: told each chunk of its answers).
  newTransport(onChunk = () => {}) {
    return chatTransport({ api: API, getToken: (ask) => this.token(ask), provider: this.provider, onChunk });
  }

  // An event of the caller's lifecycle feed (the list's, list.mjs), this chat's only: a
  // turn started anywhere (another tab, another device) is followed; a turn ended is read
  // again by the panes that do not show its end (below), which then show all of it and
  // how it ended.
  lifecycle(event) {
    if (event.chatId !== this.chatId) return;
    if (event.type === "chat-turn-started") this.announced(event);
    else if (event.type === "chat-turn-finished") this.ended();
  }

  // A turn ended: panes waiting for a decision read the chat again, and so do panes that
  // show no end of it (their resume came after the answer's end) or are reading it still.
  ended() {
    for (const pane of this.panes) {
      if (pane.sending) continue;
      const unsettled = pane.waits() || !pane.outcomeEl.dataset.kind;
      if (pane.following || (!pane.busy() && unsettled)) pane.follow();
    }
  }

  // A turn began (here or in another tab): the panes not busy with it load and follow it.
  announced(turn) {
    if (this.seen.has(turn.generationId)) return;
    this.seen.add(turn.generationId);
    for (const pane of this.panes) if (!pane.busy() && !pane.sending) pane.follow();
  }

  // The app's backend would mint chat tokens (and never show the browser a key); the demo
  // mints them with the API key typed into the page.
  async mintToken(key) {
    const res = await fetch(`${API}/${encodeURIComponent(this.chatId)}/tokens`, {
      method: "POST",
      headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
      body: JSON.stringify({ sub: OWNER }),
    });
    if (!res.ok) throw await failure(res);
    const body = await res.json();
    sessionStorage.setItem(this.tokenKey, body.chat_token);
    return body.chat_token;
  }

  // The package's getToken: none on an open deployment; else the token minted earlier for
  // this chat (it outlives a reload), or a new one when there is none or the server
  // refused or expired it (`refresh`).
  async token({ refresh }) {
    const stored = refresh ? null : sessionStorage.getItem(this.tokenKey);
    if (stored) return stored;
    const key = apiKey();
    if (!key) return null;
    this.minting = this.minting || this.mintToken(key).finally(() => (this.minting = null));
    return this.minting;
  }

  // A page of the chat's messages as the server holds them (the newest, or those before
  // message `before`), with the latest answer's generation noted as seen.
  async messages(before = null) {
    const page = await this.transport.loadMessages(this.chatId, { limit: PAGE, before });
    this.seen.add(page.generationId);
    return page;
  }

  // A decision a following pane sent: the panes whose answer ended at the wait follow it.
  decided() {
    for (const pane of this.panes) if (!pane.busy()) pane.follow();
  }

  async stop() {
    this.errorEl.textContent = "";
    try {
      await this.transport.stop(this.chatId);
    } catch (err) {
      this.errorEl.textContent = `stop: ${err.message || err}`;
    }
  }

  // A pane's own message has begun to stream: the other panes follow it.
  started(sender) {
    if (this.onActive) this.onActive();
    for (const pane of this.panes) if (pane !== sender) pane.follow();
  }

  changed() {
    const busy = (this.panes || []).some((p) => p.busy());
    for (const pane of this.panes || []) pane.stopBtn.disabled = !busy;
  }

  followAll() {
    for (const pane of this.panes) pane.follow();
  }

  close() {
    return Promise.all(this.panes.map((p) => p.close()));
  }
}

function chatIdFromHash() {
  const m = /^#chat(?:=([A-Za-z0-9_-]{1,64}))?$/.exec(location.hash);
  if (!m) return undefined;
  return m[1] || null; // null: the chat tab, with no chat chosen yet
}

// The list's requests: with a key typed in, the key asks for the chats of the tokens it
// minted; else the token of the chat on show (its holder's chats), or nothing on an open
// deployment (the chats made with no owner).
function listQuery(currentSession) {
  const key = apiKey();
  if (key) return { owner: OWNER, auth: { headers: { Authorization: `Bearer ${key}` } } };
  return { owner: null, auth: { getToken: (ask) => currentSession()?.token(ask) ?? null } };
}

function main() {
  const root = document.querySelector("#chat-tab");
  const viewers = document.querySelector("#viewers-tab");
  const dashboard = document.querySelector("#dashboard-tab");
  if (!root || !viewers || !dashboard) return;
  new Dashboard(dashboard);
  let session = null;
  let list = null;

  // The list of chats, from the first chat the page shows that the server knows (or
  // the first submit): its requests then carry the chat's credential.
  function showList() {
    const listEl = root.querySelector("#chat-list");
    if (listEl && !list) {
      list = new ChatList(listEl, () => listQuery(() => session), (event) => session && session.lifecycle(event));
    }
  }

  function show() {
    let chatId = chatIdFromHash();
    const onChat = chatId !== undefined;
    const tab = onChat ? "chat" : location.hash === "#dashboard" ? "dashboard" : "viewers";
    root.hidden = tab !== "chat";
    viewers.hidden = tab !== "viewers";
    dashboard.hidden = tab !== "dashboard";
    for (const a of document.querySelectorAll("nav.tabs a")) {
      a.setAttribute("aria-current", String(a.dataset.tab === tab));
    }
    if (!onChat) return;
    if (chatId === null) {
      chatId = sessionStorage.getItem(LAST_CHAT) || newChatId();
      history.replaceState(null, "", `#chat=${chatId}`);
    }
    if (session && session.chatId === chatId) return;
    sessionStorage.setItem(LAST_CHAT, chatId);
    if (session) session.close();
    root.querySelector("#chat-id").textContent = chatId;
    session = new ChatSession(root, chatId);
    session.onActive = showList;
    // A reload, or a chat opened from its address: show it and resume its answer.
    if (!created.has(chatId)) {
      session.followAll();
      showList();
    }
  }

  root.querySelector("#new-chat").addEventListener("click", () => {
    location.hash = `chat=${newChatId()}`;
  });
  for (const btn of root.querySelectorAll("button[data-suggest]")) {
    btn.addEventListener("click", () => {
      if (!session) return;
      const input = session.panes[0].input;
      input.value = btn.dataset.suggest;
      input.focus();
    });
  }
  window.addEventListener("hashchange", show);
  show();
}

main();
