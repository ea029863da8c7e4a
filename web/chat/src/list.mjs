// The chat tab's list of chats: the caller's chats, newest first (GET /v1/chats), kept
// up to date by one connection that carries their lifecycle alone (GET /v1/chats/events:
// a turn started, waiting for a person, finished, a chat deleted), not one per chat. Each
// entry opens its chat (#chat=<id>). The same connection tells the chat on show of its
// own turns (`onEvent`): the page holds one feed, not one per chat besides the list's
// (a browser gives a site six HTTP/1.1 connections, shared by its tabs).

import { followStream } from "@llm-stream-broadcaster/client";

const STATUS = { running: "…", waiting: "waiting", finished: "" };

export class ChatList {
  // `el`: the list's element; `query()`: whose chats and the requests' credential
  // ({owner, auth}: the package's headers or getToken); `onEvent(event)`: told each
  // lifecycle event.
  constructor(el, query, onEvent = () => {}) {
    this.el = el;
    this.query = query;
    this.onEvent = onEvent;
    this.controller = new AbortController();
    this.lastId = undefined;
    this.pending = null;
    this.done = this.follow();
    this.refresh();
  }

  static url(path, owner) {
    return owner ? `${path}?owner=${encodeURIComponent(owner)}` : path;
  }

  refresh() {
    // Several events in a row: one reload.
    this.pending = this.pending || setTimeout(() => this.load().finally(() => (this.pending = null)), 100);
  }

  async load() {
    try {
      const { owner, auth } = this.query();
      const token = auth.getToken && (await auth.getToken({ refresh: false }));
      const headers = auth.headers ?? (token ? { Authorization: `Bearer ${token}` } : {});
      const res = await fetch(ChatList.url("/v1/chats", owner), { headers });
      if (!res.ok) return;
      this.render((await res.json()).chats);
    } catch {
      // the list waits for the next event
    }
  }

  render(chats) {
    this.el.replaceChildren(
      ...chats.map((chat) => {
        const li = document.createElement("li");
        const a = document.createElement("a");
        a.href = `#chat=${chat.id}`;
        a.textContent = chat.title || chat.id;
        const status = document.createElement("span");
        status.className = "chat-list-status";
        status.dataset.status = chat.status;
        status.textContent = STATUS[chat.status] ?? chat.status;
        li.append(a, " ", status);
        li.dataset.chat = chat.id;
        return li;
      }),
    );
  }

  // The feed, resumed after the last event seen by the package's followStream; a refusal
  // (a token not minted yet, a deployment restarting) is tried again a second later.
  async follow() {
    const { signal } = this.controller;
    while (!signal.aborted) {
      try {
        const { owner, auth } = this.query();
        const url = ChatList.url("/v1/chats/events", owner);
        for await (const event of followStream(url, { ...auth, lastEventId: this.lastId, signal })) {
          if (event.id) this.lastId = event.id;
          if (!event.type.startsWith("chat-")) continue;
          this.refresh();
          this.onEvent(event.data);
        }
      } catch {
        // refused: again shortly, from the last event seen
      }
      if (!signal.aborted) await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }

  close() {
    this.controller.abort();
    return this.done;
  }
}
