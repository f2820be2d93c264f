// The vitest settings every package shares. When AMBIT_TEST_REPORT_DIR is set (scripts/test-all.sh), each
// package also writes a JSON report there so the run can end with one summary line.
import { basename, join } from "node:path";
import { defineConfig, type ViteUserConfig } from "vitest/config";

export function packageTestConfig(packageDir: string, extra: NonNullable<ViteUserConfig["test"]> = {}) {
  const reportDir = process.env["AMBIT_TEST_REPORT_DIR"];
  return defineConfig({
    test: {
      include: ["test/**/*.test.ts"],
      testTimeout: 30_000,
      hookTimeout: 60_000,
      reporters: reportDir ? ["default", ["json", { outputFile: join(reportDir, `${basename(packageDir)}.json`) }]] : ["default"],
      ...extra,
    },
  });
}
