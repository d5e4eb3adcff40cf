// What each account may take of a node, and what one identity may hold by
// default. Without these, one user could reserve or fill
// all of JetStream (a stream whose max_bytes is the server's whole budget
// blocks every other account's reservations) and one connection could hold
// a million subscriptions. Pure, apart from reading the host's memory and
// disk size when the server's own JetStream budget is not configured.

import { readdirSync, statfsSync, statSync, type Dirent } from "node:fs";
import { totalmem } from "node:os";
import { dirname, join } from "node:path";
import type { Config, AuthConfig } from "./load.ts";
import type { ParsedInput } from "./schema.ts";
import { parseSize } from "./units.ts";

/** What one identity may hold on one connection unless a grant says otherwise. */
export const IDENTITY_DEFAULTS = { subs: 1000, payload: "1MB" } as const;

/** Every account's limits unless auth.account_limits or auth.account_overrides say otherwise. */
export const ACCOUNT_DEFAULTS = {
  max_memory: "",
  max_file: "",
  max_streams: 100,
  max_consumers: 1000,
  max_bytes_required: false,
  max_connections: 10_000,
  max_subscriptions: 100_000,
  max_payload: "",
} as const;

/**
 * Account limits for operator-mode accounts made by `nats-tsnet auth
 * account add`: the same counts, and fixed JetStream sizes because the
 * store knows no node's budget.
 */
export const OPERATOR_ACCOUNT_DEFAULTS = {
  conns: ACCOUNT_DEFAULTS.max_connections,
  subs: IDENTITY_DEFAULTS.subs,
  jsMemory: 256 * 2 ** 20,
  jsDisk: 2 ** 30,
  streams: ACCOUNT_DEFAULTS.max_streams,
  consumers: ACCOUNT_DEFAULTS.max_consumers,
} as const;

/** One account's limits as nats-server takes them: byte counts and counts, -1 for none. */
export interface AccountBudget {
  maxMemory: number;
  maxFile: number;
  maxStreams: number;
  maxConsumers: number;
  maxBytesRequired: boolean;
  maxConnections: number;
  /** Per connection in this account (nats-server's account max_subscriptions). */
  maxSubscriptions: number;
  /** Per message; -1: the server's max_payload. */
  maxPayload: number;
}

/** The quota one connection is held to: -1 is no limit of the bridge's own. */
export interface IdentityQuota {
  subs: number;
  payload: number;
}

/** The server's JetStream budget on this host when the config leaves it to nats-server. */
export interface HostCapacity {
  memory: number;
  file: number;
}

type LimitValue = string | number;
type Overrides = Partial<Record<keyof typeof ACCOUNT_DEFAULTS, LimitValue | boolean>>;

/**
 * A byte limit as written: "" is unset (undefined), -1 no limit, and 0 or
 * "0MB" a real zero (unlike parseSize, for which 0 means unset).
 */
export function limitBytes(v: LimitValue | undefined): number | undefined {
  if (v === undefined || v === "") return undefined;
  if (typeof v === "number") return v;
  return parseSize(v) ?? 0;
}

/** The accounts clients land in and that get budgets: mode none has APP only; SYS never. */
export function budgetAccounts(auth: Pick<AuthConfig, "mode" | "accounts">): string[] {
  return auth.mode === "none" ? ["APP"] : [...auth.accounts];
}

/**
 * Every budgeted account's limits. JetStream memory and file storage left
 * unset are an even share of the server's budget (nats.jetstream, or what
 * nats-server would take on this host) among the accounts without their
 * own, after those with their own: together they never promise more than
 * the server has, so no account's reservation can block another's.
 */
