// Bundles app.jsx (React, @ai-sdk/react, the client package) into OUTDIR/app.js, with
// index.html beside it: the page tests/clients/usechat/browser.mjs serves. With PAGE
// (history: useChat with the AI SDK's own transport, the history kept by the server),
// PAGE.jsx into OUTDIR/PAGE.js, with PAGE.html.
//
//   node build.mjs OUTDIR [PAGE]

import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(new URL(".", import.meta.url));
const out = process.argv[2];
const page = process.argv[3] || "app";
mkdirSync(out, { recursive: true });
await build({
  absWorkingDir: here,
  entryPoints: [`${page}.jsx`],
  outfile: `${out}/${page}.js`,
  bundle: true,
  format: "esm",
  jsx: "automatic",
  target: ["es2022"],
  minify: true,
  define: { "process.env.NODE_ENV": '"production"' },
  logLevel: "warning",
});
const html = page === "app" ? "index.html" : `${page}.html`;
copyFileSync(`${here}${html}`, `${out}/${html}`);
