import { packageTestConfig } from "../../vitest.shared.js";

// Each file in its own process: fd counts and network namespace switches stay per file.
export default packageTestConfig(import.meta.dirname, { pool: "forks", testTimeout: 20_000, hookTimeout: 30_000 });
