// One pane of the chat tab: its own AI SDK Chat (same chat id as the other pane), the
// messages as that Chat holds them, a composer, and how the last answer ended.

import { BrowserChat } from "./chat.mjs";
import { el, renderMessages } from "./render.mjs";

const OUTCOMES = {
  finish: (c) => `finished: ${c.finishReason || "?"}`,
  abort: (c) => `aborted${c.reason ? `: ${c.reason}` : ""}`,
  error: (c) => `error: ${c.errorText || "unknown error"}`,
};
// A chat's status while its latest answer goes on (a pane resumes it)...
const GOING_ON = ["running", "waiting", "queued"];
// ...and once it has ended: how a pane shows an answer that ended before it looked (the
// page holds all of it; no chunk tells its finish reason).
const ENDED = {
  completed: ["finish", "finished"],
  cancelled: ["abort", "aborted"],
  failed: ["error", "error"],
};

export class ChatPane {
  // `session`: the chat the panes share (its id, its transports, its history, stop) and
  // `session.started(pane)`, told when this pane's own submit has begun to stream.
  constructor(section, title, session) {
    this.section = section;
    this.session = session;
    this.sending = false;
    this.following = false;
    this.followAgain = false; // told to follow while following: look once more after
    this.older = null; // the `before` of the history page before those shown
    this.closed = false;
    this.frame = 0;
    this.build(title);
    this.transport = session.newTransport((chunk) => this.onChunk(chunk));
    this.chat = new BrowserChat({ id: session.chatId, transport: this.transport, onChange: () => this.schedule() });
    this.draw();
  }

