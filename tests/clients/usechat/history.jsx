// A chat page whose server keeps the history, as the AI SDK's persistence guide writes it:
// useChat (React) with the AI SDK's own DefaultChatTransport, whose
// prepareSendMessagesRequest sends only the new message ({id, message}); the page opens
// with the history the server holds (GET /v1/chat/{id}/messages) and resumes a running
// answer. Its address: /usechat/history.html?chat=ID&api=/v1/chat
// It shows what the tests read (browser.mjs): the chat's status, each message's role and
// text; `window.sent` holds every submit's body, `window.edit(id, text)` is the AI SDK's
// edit of a user message, and the Regenerate button its regenerate().

import { useChat } from "@ai-sdk/react";
import { DefaultChatTransport } from "ai";
import { useState } from "react";
import { createRoot } from "react-dom/client";

const params = new URLSearchParams(location.search);
const chatId = params.get("chat");
const api = params.get("api");
window.sent = [];

const transport = new DefaultChatTransport({
  api,
  prepareSendMessagesRequest: ({ id, messages, trigger, messageId }) => {
    const body = { id, message: messages.at(-1), trigger, messageId };
    window.sent.push(body);
    return { body };
  },
});

function Chat({ initial }) {
  const { messages, sendMessage, regenerate, status, error } = useChat({
    id: chatId,
    messages: initial,
    transport,
    resume: true,
  });
  const [text, setText] = useState("");
  window.edit = (messageId, edited) => sendMessage({ text: edited, messageId });
  return (
    <main data-status={status} data-error={error ? error.message : ""}>
      {messages.map((m) => (
        <div key={m.id} className="msg" data-role={m.role} data-id={m.id}>
          {m.parts.map((p, i) => (p.type === "text" ? <span key={i} className="text">{p.text}</span> : null))}
        </div>
      ))}
      <input value={text} onChange={(e) => setText(e.target.value)} />
      <button className="send" onClick={() => { sendMessage({ text }); setText(""); }}>Send</button>
      <button className="regenerate" onClick={() => regenerate()}>Regenerate</button>
    </main>
  );
}

async function main() {
  const res = await fetch(`${api}/${chatId}/messages`);
  const initial = res.ok ? (await res.json()).messages : [];
  createRoot(document.getElementById("root")).render(<Chat initial={initial} />);
}

main();
