// The type check and the reference page in one process, as the tests run them:
//
//   node check.mjs OUT
//
// - the type check: `npm run typecheck`'s program (tsconfig.test.json: the sources and the
//   tests, against ai 7, ai 6 and Node's types), its errors written to OUT/types.txt
//   (empty when there are none);
// - the reference page: what `npm run docs` makes (typedoc.json: the sources' types),
//   written to OUT/reference.
//
// The two programs share every file both read (the DOM and ES libraries, the sources),
// parsed once, and TypeScript and typedoc load once. Exits 1 for type errors, 2 for a
// page that could not be made, 3 for both.

import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import * as td from "typedoc";
import ts from "typescript";

const TYPES_FAILED = 1;
const DOCS_FAILED = 2;

const out = process.argv[2];
if (!out) {
  process.stderr.write("usage: node check.mjs OUT\n");
  process.exit(64);
}
mkdirSync(out, { recursive: true });

const parsed = new Map();

function sharingHost(options) {
  const host = ts.createCompilerHost(options);
  const parse = host.getSourceFile.bind(host);
  host.getSourceFile = (name, version, onError, create) => {
    const key = `${name}\0${JSON.stringify(version)}`;
    if (!parsed.has(key)) parsed.set(key, parse(name, version, onError, create));
    return parsed.get(key);
  };
  return host;
}

function program(tsconfig) {
  const config = ts.getParsedCommandLineOfConfigFile(tsconfig, {}, {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (d) => {
      throw new Error(ts.flattenDiagnosticMessageText(d.messageText, "\n"));
    },
  });
  const { fileNames: rootNames, options, projectReferences } = config;
  return ts.createProgram({ rootNames, options, projectReferences, host: sharingHost(options) });
}

function typeCheck() {
  // tsc's own list (getPreEmitDiagnostics): the options', syntax, semantics, declarations
  const errors = ts.getPreEmitDiagnostics(program("tsconfig.test.json"));
  const text = ts.formatDiagnostics(errors, {
    getCanonicalFileName: (f) => f,
    getCurrentDirectory: ts.sys.getCurrentDirectory,
    getNewLine: () => "\n",
  });
  writeFileSync(join(out, "types.txt"), text);
  process.stderr.write(text);
  return errors.length ? TYPES_FAILED : 0;
}

async function referencePage() {
  const readers = [new td.TypeDocReader(), new td.TSConfigReader()];
  const app = await td.Application.bootstrapWithPlugins({}, readers);
  app.options.setValue("out", resolve(out, "reference"));
  // The types' errors are the type check's to find (above): typedoc only documents them.
  const docs = program(app.options.getValue("tsconfig"));
  const entry = docs.getSourceFile(resolve(app.options.getValue("entryPoints")[0]));
  const project = app.converter.convert([{ displayName: "index", program: docs, sourceFile: entry }]);
  app.validate(project);
  await app.generateOutputs(project);
  return app.logger.hasErrors() ? DOCS_FAILED : 0;
}

process.exitCode = typeCheck() | (await referencePage());
