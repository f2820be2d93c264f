import { packageTestConfig } from "../../vitest.shared.js";

// Tests create real network namespaces and sockets: one file at a time.
export default packageTestConfig(import.meta.dirname, { fileParallelism: false });
