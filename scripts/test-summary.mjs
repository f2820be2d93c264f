// Adds up the vitest JSON reports of every package (written when AMBIT_TEST_REPORT_DIR is set) and prints
// one closing line "tests: N passed, N failed[, N skipped]". Exits 1 if any test failed or no test ran.
// A package with a test script that wrote no report (its runner crashed, or turbo never started it) counts as
// one failure, named on the line before the summary.
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const dir = process.argv[2];
const root = join(dirname(fileURLToPath(import.meta.url)), "..");
let passed = 0, failed = 0, skipped = 0;
for (const file of readdirSync(dir).filter((f) => f.endsWith(".json"))) {
  const r = JSON.parse(readFileSync(join(dir, file), "utf8"));
  passed += r.numPassedTests;
  // A file that failed outside its tests (import error, failing hook) counts as one failure of its own.
  const brokenFiles = (r.testResults ?? []).filter((f) => f.status === "failed" && !(f.assertionResults ?? []).some((a) => a.status === "failed")).length;
  failed += r.numFailedTests + brokenFiles;
  skipped += r.numPendingTests + r.numTodoTests;
}

/** Every workspace folder whose package.json has a test script (the report is named after the folder). */
function testedPackages() {
  const { workspaces } = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  const folders = workspaces.flatMap((w) => w.endsWith("/*")
    ? readdirSync(join(root, w.slice(0, -2)), { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => join(root, w.slice(0, -2), d.name))
    : [join(root, w)]);
  return folders.filter((f) => existsSync(join(f, "package.json")) && JSON.parse(readFileSync(join(f, "package.json"), "utf8")).scripts?.test);
}
const missing = testedPackages().map((f) => basename(f)).filter((name) => !existsSync(join(dir, `${name}.json`)));
if (missing.length) {
  console.log(`no test report from: ${missing.join(", ")} (each counted as one failure)`);
  failed += missing.length;
}
console.log(`tests: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
