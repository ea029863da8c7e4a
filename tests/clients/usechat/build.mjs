// Bundles app.jsx (React, @ai-sdk/react, the client package) into OUTDIR/app.js, with
// index.html beside it: the page tests/clients/usechat/browser.mjs serves.
//
//   node build.mjs OUTDIR

import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(new URL(".", import.meta.url));
const out = process.argv[2];
mkdirSync(out, { recursive: true });
await build({
  absWorkingDir: here,
  entryPoints: ["app.jsx"],
  outfile: `${out}/app.js`,
  bundle: true,
  format: "esm",
  jsx: "automatic",
  target: ["es2022"],
  minify: true,
  define: { "process.env.NODE_ENV": '"production"' },
  logLevel: "warning",
});
copyFileSync(`${here}index.html`, `${out}/index.html`);
