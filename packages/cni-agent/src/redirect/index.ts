// Level-triggered, idempotent programming of the in-pod redirection (iptables + policy routing).
//
// Every operation first reads the live state (`iptables-save`, `ip -j rule`, `ip -j route`), compares it
// with the desired state, and writes only the tables / routing entries that differ. A table is rewritten
// atomically by one `iptables-restore --noflush` block that declares our chains (which creates them or
// flushes only them), fills them, and adds or deletes jump rules so exactly one jump per built-in chain
// remains. Rules that are not ours are never flushed or touched.
import { Marks } from "@ambit/protocol";
import { assertNetnsExists, netnsRunner, type NetnsRunner } from "./exec.js";
import {
  ALL_TABLES,
  CHAIN_OUTPUT,
  CHAIN_PRERT,
  JUMP_RULES,
  OUR_CHAINS,
  desiredRules,
  parseSave,
  referencesToOurChains,
  renderTable,
  type Family,
  type RedirectOptions,
  type SavedTable,
  type TableName,
  type TableRules,
} from "./rules.js";

export { RedirectError, type RedirectErrorCode } from "./exec.js";
export {
  CHAIN_OUTPUT,
  CHAIN_PRERT,
  desiredRules,
  parseSave,
  type DesiredRules,
  type Family,
  type FamilyRules,
  type RedirectOptions,
  type TableName,
  type TableRules,
} from "./rules.js";

const FWMARK = `0x${Marks.tproxy.toString(16)}/0x${Marks.mask.toString(16)}`;
const RULE_PREF = String(Marks.routeRulePriority);
const ROUTE_TABLE = String(Marks.routeTable);

export interface InspectResult {
  netns: string;
  /** Some of our chains, jumps or policy routing exist in the netns. */
  present: boolean;
  /** The netns holds exactly the desired rules (and routing). */
  clean: boolean;
  /** One human-readable line per difference; empty when clean. */
  drift: string[];
  /** What `applyRules` would rewrite. */
  repair: { tables: { family: Family; table: TableName }[]; routing: Family[] };
}

export interface ApplyResult {
  /** False when the netns already matched (nothing was written). */
  changed: boolean;
  /** The differences that were repaired (empty on a clean netns). */
  repaired: string[];
}

export interface RemoveOptions {
  /** Also clean ip6tables and the IPv6 policy routing (default true). */
  ipv6?: boolean;
}

// ---- per-netns serialization (read-compare-write must not interleave within this process) ----

const locks = new Map<string, Promise<unknown>>();

async function withLock<T>(netns: string, fn: () => Promise<T>): Promise<T> {
  const prev = locks.get(netns) ?? Promise.resolve();
  const next = prev.then(fn, fn);
  const tail = next.catch(() => undefined);
  locks.set(netns, tail);
  try {
    return await next;
  } finally {
    if (locks.get(netns) === tail) locks.delete(netns);
  }
}

// ---- reading the live state ----

interface RoutingState {
  /** Number of "fwmark 0x111/0xfff lookup 100" rules at our priority. */
  rules: number;
  /** Whether table 100 holds "local default dev lo". */
  route: boolean;
}

interface FamilyState {
  tables: Map<string, SavedTable>;
  routing: RoutingState;
}

const saveCmd = (f: Family): string => (f === "ipv4" ? "iptables-save" : "ip6tables-save");
const restoreCmd = (f: Family): string => (f === "ipv4" ? "iptables-restore" : "ip6tables-restore");
const ipFlag = (f: Family): string => (f === "ipv4" ? "-4" : "-6");

function parseJsonList(text: string): Record<string, unknown>[] {
  const trimmed = text.trim();
  if (trimmed === "") return [];
  const parsed: unknown = JSON.parse(trimmed);
  return Array.isArray(parsed) ? (parsed as Record<string, unknown>[]) : [];
}

async function readRouting(r: NetnsRunner, f: Family): Promise<RoutingState> {
  const rules = parseJsonList(await r.run(["ip", ipFlag(f), "-j", "rule", "show", "pref", RULE_PREF]));
  const ours = rules.filter(
    (x) => x["fwmark"] === `0x${Marks.tproxy.toString(16)}` && x["fwmask"] === `0x${Marks.mask.toString(16)}` && String(x["table"]) === ROUTE_TABLE,
  ).length;
  // "table all" rather than "table 100": listing a table that does not exist yet is an error.
  const routes = parseJsonList(await r.run(["ip", ipFlag(f), "-j", "route", "show", "table", "all"]));
  const route = routes.some(
    (x) => String(x["table"]) === ROUTE_TABLE && x["type"] === "local" && x["dst"] === "default" && x["dev"] === "lo",
  );
  return { rules: ours, route };
}

