// Drives the demo page's chat tab in headless Chromium to see what a pane draws again
// while an answer streams.
//
//   node tests/clients/browser/render.mjs BASE_URL SCREENSHOT.png [USER_DATA_DIR]
//
// Pane 1 sends a message and its answer ends; pane 1 sends a second one. Once both panes
// show some of the second answer, the page keeps each pane's message elements; when the
// answer's text has grown in both panes (still streaming), it reads, at that one moment,
// which of them are the same nodes as before, and the messages as shown. After the turn
// it reads pane 1 (the sender, which never reloads the chat) once more.
// Prints ONE line of JSON: those readings and the panes at the end. Saves a screenshot.
// Exits non-zero, with a message on stderr, on failure or when the run takes longer than
// 100 s.

import { answerShown, readPanes, runChatTabScript, sendInPane, turnEnded } from "./chat_panes.mjs";

// Installed in the page: each pane's message elements as they are now (`keptMessages`),
// and `readPane(section, kept)`, which says which of the kept elements are the nodes the
// pane shows now (by position) and its messages as shown (id, role, text), read at one
// moment.
function keepMessages() {
  window.readPane = (s, kept) => {
    const now = Array.from(s.querySelectorAll(".msg"));
    return {
      status: s.dataset.status,
      same: kept.map((e, i) => e === now[i]),
      messages: now.map((m) => ({
        id: m.dataset.messageId,
        role: m.dataset.role,
        text: Array.from(m.querySelectorAll(".part-text"), (t) => t.textContent).join(""),
      })),
    };
  };
  const panes = Array.from(document.querySelectorAll("#chat-tab section.chat-pane"));
  window.keptMessages = panes.map((s) => Array.from(s.querySelectorAll(".msg")));
  return panes.map((s, i) => window.readPane(s, window.keptMessages[i]));
}

await runChatTabScript("render.mjs", 100_000, async ({ page, remaining, screenshot, at }) => {
  at("the first turn");
  await sendInPane(page, 0, "The first question", remaining);
  await turnEnded(page, 2, "finish", remaining());

  at("the second turn: waiting until both panes show some of its answer");
  await sendInPane(page, 0, "And a second question", remaining);
  await answerShown(page, 4, remaining());
  at("keeping each pane's message elements");
  const before = await page.evaluate(keepMessages);

  at("waiting until the answer's text has grown in both panes, still streaming");
  const grown = await page.waitForFunction(
    (shown) => {
      const panes = Array.from(document.querySelectorAll("#chat-tab section.chat-pane"));
      const now = panes.map((s, i) => window.readPane(s, window.keptMessages[i]));
      const longer = now.every(
        (p, i) => p.status === "streaming" && p.messages.length === 4 && p.messages[3].text.length > shown[i],
      );
      return longer && now;
    },
    before.map((p) => p.messages[3].text.length),
    { timeout: remaining(), polling: 50 },
  );
  const during = await grown.jsonValue();

  at("waiting until the second turn ends");
  await turnEnded(page, 4, "finish", remaining());
  const sender = await page.evaluate(() =>
    window.readPane(document.querySelector("#chat-tab section.chat-pane"), window.keptMessages[0]),
  );
  const panes = await readPanes(page);
  await page.screenshot({ path: screenshot, fullPage: true });
  return { before, during, sender_after: sender, panes };
});
