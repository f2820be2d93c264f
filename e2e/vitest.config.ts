import { packageTestConfig } from "../vitest.shared.js";

// One local cluster per machine: suites run one file at a time.
export default packageTestConfig(import.meta.dirname, { fileParallelism: false, testTimeout: 120_000, hookTimeout: 600_000 });
