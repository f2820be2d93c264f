// The cluster's state file: an intent log written *before* each resource is created, so that `down`
// can remove everything even after a crash or `kill -9` of `up`.
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { z } from "zod";
import { paths } from "./layout.js";

const ProcessRecord = z.object({ name: z.string(), pid: z.number().int(), startTime: z.string() });
export type ProcessRecord = z.infer<typeof ProcessRecord>;

const StateSchema = z.object({
  version: z.literal(1),
  /** Value of AMBIT_LOCAL_OWNER in every process of this cluster. */
  owner: z.string(),
  createdAt: z.string(),
  phase: z.enum(["starting", "up"]),
  nodes: z.number().int(),
  apiserverPort: z.number().int().optional(),
  binDir: z.string().optional(),
  netns: z.array(z.string()),
  processes: z.array(ProcessRecord),
});
export type State = z.infer<typeof StateSchema>;

export function newState(nodes: number): State {
  return { version: 1, owner: randomBytes(6).toString("hex"), createdAt: new Date().toISOString(), phase: "starting", nodes, netns: [], processes: [] };
}

/** The recorded state, or null when there is none. A corrupt file is reported, not ignored. */
export function loadState(): State | null {
  let text: string;
  try {
    text = readFileSync(paths.state(), "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw err;
  }
  const parsed = StateSchema.safeParse(JSON.parse(text));
  if (!parsed.success) throw new Error(`${paths.state()} is not a local-cluster state file (${parsed.error.message}); remove it by hand or run "ambit-local down --force"`);
  return parsed.data;
}

export function saveState(state: State): void {
  const file = paths.state();
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(`${file}.tmp`, JSON.stringify(state, null, 2));
  renameSync(`${file}.tmp`, file);
}

/** Records an intent (a netns about to be made, a process just started) and persists it at once. */
export class StateLog {
  constructor(readonly state: State) {
    saveState(state);
  }
  netns(name: string): void {
    if (!this.state.netns.includes(name)) this.state.netns.push(name);
    saveState(this.state);
  }
  process(rec: ProcessRecord): void {
    this.state.processes.push(rec);
    saveState(this.state);
  }
  update(patch: Partial<State>): void {
    Object.assign(this.state, patch);
    saveState(this.state);
  }
}
