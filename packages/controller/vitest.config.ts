import { packageTestConfig } from "../../vitest.shared.js";

// The integration test shares the machine's one local cluster: files run one at a time.
export default packageTestConfig(import.meta.dirname, { fileParallelism: false, testTimeout: 60_000, hookTimeout: 300_000 });
