// Builds the package into dist/: index.js (one ES module, es2022, for browsers and
// Node >= 20), its types (*.d.ts, by tsc), and measures what an app ships: the module
// minified and gzipped, printed and held to at most 8 KB.
//
//   npm ci && npm run build

import { build, transform } from "esbuild";
import { execFileSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

export const LIMIT_BYTES = 8 * 1024;
const here = fileURLToPath(new URL(".", import.meta.url));
const require = createRequire(import.meta.url);

rmSync(`${here}dist`, { recursive: true, force: true });
await build({
  absWorkingDir: here,
  entryPoints: ["src/index.ts"],
  outfile: "dist/index.js",
  bundle: true,
  format: "esm",
  platform: "neutral",
  target: ["es2022"],
  sourcemap: true,
  legalComments: "none",
  logLevel: "warning",
});
execFileSync(process.execPath, [require.resolve("typescript/bin/tsc"), "-p", "tsconfig.build.json"], {
  cwd: here,
  stdio: "inherit",
});

const code = readFileSync(`${here}dist/index.js`, "utf8");
const minified = (await transform(code, { minify: true, format: "esm", target: "es2022", loader: "js" })).code;
const gzipped = gzipSync(minified, { level: 9 }).length;
process.stdout.write(
  `dist/index.js: ${code.length} bytes, ${minified.length} minified, ${gzipped} minified and gzipped (limit ${LIMIT_BYTES})\n`,
);
if (gzipped > LIMIT_BYTES) {
  process.stderr.write(`the package is over its size limit: ${gzipped} > ${LIMIT_BYTES} bytes minified and gzipped\n`);
  process.exit(1);
}