export function accountBudgets(config: Config, host: () => HostCapacity = () => hostCapacity(config)): Map<string, AccountBudget> {
  const { auth } = config;
  const accounts = budgetAccounts(auth);
  const raw = (a: string) => ({ ...auth.account_limits, ...pruned(auth.account_overrides[a]) }) as Overrides;
  const js = config.nats.jetstream;
  const memory = shares(
    accounts,
    (a) => limitBytes(raw(a).max_memory as LimitValue),
    () => js.max_memory_bytes ?? host().memory,
  );
  const file = shares(
    accounts,
    (a) => limitBytes(raw(a).max_file as LimitValue),
    () => js.max_file_bytes ?? host().file,
  );
  const out = new Map<string, AccountBudget>();
  for (const a of accounts) {
    const r = raw(a);
    out.set(a, {
      maxMemory: memory.get(a)!,
      maxFile: file.get(a)!,
      maxStreams: r.max_streams as number,
      maxConsumers: r.max_consumers as number,
      maxBytesRequired: r.max_bytes_required as boolean,
      maxConnections: r.max_connections as number,
      maxSubscriptions: r.max_subscriptions as number,
      maxPayload: limitBytes(r.max_payload as LimitValue) ?? -1,
    });
  }
  return out;
}

function pruned<T extends object>(o: T | undefined): Partial<T> {
  return Object.fromEntries(Object.entries(o ?? {}).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Each account's own value, or an even share of what the others leave of total. */
function shares(accounts: string[], own: (a: string) => number | undefined, total: () => number): Map<string, number> {
  const out = new Map<string, number>();
  const rest = accounts.filter((a) => own(a) === undefined);
  const taken = accounts.reduce((sum, a) => sum + Math.max(0, own(a) ?? 0), 0);
  const each = rest.length ? Math.max(0, Math.floor((total() - taken) / rest.length)) : 0;
  for (const a of accounts) out.set(a, own(a) ?? each);
  return out;
}

/** An identity's limit under its account's ceiling (-1 on either side is no limit there). */
export function underCeiling(value: number, ceiling: number): number {
  if (ceiling < 0) return value;
  return value < 0 ? ceiling : Math.min(value, ceiling);
}

/**
 * The quota of an identity in account (or, without one, the default every
 * connection starts with, under every account's ceilings): the grant's
 * limits if it set any, else auth.limits; held under the account's
 * max_subscriptions and max_payload, so that the bridge, which counts
 * subscriptions, always refuses before nats-server does (nats-server's
 * refusal would not say which SUB it dropped).
 */
export function identityQuota(auth: AuthConfig, account: string | undefined, granted: Partial<IdentityQuota> = {}): IdentityQuota {
  const subs = granted.subs ?? auth.limits.subs;
  const payload = granted.payload ?? limitBytes(auth.limits.payload) ?? -1;
  const accounts = account === undefined ? budgetAccounts(auth) : [account];
  const under = (v: number, key: "max_subscriptions" | "max_payload") =>
    accounts.reduce((x, a) => underCeiling(x, a === "SYS" ? -1 : accountCeiling(auth, a, key)), v);
  return { subs: under(subs, "max_subscriptions"), payload: under(payload, "max_payload") };
}

/** An account's max_subscriptions or max_payload per connection, from the config alone (-1: none). */
function accountCeiling(auth: AuthConfig, account: string, key: "max_subscriptions" | "max_payload"): number {
  return limitBytes(auth.account_overrides[account]?.[key] ?? auth.account_limits[key]) ?? -1;
}

const hostMemo = new Map<string, HostCapacity>();

/**
 * What nats-server takes for JetStream when its limits are unset
 * (dynJetStreamConfig, diskAvailable): 75% of the host's memory (or of
 * GOMEMLIMIT, which nats-server inherits, when lower), and for files 75% of
 * the free disk at the store plus 75% of what the store already holds.
 * Measured once per process: the node writes these figures into
 * nats-server's config beside the accounts' shares of them, so that the two
 * agree, and stay put across config reloads (a standalone nats-server
 * refuses account budgets that add up to more than its own).
 */
export function hostCapacity(config: Config, env: NodeJS.ProcessEnv = process.env): HostCapacity {
  const dir = config.nats.jetstream.store_dir;
  let cap = hostMemo.get(dir);
  if (!cap) {
    const mem = Math.min(totalmem(), goMemLimit(env.GOMEMLIMIT) ?? Infinity);
    cap = { memory: Math.floor(mem / 4) * 3, file: Math.floor(diskFree(dir) / 4) * 3 + Math.floor(diskUsed(dir) / 4) * 3 };
    hostMemo.set(dir, cap);
  }
  return cap;
}

/** Go's GOMEMLIMIT ("1GiB", "512MiB", "1073741824"), or undefined when unset, "off" or unreadable. */
function goMemLimit(v: string | undefined): number | undefined {
  const m = /^(\d+)(B|KiB|MiB|GiB|TiB)?$/.exec(v ?? "");
  if (!m) return undefined;
  const unit = { B: 1, KiB: 2 ** 10, MiB: 2 ** 20, GiB: 2 ** 30, TiB: 2 ** 40 }[m[2] ?? "B"]!;
  return Number(m[1]) * unit;
}

/** Free bytes for an unprivileged writer at dir, or at its nearest existing parent. */
function diskFree(dir: string): number {
  for (let d = dir; ; d = dirname(d)) {
    try {
      const s = statfsSync(d);
      return s.bavail * s.bsize;
    } catch {
      if (dirname(d) === d) return 0;
    }
  }
}

/** Bytes of the files under dir (0 when it does not exist yet). */
function diskUsed(dir: string): number {
  let total = 0;
  let entries: Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) total += diskUsed(p);
    else if (e.isFile()) {
      try {
        total += statSync(p).size;
      } catch {
        // removed meanwhile
      }
    }
  }
  return total;
}

