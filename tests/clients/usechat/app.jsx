// A chat page as an app would write it with the client package: useChat (React) with
// BroadcasterChatTransport, following the chat (a turn sent from another tab shows here),
// Stop, Approve / Deny. Its chat id, API and token URL come from the page's address:
//   /usechat/index.html?chat=ID&api=/v1/chat[&token=/path/that/mints/a/token]
// It shows what the tests read in data attributes: the chat's status, each message's role,
// each part's type and text.

import { useChat } from "@ai-sdk/react";
import { BroadcasterChatTransport } from "@llm-stream-broadcaster/client";
import { lastAssistantMessageIsCompleteWithApprovalResponses } from "ai";
import { useEffect, useState } from "react";
import { createRoot } from "react-dom/client";

const params = new URLSearchParams(location.search);
const chatId = params.get("chat");
const tokenUrl = params.get("token");
window.tokensAsked = [];

async function getToken({ refresh }) {
  if (!tokenUrl) return null;
  window.tokensAsked.push(refresh);
  const res = await fetch(tokenUrl, { method: "POST" });
  return (await res.json()).chat_token;
}

function Part({ part, onDecide }) {
  if (part.type === "text") return <span className="text">{part.text}</span>;
  if (!part.type.startsWith("tool-")) return null;
  return (
    <div className="tool" data-state={part.state}>
      {part.type} {part.state}
      {part.state === "approval-requested" && (
        <>
          <button className="approve" onClick={() => onDecide(part.approval.id, true)}>Approve</button>
          <button className="deny" onClick={() => onDecide(part.approval.id, false)}>Deny</button>
        </>
      )}
    </div>
  );
}

const transport = new BroadcasterChatTransport({ api: params.get("api"), getToken });

function Chat({ initial }) {
  const chat = useChat({
    id: chatId,
    messages: initial,
    transport,
    resume: true,
    sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithApprovalResponses,
  });
  const { messages, setMessages, resumeStream, sendMessage, status, stop, error } = chat;
  const [text, setText] = useState("");
  // The chat's turns as they begin, here or in another tab.
  useEffect(() => transport.followChat(chatId, { resumeStream, setMessages }), [resumeStream, setMessages]);
  const decide = (id, approved) => transport.respondToApproval(chat, { id, approved });
  return (
    <main data-status={status} data-error={error ? error.message : ""}>
      {messages.map((m) => (
        <div key={m.id} className="msg" data-role={m.role}>
          {m.parts.map((p, i) => <Part key={i} part={p} onDecide={decide} />)}
        </div>
      ))}
      <form onSubmit={(e) => { e.preventDefault(); sendMessage({ text }); setText(""); }}>
        <input value={text} onChange={(e) => setText(e.target.value)} />
        <button type="submit" className="send">Send</button>
        <button type="button" className="stop" onClick={() => stop()}>Stop</button>
      </form>
    </main>
  );
}

// The chat so far (after a reload, or opened in another tab), then the chat: useChat
// resumes its running answer (resume: true).
function Page() {
  const [initial, setInitial] = useState(null);
  useEffect(() => void transport.loadMessages(chatId).then((page) => setInitial(page.messages)), []);
  return initial === null ? null : <Chat initial={initial} />;
}

createRoot(document.getElementById("root")).render(<Page />);
