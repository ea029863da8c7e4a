// CopilotKit's React chat (v2: CopilotKitProvider, CopilotChat) with no backend of its
// own: its runtime URL is the broadcaster's /v1/agui (docs/agui.md), so `/info`, the run,
// `connect` (on load: the thread's history, then its running answer) and the stop are the
// broadcaster's. The thread is the chat: ?thread=<id> (a chat id of the broadcaster's).
// A tool call that waits for a person ends the run with an AG-UI interrupt; CopilotKit's
// `useInterrupt` shows it in the chat (Approve / Deny), and its `resolve` / `cancel` send
// the next run with `resume`, which the broadcaster takes as the decision.
//
// Build: npm ci && npm run build  ->  dist/app.js, dist/app.css (index.html loads them),
// and the chunks app.js imports when a message needs them (Shiki's grammars and themes,
// Mermaid, KaTeX: most of its script), so a page loads only the part it shows.
// Serve index.html and dist/ from the broadcaster's origin (or set ?runtime= to its
// /v1/agui URL when it allows the page's origin).

import { CopilotChat, CopilotKitProvider, useAgent, useInterrupt } from "@copilotkit/react-core/v2";
import "@copilotkit/react-core/v2/styles.css";
import React from "react";
import { createRoot } from "react-dom/client";

const params = new URLSearchParams(window.location.search);
const runtimeUrl = params.get("runtime") || `${window.location.origin}/v1/agui`;
const threadId = params.get("thread") || "copilotkit-example";
const agentId = params.get("agent") || "default";

// The call an interrupt is about (its name and arguments), from the agent's messages.
function toolCall(messages, id) {
  for (const m of messages) {
    const found = (m.toolCalls || []).find((c) => c.id === id);
    if (found) return found.function;
  }
  return null;
}

function Approval({ interrupt, resolve, cancel }) {
  const { agent } = useAgent({ agentId });
  const call = toolCall(agent.messages, interrupt?.toolCallId);
  return (
    <div data-testid="approval" style={{ border: "1px solid #ccc", borderRadius: 8, padding: 12, margin: "8px 0" }}>
      <p>
        Run <code>{call ? call.name : "a tool"}</code> with <code>{call ? call.arguments : "?"}</code>?
      </p>
      <button type="button" data-testid="approve" onClick={() => resolve({ approved: true })}>
        Approve
      </button>{" "}
      <button type="button" data-testid="deny" onClick={() => cancel()}>
        Deny
      </button>
    </div>
  );
}

function Approvals() {
  useInterrupt({
    agentId,
    enabled: ({ value }) => value?.reason === "tool_approval",
    render: (props) => <Approval {...props} />,
  });
  return null;
}

function App() {
  return (
    <CopilotKitProvider runtimeUrl={runtimeUrl} showDevConsole={false} enableInspector={false}>
      <Approvals />
      <div style={{ height: "100vh" }}>
        <CopilotChat agentId={agentId} threadId={threadId} />
      </div>
    </CopilotKitProvider>
  );
}

createRoot(document.getElementById("root")).render(<App />);
