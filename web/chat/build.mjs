// Bundles src/index.mjs (the demo page's chat and dashboard tabs, with the AI SDK's Chat
// and the client package's BroadcasterChatTransport and followEvents) into
// broadcaster/http/static/chat.js: one minified script that the Python package serves
// with the page, so the page needs no CDN and the server no node. The client package comes
// from the checkout (clients/js), built first.
//
//   npm ci && node build.mjs [OUTFILE]      (or, from the repository root: make chat-bundle)
//
// The output is a pure function of the sources and the versions pinned in
// package-lock.json: tests/clients/test_chat_bundle.py rebuilds it and compares.

import { build } from "esbuild";
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(new URL(".", import.meta.url));
const outfile = process.argv[2] || fileURLToPath(new URL("../../broadcaster/http/static/chat.js", import.meta.url));

// The SDK validates every chunk with zod, whose `z` object carries error messages in some
// 40 languages (`z.locales`): over 250 kB that nothing here reads (zod's own English
// messages come from another module and stay). They are left out.
const withoutZodLocales = {
  name: "without-zod-locales",
  setup(b) {
    b.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) =>
      /[\\/]zod[\\/]v4[\\/](classic|core)[\\/]/.test(args.importer)
        ? { path: "zod-locales", namespace: "empty" }
        : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: "empty" }, () => ({ contents: "export {};", loader: "js" }));
  },
};

// The packages whose code went into the bundle, with their licenses, for its first line.
function packagesIn(metafile) {
  const names = new Set();
  for (const [path, input] of Object.entries(Object.values(metafile.outputs)[0].inputs)) {
    const m = input.bytesInOutput > 0 && /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(path);
    if (m) names.add(m[1]);
  }
  return [...names].sort().map((name) => {
    const manifest = JSON.parse(readFileSync(`${here}node_modules/${name}/package.json`, "utf8"));
    return `${name}@${manifest.version} (${manifest.license})`;
  });
}

const result = await build({
  absWorkingDir: here,
  entryPoints: ["src/index.mjs"],
  outfile,
  write: false,
  bundle: true,
  minify: true,
  format: "iife",
  platform: "browser",
  target: ["es2022"],
  charset: "utf8",
  legalComments: "eof",
  plugins: [withoutZodLocales],
  // The client package is a link to clients/js: named by its node_modules path, it is
  // listed in the banner as the registry's packages are.
  preserveSymlinks: true,
  metafile: true,
  logLevel: "warning",
});
const banner = `/* The demo page's chat and dashboard tabs, built from web/chat by esbuild. Contains ${packagesIn(result.metafile).join(", ")}. */\n`;
const code = Buffer.concat([Buffer.from(banner), result.outputFiles[0].contents]);
writeFileSync(outfile, code);
process.stdout.write(`${outfile}: ${code.length} bytes\n`);
