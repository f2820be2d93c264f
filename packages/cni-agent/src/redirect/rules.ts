// The in-pod redirection rules (reference: ztunnel-protocols.md §5.5, control-plane.md §6.5), as pure data.
// Every rule is written exactly as `iptables-save` prints it back, so that the live state can be compared
// with the desired one line by line (see inspect.ts) without a separate normalizer.
import { Marks, PROBE_SNAT_IPV4, PROBE_SNAT_IPV6, Ports } from "@ambit/protocol";

export type Family = "ipv4" | "ipv6";
export type TableName = "mangle" | "nat" | "raw";

/** Our two chains, in every table we touch. */
export const CHAIN_PRERT = "ISTIO_PRERT";
export const CHAIN_OUTPUT = "ISTIO_OUTPUT";
export const OUR_CHAINS: readonly string[] = [CHAIN_PRERT, CHAIN_OUTPUT];

/** The tables we may own chains in; raw only with DNS capture. */
export const ALL_TABLES: readonly TableName[] = ["mangle", "nat", "raw"];

/** The jumps from the built-in chains into ours, in iptables-save form. */
export const JUMP_RULES: readonly string[] = [`-A PREROUTING -j ${CHAIN_PRERT}`, `-A OUTPUT -j ${CHAIN_OUTPUT}`];

export interface RedirectOptions {
  /** Redirect DNS (UDP and TCP port 53) to ztunnel's DNS proxy on 15053; adds the raw-table conntrack zones. */
  dnsCapture: boolean;
  /** Also program ip6tables and the IPv6 policy routing. */
  ipv6: boolean;
}

/** The desired content of one table: the rules of our two chains, in order. */
export interface TableRules {
  table: TableName;
  chains: { [CHAIN_PRERT]: string[]; [CHAIN_OUTPUT]: string[] };
}

/** The desired rules of one address family. */
export interface FamilyRules {
  family: Family;
  /** Tables that must hold our chains (mangle, nat, and raw with DNS capture), in restore order. */
  tables: TableRules[];
  /** The complete `iptables-restore --noflush` input for a netns that has none of our rules yet. */
  restore: string;
}

export interface DesiredRules {
  ipv4: FamilyRules;
  /** Present only when `ipv6` was asked for. */
  ipv6?: FamilyRules;
}

const hex = (n: number): string => `0x${n.toString(16)}`;
const ZTUNNEL_MARK = `${hex(Marks.ztunnel)}/${hex(Marks.mask)}`; // 0x539/0xfff
const TPROXY_MARK = `${hex(Marks.tproxy)}/${hex(Marks.mask)}`; // 0x111/0xfff
const RESTORE_MASK = "0xffffffff";

function familyConsts(family: Family): { loopback: string; probe: string } {
  return family === "ipv4"
    ? { loopback: "127.0.0.1/32", probe: `${PROBE_SNAT_IPV4}/32` }
    : { loopback: "::1/128", probe: `${PROBE_SNAT_IPV6}/128` };
}

function familyTables(family: Family, opts: RedirectOptions): TableRules[] {
  const { loopback, probe } = familyConsts(family);
  const notZtunnel = `-m mark ! --mark ${ZTUNNEL_MARK}`;

  const mangle: TableRules = {
    table: "mangle",
    chains: {
      // Remember connections ztunnel opened (incl. spoofed-source ones looped back via lo).
      [CHAIN_PRERT]: [`-A ${CHAIN_PRERT} -m mark --mark ${ZTUNNEL_MARK} -j CONNMARK --set-xmark ${TPROXY_MARK}`],
      // Replies of those connections carry the tproxy mark again, so policy routing delivers them locally.
      [CHAIN_OUTPUT]: [
        `-A ${CHAIN_OUTPUT} -m connmark --mark ${TPROXY_MARK} -j CONNMARK --restore-mark --nfmask ${RESTORE_MASK} --ctmask ${RESTORE_MASK}`,
      ],
    },
  };

  const natOutput: string[] = [
    // Replies to kubelet probes bypass ztunnel.
    `-A ${CHAIN_OUTPUT} -d ${probe} -p tcp -m tcp -j ACCEPT`,
  ];
  if (opts.dnsCapture) {
    natOutput.push(
      `-A ${CHAIN_OUTPUT} ! -o lo -p udp -m udp --dport 53 ${notZtunnel} -j REDIRECT --to-ports ${Ports.dns}`,
      `-A ${CHAIN_OUTPUT} ! -d ${loopback} -p tcp -m tcp --dport 53 ${notZtunnel} -j REDIRECT --to-ports ${Ports.dns}`,
    );
  }
  natOutput.push(
    // Never capture replies of ztunnel's spoofed-source flows.
    `-A ${CHAIN_OUTPUT} -p tcp -m mark --mark ${TPROXY_MARK} -j ACCEPT`,
    // The app calling its own pod IP (leaves via lo, not to loopback).
    `-A ${CHAIN_OUTPUT} ! -d ${loopback} -o lo -j ACCEPT`,
    // Outbound capture.
    `-A ${CHAIN_OUTPUT} ! -d ${loopback} -p tcp ${notZtunnel} -j REDIRECT --to-ports ${Ports.outbound}`,
  );
  const nat: TableRules = {
    table: "nat",
    chains: {
      [CHAIN_PRERT]: [
        // Kubelet probes (SNATed on the host to the probe address) bypass ztunnel.
        `-A ${CHAIN_PRERT} -s ${probe} -p tcp -m tcp -j ACCEPT`,
        // Inbound plaintext capture; 15008 (HBONE) needs no redirect, ztunnel listens there.
        `-A ${CHAIN_PRERT} ! -d ${loopback} -p tcp -m tcp ! --dport ${Ports.hbone} ${notZtunnel} -j REDIRECT --to-ports ${Ports.inboundPlaintext}`,
      ],
      [CHAIN_OUTPUT]: natOutput,
    },
  };

  const tables = [mangle, nat];
  if (opts.dnsCapture) {
    // Separate conntrack zone for ztunnel's upstream DNS queries and their replies, so they cannot collide
    // with the app's captured queries.
    tables.push({
      table: "raw",
      chains: {
        [CHAIN_PRERT]: [`-A ${CHAIN_PRERT} -p udp ${notZtunnel} -m udp --sport 53 -j CT --zone 1`],
        [CHAIN_OUTPUT]: [`-A ${CHAIN_OUTPUT} -p udp -m mark --mark ${ZTUNNEL_MARK} -m udp --dport 53 -j CT --zone 1`],
      },
    });
  }
  return tables;
}

