// Builds (or finds cached) the Kubernetes binaries once, before any test: a cold build takes far longer
// than a test hook may.
import { ensureBinaries } from "../src/binaries.js";

export default async function setup(): Promise<void> {
  await ensureBinaries();
}
