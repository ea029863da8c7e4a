// What a browser script's context holds when it starts, on the shared browser: a page of
// a made-up origin (served by Playwright's routing) reads its cookies and local storage,
// then leaves some of each. Prints one JSON line: what it found, and the browser's version.
//
//   node tests/clients/browser/isolation.mjs BASE_URL OUT.png   (BASE_URL unused)

import { runToEnd, startScript } from "./common.mjs";

const ORIGIN = "http://isolation.test";
const s = await startScript("isolation.mjs", 30_000);
let context = null;
let page = null;

async function run() {
  context = await s.openContext({ viewport: { width: 400, height: 300 } });
  await context.route(`${ORIGIN}/**`, (route) => route.fulfill({ body: "<p>isolation</p>", contentType: "text/html" }));
  page = await context.newPage();
  await page.goto(`${ORIGIN}/`, { timeout: s.remaining() });
  const found = await page.evaluate(() => ({ cookie: document.cookie, stored: localStorage.getItem("left") }));
  await page.evaluate(() => {
    document.cookie = "left=by-an-earlier-script; max-age=3600";
    localStorage.setItem("left", "by an earlier script");
  });
  return { found, version: context.browser()?.version() ?? null };
}

await runToEnd("isolation.mjs", {
  run,
  cleanup: () => s.cleanup(context),
  paneStates: async () => "",
  pageErrors: [],
  screenshot: s.screenshot,
  fail: s.fail,
  timeoutMs: 30_000,
  step: () => "reading the context's cookies and storage",
  page: () => page,
});
