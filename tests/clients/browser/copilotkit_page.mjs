// The CopilotKit example (examples/copilotkit, bundled) in Chromium, shared by the
// copilotkit*.mjs scripts: the browser with the example's files served at
// BASE_URL/copilotkit/ (same origin as /v1/agui) by Playwright's routing, a tab opened on a
// thread (once its `connect` has answered), a message sent, and waits on the page's text.
// Every tab's /v1/agui requests and its page and console errors are recorded, by tab.

import { readFileSync } from "node:fs";
import { join } from "node:path";

const EXAMPLE = join(import.meta.dirname, "..", "..", "..", "examples", "copilotkit");
const TYPES = { html: "text/html", js: "text/javascript", css: "text/css" };

export const count = (text, what) => text.split(what).length - 1;

// The script's browser context (common.mjs's `openContext`), serving the example.
export async function openBrowser(s) {
  const context = await s.openContext({ viewport: { width: 1000, height: 800 } });
  await context.route(`${s.base}/copilotkit/**`, (route) => {
    const path = new URL(route.request().url()).pathname.replace(/^\/copilotkit\//, "");
    const ext = path.split(".").pop();
    route.fulfill({ body: readFileSync(join(EXAMPLE, path)), contentType: TYPES[ext] || "text/plain" });
  });
  return context;
}

// A tab of `context` (its first page, or a new one), recording into `log`:
// `log.requests` ("METHOD /path" of /v1/agui) and `log.pageErrors`.
export async function newTab(context, log, first = false) {
  const page = (first && context.pages()[0]) || (await context.newPage());
  page.on("pageerror", (err) => log.pageErrors.push(String(err.message || err)));
  page.on("console", (m) => {
    if (m.type() === "error") log.pageErrors.push(`console: ${m.text()}`.slice(0, 300));
  });
  page.on("request", (r) => {
    if (r.url().includes("/v1/agui/")) log.requests.push(`${r.method()} ${new URL(r.url()).pathname}`);
  });
  return page;
}

// The example on `thread` in `page`, once its chat has joined the thread (`connect`
// answered: the chat takes input from then on).
export async function openThread(page, s, thread) {
  const connected = page.waitForResponse((r) => r.url().endsWith("/connect"), { timeout: s.remaining() });
  await page.goto(`${s.base}/copilotkit/index.html?thread=${encodeURIComponent(thread)}`, {
    waitUntil: "load",
    timeout: s.remaining(),
  });
  await page.locator("textarea").first().waitFor({ timeout: s.remaining() });
  await connected;
}

// Type `prompt` and press the send button; resolves to the run's response (its
// `x-generation-id` header names the answer's generation).
export async function send(page, s, prompt) {
  const ran = page.waitForResponse((r) => r.url().endsWith("/run") && r.request().method() === "POST", {
    timeout: s.remaining(),
  });
  await page.locator("textarea").first().fill(prompt);
  await page.locator('[data-testid="copilot-send-button"]').click({ timeout: s.remaining() });
  return ran;
}

export async function waitForText(page, s, what) {
  await page.waitForFunction((w) => document.body.innerText.includes(w), what, {
    timeout: s.remaining(),
    polling: 100,
  });
}

export const bodyText = (page) => page.evaluate(() => document.body.innerText);

// A duplicate, if any, would show by now: CopilotKit renders a message as it changes.
export const settle = (page) => page.waitForTimeout(300);