/**
 * Renders one table's `iptables-restore --noflush` block. Declaring our chains (`:ISTIO_PRERT - [0:0]`)
 * creates them or, when they exist, flushes only them; `jumpEdits` are the `-A`/`-D` lines that bring the
 * jumps from the built-in chains to exactly one each (computed from the live state by the caller).
 */
export function renderTable(t: TableRules, jumpEdits: readonly string[]): string {
  return [
    `*${t.table}`,
    `:${CHAIN_PRERT} - [0:0]`,
    `:${CHAIN_OUTPUT} - [0:0]`,
    ...jumpEdits,
    ...t.chains[CHAIN_PRERT],
    ...t.chains[CHAIN_OUTPUT],
    "COMMIT",
    "",
  ].join("\n");
}

function familyRules(family: Family, opts: RedirectOptions): FamilyRules {
  const tables = familyTables(family, opts);
  return { family, tables, restore: tables.map((t) => renderTable(t, JUMP_RULES)).join("") };
}

/** The rules the pod netns must hold, for iptables and (with `ipv6`) ip6tables. Pure. */
export function desiredRules(opts: RedirectOptions): DesiredRules {
  const out: DesiredRules = { ipv4: familyRules("ipv4", opts) };
  if (opts.ipv6) out.ipv6 = familyRules("ipv6", opts);
  return out;
}

/** What `iptables-save` shows of one table, reduced to what concerns us. */
export interface SavedTable {
  table: string;
  /** User and built-in chains declared in the table. */
  chains: Set<string>;
  /** `-A` lines by chain, in order. */
  rules: Map<string, string[]>;
}

/** Parses `iptables-save` output (all tables) into per-table chains and rules; comments are ignored. */
export function parseSave(text: string): Map<string, SavedTable> {
  const tables = new Map<string, SavedTable>();
  let cur: SavedTable | undefined;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    if (line.startsWith("*")) {
      cur = { table: line.slice(1), chains: new Set(), rules: new Map() };
      tables.set(cur.table, cur);
    } else if (line === "COMMIT") {
      cur = undefined;
    } else if (cur && line.startsWith(":")) {
      const name = line.slice(1).split(/\s+/)[0];
      if (name) cur.chains.add(name);
    } else if (cur && line.startsWith("-A ")) {
      const chain = line.split(/\s+/)[1] ?? "";
      const list = cur.rules.get(chain) ?? [];
      list.push(line.replace(/\s+/g, " "));
      cur.rules.set(chain, list);
    }
  }
  return tables;
}

/** Rules outside our chains that jump (or goto) into one of our chains. */
export function referencesToOurChains(t: SavedTable): string[] {
  const out: string[] = [];
  for (const [chain, rules] of t.rules) {
    if (OUR_CHAINS.includes(chain)) continue;
    for (const r of rules) {
      const m = /\s-[jg]\s+(\S+)/.exec(r);
      if (m?.[1] && OUR_CHAINS.includes(m[1])) out.push(r);
    }
  }
  return out;
}
