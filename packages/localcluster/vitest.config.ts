import { packageTestConfig } from "../../vitest.shared.js";

// One local cluster is shared by every test file (it takes seconds to start), so files run one at a time.
export default packageTestConfig(import.meta.dirname, { fileParallelism: false, testTimeout: 120_000, hookTimeout: 300_000 });