async function readFamily(r: NetnsRunner, f: Family): Promise<FamilyState> {
  return { tables: parseSave(await r.run([saveCmd(f)])), routing: await readRouting(r, f) };
}

// ---- comparing ----

function jumpCount(t: SavedTable | undefined, jump: string): number {
  const chain = jump.split(" ")[1] ?? "";
  return (t?.rules.get(chain) ?? []).filter((x) => x === jump).length;
}

function hasOurs(t: SavedTable | undefined): boolean {
  return !!t && (OUR_CHAINS.some((c) => t.chains.has(c)) || referencesToOurChains(t).length > 0);
}

/** Differences of one desired table against the live one. */
function tableDrift(f: Family, want: TableRules, have: SavedTable | undefined): string[] {
  const where = `${f} ${want.table}`;
  const out: string[] = [];
  for (const chain of [CHAIN_PRERT, CHAIN_OUTPUT] as const) {
    if (!have?.chains.has(chain)) {
      out.push(`${where}: chain ${chain} missing`);
      continue;
    }
    const live = have.rules.get(chain) ?? [];
    const wanted = want.chains[chain];
    for (const rule of wanted) if (!live.includes(rule)) out.push(`${where}: missing rule \`${rule}\``);
    for (const rule of live) if (!wanted.includes(rule)) out.push(`${where}: unexpected rule \`${rule}\``);
    const sameSet = wanted.every((x) => live.includes(x)) && live.every((x) => wanted.includes(x));
    if (sameSet && (live.length !== wanted.length || live.some((x, i) => x !== wanted[i]))) {
      out.push(`${where}: chain ${chain} rules out of order or duplicated`);
    }
  }
  for (const jump of JUMP_RULES) {
    const n = jumpCount(have, jump);
    if (n === 0) out.push(`${where}: missing jump \`${jump}\``);
    else if (n > 1) out.push(`${where}: jump \`${jump}\` present ${n} times`);
  }
  return out;
}

function routingDrift(f: Family, s: RoutingState): string[] {
  const out: string[] = [];
  if (s.rules === 0) out.push(`${f} routing: missing rule "fwmark ${FWMARK} pref ${RULE_PREF} lookup ${ROUTE_TABLE}"`);
  if (s.rules > 1) out.push(`${f} routing: rule "fwmark ${FWMARK} lookup ${ROUTE_TABLE}" present ${s.rules} times`);
  if (!s.route) out.push(`${f} routing: missing "local default dev lo table ${ROUTE_TABLE}"`);
  return out;
}

interface Plan {
  drift: string[];
  present: boolean;
  /** Per family: restore blocks to write. */
  restore: Map<Family, { table: TableName; block: string }[]>;
  routing: Family[];
}

/** The `-A`/`-D` lines that leave exactly one of each jump. */
function jumpEdits(have: SavedTable | undefined): string[] {
  const edits: string[] = [];
  for (const jump of JUMP_RULES) {
    const n = jumpCount(have, jump);
    if (n === 0) edits.push(jump);
    for (let i = 1; i < n; i++) edits.push(jump.replace(/^-A /, "-D "));
  }
  return edits;
}

/** A restore block that removes our chains and every rule jumping into them from one table. */
function removalBlock(table: string, have: SavedTable): string {
  return [
    `*${table}`,
    // Declaring flushes our chains (or creates them empty), so -X cannot fail on a non-empty chain.
    `:${CHAIN_PRERT} - [0:0]`,
    `:${CHAIN_OUTPUT} - [0:0]`,
    ...referencesToOurChains(have).map((x) => x.replace(/^-A /, "-D ")),
    `-X ${CHAIN_PRERT}`,
    `-X ${CHAIN_OUTPUT}`,
    "COMMIT",
    "",
  ].join("\n");
}

function plan(opts: RedirectOptions, states: Map<Family, FamilyState>): Plan {
  const desired = desiredRules(opts);
  const p: Plan = { drift: [], present: false, restore: new Map(), routing: [] };
  for (const fr of [desired.ipv4, desired.ipv6]) {
    if (!fr) continue;
    const state = states.get(fr.family);
    if (!state) continue;
    const blocks: { table: TableName; block: string }[] = [];
    for (const table of ALL_TABLES) {
      const have = state.tables.get(table);
      if (hasOurs(have)) p.present = true;
      const want = fr.tables.find((t) => t.table === table);
      if (want) {
        const d = tableDrift(fr.family, want, have);
        if (d.length > 0) {
          p.drift.push(...d);
          blocks.push({ table, block: renderTable(want, jumpEdits(have)) });
        }
      } else if (have && hasOurs(have)) {
        p.drift.push(`${fr.family} ${table}: chains present but not wanted (DNS capture off)`);
        blocks.push({ table, block: removalBlock(table, have) });
      }
    }
    if (blocks.length > 0) p.restore.set(fr.family, blocks);
    if (state.routing.rules > 0 || state.routing.route) p.present = true;
    const rd = routingDrift(fr.family, state.routing);
    if (rd.length > 0) {
      p.drift.push(...rd);
      p.routing.push(fr.family);
    }
  }
  return p;
}

