// The demo page's chat panes as the browser scripts read them, wait on them and type into
// them (chat.mjs, tabs.mjs, agent_chat.mjs, render.mjs): what each pane shows, the two
// states a step waits for, and a message sent from a pane.

// What each pane of `page` shows: its Chat's status, how the last answer ended, its
// messages (their text, the retry note, their tool parts).
export function readPanes(page) {
  return page.evaluate(() =>
    Array.from(document.querySelectorAll("#chat-tab section.chat-pane"), (s) => ({
      status: s.dataset.status || "",
      following: s.dataset.following === "true",
      outcome: s.querySelector(".outcome").dataset.kind || "",
      outcome_text: s.querySelector(".outcome").textContent,
      error: s.querySelector(".pane-error").textContent,
      messages: Array.from(s.querySelectorAll(".msg"), (m) => ({
        id: m.dataset.messageId,
        role: m.dataset.role,
        text: Array.from(m.querySelectorAll(".part-text"), (t) => t.textContent).join(""),
        retry: m.querySelector(".retry-note")?.textContent ?? null,
        tools: Array.from(m.querySelectorAll(".tool"), (t) => ({
          name: t.dataset.toolName,
          state: t.dataset.toolState,
          call_id: t.dataset.toolCallId,
          input: t.querySelector(".tool-input")?.textContent ?? null,
          output: t.querySelector(".tool-output")?.textContent ?? null,
        })),
      })),
    })),
  );
}

// Every pane of `page` idle with `count` messages, the last answer ended by `outcome`.
export function turnEnded(page, count, outcome, timeout) {
  return page.waitForFunction(
    ({ count, outcome }) =>
      Array.from(document.querySelectorAll("#chat-tab section.chat-pane")).every(
        (s) =>
          s.dataset.status === "ready" &&
          s.dataset.following !== "true" &&
          s.querySelectorAll(".msg").length === count &&
          (s.querySelector(".outcome").dataset.kind || "") === outcome,
      ),
    { count, outcome },
    { timeout, polling: 100 },
  );
}

// Every pane of `page` shows some of answer number `count / 2`, still streaming.
export function answerShown(page, count, timeout) {
  return page.waitForFunction(
    (count) =>
      Array.from(document.querySelectorAll("#chat-tab section.chat-pane")).every((s) => {
        const msgs = s.querySelectorAll(".msg");
        const last = msgs[msgs.length - 1];
        return (
          msgs.length === count &&
          last.dataset.role === "assistant" &&
          last.querySelector(".part-text")?.textContent.length > 0 &&
          s.dataset.status === "streaming"
        );
      }),
    count,
    { timeout, polling: 50 },
  );
}

// Pane number `paneIndex` (from 0) of `page` sends `text` (`remaining()`: the ms the script
// has left).
export async function sendInPane(page, paneIndex, text, remaining) {
  const pane = page.locator("#chat-tab section.chat-pane").nth(paneIndex);
  await pane.locator("input.chat-input").fill(text, { timeout: remaining() });
  await pane.locator("button.send").click({ timeout: remaining() });
}
