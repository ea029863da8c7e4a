// CopilotKit's React chat (v2: CopilotKitProvider, CopilotChat) with no backend of its
// own: its runtime URL is the broadcaster's /v1/agui (docs/agui.md), so `/info`, the run,
// `connect` (on load: the thread's history, then its running answer) and the stop are the
// broadcaster's. The thread is the chat: ?thread=<id> (a chat id of the broadcaster's).
//
// Build: npm ci && npm run build  ->  dist/app.js, dist/app.css (index.html loads them).
// Serve index.html and dist/ from the broadcaster's origin (or set ?runtime= to its
// /v1/agui URL when it allows the page's origin).

import { CopilotChat, CopilotKitProvider } from "@copilotkit/react-core/v2";
import "@copilotkit/react-core/v2/styles.css";
import React from "react";
import { createRoot } from "react-dom/client";

const params = new URLSearchParams(window.location.search);
const runtimeUrl = params.get("runtime") || `${window.location.origin}/v1/agui`;
const threadId = params.get("thread") || "copilotkit-example";
const agentId = params.get("agent") || "default";

function App() {
  return (
    <CopilotKitProvider runtimeUrl={runtimeUrl} showDevConsole={false} enableInspector={false}>
      <div style={{ height: "100vh" }}>
        <CopilotChat agentId={agentId} threadId={threadId} />
      </div>
    </CopilotKitProvider>
  );
}

createRoot(document.getElementById("root")).render(<App />);