async function readStates(r: NetnsRunner, families: Family[]): Promise<Map<Family, FamilyState>> {
  const states = new Map<Family, FamilyState>();
  for (const f of families) states.set(f, await readFamily(r, f));
  return states;
}

const families = (ipv6: boolean): Family[] => (ipv6 ? ["ipv4", "ipv6"] : ["ipv4"]);

// ---- public API ----

/**
 * Compares the netns with the desired rules for `opts`: our chains in mangle/nat (and raw with DNS capture),
 * one jump per built-in chain, and the policy routing. With `ipv6: false` the IPv6 side is not looked at.
 */
export async function inspectRules(netns: string, opts: RedirectOptions): Promise<InspectResult> {
  assertNetnsExists(netns, "inspect redirection rules");
  const r = netnsRunner(netns);
  const p = plan(opts, await readStates(r, families(opts.ipv6)));
  const tables: { family: Family; table: TableName }[] = [];
  for (const [family, blocks] of p.restore) for (const b of blocks) tables.push({ family, table: b.table });
  return { netns, present: p.present, clean: p.drift.length === 0, drift: p.drift, repair: { tables, routing: p.routing } };
}

/**
 * Makes the netns hold exactly the desired rules. Idempotent: a clean netns is left untouched; a drifted
 * table is rewritten atomically (one `iptables-restore --noflush` per family); routing is added only if absent.
 */
export async function applyRules(netns: string, opts: RedirectOptions): Promise<ApplyResult> {
  assertNetnsExists(netns, "apply redirection rules");
  return withLock(netns, async () => {
    const r = netnsRunner(netns);
    const p = plan(opts, await readStates(r, families(opts.ipv6)));
    for (const [family, blocks] of p.restore) {
      await r.run([restoreCmd(family), "--noflush"], blocks.map((b) => b.block).join(""));
    }
    for (const family of p.routing) {
      const s = await readRouting(r, family);
      if (s.rules === 0) {
        await r.run(["ip", ipFlag(family), "rule", "add", "fwmark", FWMARK, "pref", RULE_PREF, "lookup", ROUTE_TABLE]);
      }
      for (let i = 1; i < s.rules; i++) {
        await r.run(["ip", ipFlag(family), "rule", "del", "fwmark", FWMARK, "pref", RULE_PREF, "lookup", ROUTE_TABLE]);
      }
      if (!s.route) {
        await r.run(["ip", ipFlag(family), "route", "replace", "local", "default", "dev", "lo", "table", ROUTE_TABLE]);
      }
    }
    return { changed: p.drift.length > 0, repaired: p.drift };
  });
}

/**
 * Removes our jumps and chains (all tables, both families unless `ipv6: false`), the fwmark rule and our
 * table-100 route. Leaves every other rule alone. Idempotent; a never-enrolled netns is a no-op.
 * Resolves with whether anything was removed.
 */
export async function removeRules(netns: string, opts: RemoveOptions = {}): Promise<{ changed: boolean }> {
  assertNetnsExists(netns, "remove redirection rules");
  return withLock(netns, async () => {
    const r = netnsRunner(netns);
    let changed = false;
    for (const family of families(opts.ipv6 ?? true)) {
      const state = await readFamily(r, family);
      const blocks: string[] = [];
      for (const [table, have] of state.tables) if (hasOurs(have)) blocks.push(removalBlock(table, have));
      if (blocks.length > 0) {
        await r.run([restoreCmd(family), "--noflush"], blocks.join(""));
        changed = true;
      }
      for (let i = 0; i < state.routing.rules; i++) {
        await r.run(["ip", ipFlag(family), "rule", "del", "fwmark", FWMARK, "pref", RULE_PREF, "lookup", ROUTE_TABLE]);
        changed = true;
      }
      if (state.routing.route) {
        await r.run(["ip", ipFlag(family), "route", "del", "local", "default", "dev", "lo", "table", ROUTE_TABLE]);
        changed = true;
      }
    }
    return { changed };
  });
}
