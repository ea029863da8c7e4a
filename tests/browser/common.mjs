// Shared by the browser tests: start Debian's Chromium with a fresh profile and open
// the demo page, recording page errors, console errors and HTTP errors as they come.

export const CHROMIUM = "/usr/bin/chromium";

const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

export async function openDemoPage(chromium, base, userDataDir, remaining, errors) {
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 1280, height: 900 },
    timeout: remaining(),
  });
  const page = context.pages()[0] || (await context.newPage());
  page.on("pageerror", (err) => errors.pageErrors.push(String(err.message || err)));
  page.on("console", (msg) => {
    if (msg.type() === "error") {
      errors.consoleErrors.push({ text: msg.text(), url: msg.location().url || "" });
    }
  });
  page.on("response", (r) => {
    if (r.status() >= 400) errors.httpErrors.push({ url: r.url(), status: r.status() });
  });
  const resp = await page.goto(`${base}/`, { waitUntil: "load", timeout: remaining() });
  if (!resp || !resp.ok()) {
    await context.close().catch(() => {});
    throw new Error(`GET ${base}/ answered ${resp ? resp.status() : "nothing"}`);
  }
  return { context, page };
}
