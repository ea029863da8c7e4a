// Drives the demo page's chat tab in headless Chromium to see whether a reasoning box the
// reader opened in a streaming answer stays open while the answer goes on.
//
//   node tests/clients/browser/reasoning.mjs BASE_URL SCREENSHOT.png [USER_DATA_DIR]
//
// The page's submits ask for thinking (added to each POST /v1/chat body, as an app sets
// it with the transport's `body` option), so the answer begins with a reasoning part.
// Pane 1 sends a message; once both panes show some of the answer's text, still
// streaming, the page opens the answer's reasoning box in each pane (a click on its
// summary) and selects the reasoning's text in pane 1. When the answer's text has grown in
// both panes (still streaming), it reads, at that one moment, whether each pane shows the
// same box, open, and whether the selection is still that text; again after the turn.
// Prints ONE line of JSON: those readings and the panes at the end. Saves a screenshot.
// Exits non-zero, with a message on stderr, on failure or when the run takes longer than
// 100 s.

import { readPanes, runChatTabScript, sendInPane, turnEnded } from "./chat_panes.mjs";

const THINKING = { thinking: { type: "enabled", budget_tokens: 1024 }, max_tokens: 4096 };

// Installed in the page: each pane's answer (its last message) has its reasoning box
// opened by a click on the summary, and selected text in pane 1; `readBoxes()` then says,
// for each pane, whether the box it shows is the one opened, whether it is open, its
// reasoning and answer text, and what the page has selected.
function openReasoning() {
  const panes = () => Array.from(document.querySelectorAll("#chat-tab section.chat-pane"));
  const box = (s) => Array.from(s.querySelectorAll(".msg")).at(-1)?.querySelector("details.part-reasoning");
  window.readBoxes = () => ({
    selected: String(window.getSelection()),
    selection_in_box: Boolean(window.openedBoxes[0]?.contains(window.getSelection().anchorNode)),
    panes: panes().map((s, i) => {
      const now = box(s);
      const msgs = s.querySelectorAll(".msg");
      return {
        status: s.dataset.status,
        messages: msgs.length,
        same: Boolean(now) && now === window.openedBoxes[i],
        open: Boolean(now?.open),
        reasoning: now?.querySelector(".reasoning-text")?.textContent ?? null,
        text: Array.from(msgs[msgs.length - 1].querySelectorAll(".part-text"), (t) => t.textContent).join(""),
      };
    }),
  });
  window.openedBoxes = panes().map(box);
  for (const details of window.openedBoxes) details.querySelector("summary").click();
  const range = document.createRange();
  range.selectNodeContents(window.openedBoxes[0].querySelector(".reasoning-text"));
  window.getSelection().removeAllRanges();
  window.getSelection().addRange(range);
  return window.readBoxes();
}

await runChatTabScript("reasoning.mjs", 100_000, async ({ page, base, remaining, screenshot, at }) => {
  await page.route(`${base}/v1/chat`, (route) => {
    const request = route.request();
    if (request.method() !== "POST") return route.continue();
    return route.continue({ postData: JSON.stringify({ ...request.postDataJSON(), ...THINKING }) });
  });

  at("sending: waiting until both panes show some of the answer's text after its reasoning");
  await sendInPane(page, 0, "Think it over, then answer", remaining);
  await page.waitForFunction(
    () =>
      Array.from(document.querySelectorAll("#chat-tab section.chat-pane")).every((s) => {
        const last = Array.from(s.querySelectorAll(".msg")).at(-1);
        return (
          s.dataset.status === "streaming" &&
          last?.dataset.role === "assistant" &&
          last.querySelector("details.part-reasoning") &&
          last.querySelector(".part-text")?.textContent.length > 0
        );
      }),
    null,
    { timeout: remaining(), polling: 50 },
  );
  at("opening the reasoning box in each pane");
  const opened = await page.evaluate(openReasoning);

  at("waiting until the answer's text has grown in both panes, still streaming");
  const grown = await page.waitForFunction(
    (shown) => {
      const now = window.readBoxes();
      const longer = now.panes.every((p, i) => p.status === "streaming" && p.text.length > shown[i]);
      return longer && now;
    },
    opened.panes.map((p) => p.text.length),
    { timeout: remaining(), polling: 50 },
  );
  const during = await grown.jsonValue();

  at("waiting until the turn ends");
  await turnEnded(page, 2, "finish", remaining());
  const after = await page.evaluate(() => window.readBoxes());
  const panes = await readPanes(page);
  await page.screenshot({ path: screenshot, fullPage: true });
  return { opened, during, after, panes };
});