  build(title) {
    const header = el("header");
    header.appendChild(el("h2", null, title));
    this.statusEl = el("span", "state chat-status");
    header.appendChild(this.statusEl);
    this.olderBtn = el("button", "older", "Load older messages");
    this.olderBtn.type = "button";
    this.olderBtn.hidden = true;
    this.olderBtn.addEventListener("click", () => this.loadOlder());
    this.messagesEl = el("div", "messages");
    this.outcomeEl = el("div", "status outcome");
    this.errorEl = el("div", "pane-error");
    this.form = el("form", "composer");
    this.form.autocomplete = "off";
    this.input = el("input", "chat-input");
    this.input.placeholder = "Message…";
    this.input.setAttribute("aria-label", `${title}: message`);
    this.sendBtn = el("button", "primary send", "Send");
    this.sendBtn.type = "submit";
    this.stopBtn = el("button", "stop", "Stop");
    this.stopBtn.type = "button";
    this.form.append(this.input, this.sendBtn, this.stopBtn);
    this.section.replaceChildren(header, this.olderBtn, this.messagesEl, this.outcomeEl, this.errorEl, this.form);
    this.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const text = this.input.value.trim();
      if (text) this.send(text);
    });
    this.stopBtn.addEventListener("click", () => this.session.stop());
  }

  busy() {
    return this.chat.status === "submitted" || this.chat.status === "streaming";
  }

  // Its answer ended at a tool call that waits for a person (decided elsewhere, it goes
  // on without this pane knowing).
  waits() {
    const last = this.chat.messages.at(-1);
    const asked = ["approval-requested", "approval-responded"];
    return last?.role === "assistant" && last.parts.some((p) => asked.includes(p.state));
  }

  onChunk(chunk) {
    if (chunk.type === "start") {
      this.setOutcome("streaming", "");
      if (this.sending) {
        this.sending = false;
        this.session.started(this);
      }
    } else if (chunk.type === "finish" && chunk.finishReason === "tool-calls") {
      // The answer stopped at a tool call that waits for a person: not over yet.
      this.setOutcome("waiting", "waiting for a decision");
    } else if (OUTCOMES[chunk.type]) {
      this.setOutcome(chunk.type, OUTCOMES[chunk.type](chunk));
    }
  }

  setOutcome(kind, text) {
    this.outcomeEl.dataset.kind = kind;
    this.outcomeEl.textContent = text;
  }

  // One draw per frame while the tab shows; a hidden tab gets no frames (the browser
  // pauses them), so it draws on a timer and its page is current when it shows again.
  schedule() {
    if (!this.frame && !this.closed) {
      const draw = () => {
        this.frame = 0;
        this.draw();
      };
      this.frame = document.hidden ? -setTimeout(draw, 0) : requestAnimationFrame(draw);
    }
  }

  unschedule() {
    if (this.frame < 0) clearTimeout(-this.frame);
    else if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
  }

  draw() {
    renderMessages(this.messagesEl, this.chat.messages, (id, approved) => this.decide(id, approved));
    this.statusEl.textContent = this.chat.status;
    this.statusEl.dataset.state = this.chat.status;
    this.section.dataset.status = this.chat.status;
    this.errorEl.textContent = this.chat.error ? this.chat.error.message : "";
    this.sendBtn.disabled = this.busy();
    this.session.changed();
    if (!this.busy() && !this.following && this.outcomeEl.dataset.kind === "finish" && this.waits()) {
      // Shown as finished while it still stops at a tool call: a replay that ended late
      // wrote an older page over the one read. Read the chat again.
      this.setOutcome("waiting", "waiting for a decision");
      setTimeout(() => this.follow(), 200);
    }
  }

  async send(text) {
    this.input.value = "";
    this.setOutcome("", "");
    this.sending = true;
    try {
      // The transport sends the new message alone (the server keeps the chat): the pages
      // not loaded yet stay unloaded.
      await this.chat.sendMessage({ text });
    } finally {
      this.sending = false;
    }
  }

  // The history page before the messages shown, put before them: one page at a time (a
  // click while one loads, a double click's second, asks for nothing more). A page must
  // join what the pane shows when it arrives: a pane that read the chat's newest page
  // meanwhile (a turn begun in another pane or tab) asks again from its new first
  // message, rather than leave a gap between the two.
  async loadOlder() {
    if (!this.older || this.olderBtn.disabled) return;
    this.olderBtn.disabled = true;
    try {
      for (let tries = 0; this.older && tries < 3 && !this.closed; tries += 1) {
        const before = this.older;
        const page = await this.session.messages(before);
        if (this.older !== before) continue;
        this.chat.messages = [...page.messages, ...this.chat.messages];
        this.older = page.older;
        this.olderBtn.hidden = !this.older;
        break;
      }
    } catch (err) {
      this.session.errorEl.textContent = `older messages: ${err.message || err}`;
    } finally {
      this.olderBtn.disabled = false;
    }
  }

  // A decision on a tool call the answer waits on, by the transport's respondToApproval:
  // a pane whose answer ended at the wait (its Chat is ready) lets the SDK send it (the
  // Chat's automatic request, whose answer continues the message); a pane that still
  // follows the generation records it locally and posts it to the server, bound to the
  // call and the hash of the input it was shown, then the panes that wait follow it.
  async decide(id, approved) {
    const following = this.busy();
    const reason = approved ? undefined : "denied in the demo";
    this.session.errorEl.textContent = "";
    try {
      await this.transport.respondToApproval(this.chat, { id, approved, reason });
    } catch (err) {
      this.session.errorEl.textContent = `approval: ${err.message || err}`;
      return;
    }
    if (following) this.session.decided();
  }

  // What another tab does: load the chat's newest page of messages from the server, then
  // resume the answer if one runs, waits or is queued (the server replays it from its
  // first event), or show how it ended if it had (a quick answer can end before the page
  // is read). Told again while at it (a turn announced while the page loaded, whose page
  // may predate the turn), it looks once more when done, so no turn is passed over.
  async follow() {
    if (this.following) {
      this.followAgain = true;
      return;
    }
    this.following = true;
    this.setOutcome("", "");
    this.section.dataset.following = "true";
    try {
      let resumed = null; // the generation this follow resumed: its stream showed its end
      do {
        this.followAgain = false;
        const { messages, status, older, generationId } = await this.session.messages();
        if (this.busy() || this.closed) break;
        this.chat.messages = messages;
        this.older = older;
        this.olderBtn.hidden = !older;
        if (GOING_ON.includes(status)) {
          await this.chat.resumeStream();
          // A resume that showed nothing came after the answer's end (204): the turn's
          // end (``Session.ended``) has this pane read it again.
          if (this.outcomeEl.dataset.kind) resumed = generationId;
        } else if (this.waits()) {
          // The page read holds the answer as it stopped at a tool call waiting for a
          // person: its turn ending tells this pane to read it again.
          this.setOutcome("waiting", "waiting for a decision");
        } else if (ENDED[status] && resumed !== generationId) {
          this.setOutcome(...ENDED[status]);
        }
      } while (this.followAgain && !this.closed && !this.busy());
    } catch (err) {
      this.errorEl.textContent = String(err.message || err);
    } finally {
      this.following = false;
      this.followAgain = false;
      if (!this.closed) delete this.section.dataset.following;
      // Drawn now, not at the next frame: the outcome just set and the page read show
      // together (a hidden tab has no frames).
      if (!this.closed) {
        this.unschedule();
        this.draw();
      }
    }
  }

  // The page leaves this chat: drop the connections, which never cancels the answer. The
  // section is the next chat's from now on: this pane draws nothing more.
  close() {
    this.closed = true;
    this.unschedule();
    return this.chat.stop();
  }
}