/**
 * The server's JetStream budget as rendered: the config's, or, when the
 * accounts get shares of it (modes tailnet and none), the host's figures
 * those shares were cut from. null leaves it to nats-server.
 */
export function serverBudget(config: Config, withShares: boolean): { memory: number | null; file: number | null } {
  const js = config.nats.jetstream;
  if (!withShares || (js.max_memory_bytes !== null && js.max_file_bytes !== null)) {
    return { memory: js.max_memory_bytes, file: js.max_file_bytes };
  }
  const host = hostCapacity(config);
  return { memory: js.max_memory_bytes ?? host.memory, file: js.max_file_bytes ?? host.file };
}

/**
 * Budgets that cannot hold, found while loading the config: overrides for
 * accounts clients never land in, and, when nats.jetstream sets the
 * server's budget, accounts' own budgets that promise more than it (a
 * standalone nats-server refuses to start JetStream then; in a cluster a
 * budget counts every replica on every node, so only a share left at
 * nothing is refused).
 */
export function budgetIssues(p: ParsedInput): Array<{ path: PropertyKey[]; message: string }> {
  const issues: Array<{ path: PropertyKey[]; message: string }> = [];
  const accounts = budgetAccounts(p.auth);
  for (const name of Object.keys(p.auth.account_overrides)) {
    if (!accounts.includes(name)) {
      issues.push({
        path: ["auth", "account_overrides", name],
        message: `no such account: clients land in ${accounts.join(", ")} (auth.accounts; mode none: APP); SYS keeps no limits`,
      });
    }
  }
  for (const a of accounts) {
    const o = p.auth.account_overrides[a];
    const payload = limitBytes((o?.max_payload ?? p.auth.account_limits.max_payload) as LimitValue);
    if (payload !== undefined && payload > 2 ** 31 - 1) {
      issues.push({
        path: ["auth", o?.max_payload !== undefined ? "account_overrides" : "account_limits"],
        message: "max_payload must be below 2GB",
      });
    }
  }
  for (const [dim, key] of [
    ["memory", "max_memory"],
    ["file", "max_file"],
  ] as const) {
    const server = limitBytes(p.nats.jetstream[`max_${dim}`]);
    if (server === undefined || server <= 0) continue;
    const own = (a: string) => limitBytes((p.auth.account_overrides[a]?.[key] ?? p.auth.account_limits[key]) as LimitValue);
    const taken = accounts.reduce((s, a) => s + Math.max(0, own(a) ?? 0), 0);
    const rest = accounts.filter((a) => own(a) === undefined);
    const where = ["auth", Object.keys(p.auth.account_overrides).length ? "account_overrides" : "account_limits"];
    if (p.nats.standalone && taken > server) {
      issues.push({ path: where, message: `the accounts' ${key} add up to ${taken} bytes, more than nats.jetstream.${key} (${server})` });
    } else if (rest.length && taken >= server) {
      issues.push({ path: where, message: `the accounts' own ${key} leave nothing of nats.jetstream.${key} for ${rest.join(", ")}` });
    }
  }
  return issues;
}
