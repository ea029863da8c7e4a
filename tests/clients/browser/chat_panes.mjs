// The demo page's chat panes as the browser scripts read them, wait on them and type into
// them (chat.mjs, tabs.mjs, agent_chat.mjs, render.mjs, reasoning.mjs, older.mjs): what
// each pane shows, the two states a step waits for, a message sent from a pane, and the
// frame of a script on the chat tab.

import { openDemoPage, runToEnd, startScript } from "./common.mjs";

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

// A browser script on the demo page's chat tab (render.mjs, reasoning.mjs, older.mjs),
// its command line as startScript reads it: the page opened at `path` (a new chat unless
// it names one) on a context of its own, then `body(s)`, whose result is printed as the
// script's line of JSON (runToEnd); page errors fail it. `s`: the page, the chat id it
// shows, `at(step)` to say what it does now (for a failure's message), `remaining()`,
// and the screenshot's path.
export async function runChatTabScript(name, timeoutMs, body, path = "/#chat") {
  const { base, screenshot, openContext, fail, remaining, ...script } = await startScript(name, timeoutMs);
  let step = "opening the chat tab";
  let context = null;
  let page = null;
  const pageErrors = [];
  async function run() {
    const errors = { pageErrors, consoleErrors: [], httpErrors: [] };
    ({ context, page } = await openDemoPage(openContext, base, remaining, errors, path));
    await page.waitForFunction(() => document.querySelector("#chat-id").textContent !== "—", null, {
      timeout: remaining(),
      polling: 100,
    });
    const chatId = (await page.textContent("#chat-id")).trim();
    const out = await body({ page, base, chatId, remaining, screenshot, at: (s) => (step = s) });
    if (pageErrors.length) throw new Error(`page errors: ${JSON.stringify(pageErrors)}`);
    return { chat_id: chatId, ...out };
  }
  await runToEnd(name, {
    timeoutMs,
    run,
    step: () => step,
    page: () => page,
    paneStates: async () => (page ? JSON.stringify(await readPanes(page).catch(() => "(unavailable)")) : "(no page)"),
    pageErrors,
    screenshot,
    fail,
    cleanup: () => script.cleanup(context), // called once, at the end
  });
}
