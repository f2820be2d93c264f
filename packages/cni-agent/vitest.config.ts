import { packageTestConfig } from "../../vitest.shared.js";

// Tests create real network namespaces and sockets, one uses the local cluster: one file at a time.
export default packageTestConfig(import.meta.dirname, { fileParallelism: false, testTimeout: 60_000, hookTimeout: 300_000 });
