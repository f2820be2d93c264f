import { packageTestConfig } from "../../vitest.shared.js";

// One local cluster at a time (it takes seconds to start), so files run one after another. The binaries are
// built (or found in the cache) once by the global setup.
export default packageTestConfig(import.meta.dirname, {
  fileParallelism: false, testTimeout: 120_000, hookTimeout: 300_000, globalSetup: ["test/global-setup.ts"],
});
