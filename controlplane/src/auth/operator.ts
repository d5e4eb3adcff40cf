// Auth mode operator: NATS's own decentralized JWT auth (operator ->
// accounts -> users), for those who want credentials files rather than
// tailnet identity. `nats-tsnet auth ...` keeps a store directory that
// every node of the cluster is given (operator and system account JWTs);
// accounts are pushed to the running cluster and spread by the `full`
// resolver, so an account pushed through one node is known to all.
//
// Keys follow NATS's recommendation: the operator and every account have a
// signing key next to their identity key, the operator is strict (accepts
// signing keys only), and identity keys can leave the host. Which key signs
// what is decided in keys.ts; the layout is in operator-store.ts.
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { createAccount, createOperator } from "@nats-io/nkeys";
import { encodeOperator, type Account, type SigningKey, type UserPermissionsLimits } from "@nats-io/jwt";
import { UsageError } from "../errors.ts";
import { OPERATOR_ACCOUNT_DEFAULTS } from "../config/mod.ts";
import {
  ADMIN,
  SYS,
  accountDir,
  checkName,
  editAccount,
  readAccount,
  readStore,
  saveSigningKey,
  seedText,
  writeAccountJwt,
  writeSecret,
  type StoreInfo,
  writePublic,
} from "./operator-store.ts";
import { addUser } from "./operator-users.ts";

export { adminCredsPath, readStore, SYS, type StoreInfo } from "./operator-store.ts";
export {
  addUser,
  listUsers,
  permissionsOf,
  reissueUsers,
  revokeUser,
  revokeAllBefore,
  type UserSpec,
  type UserRow,
} from "./operator-users.ts";
export { importNsc } from "./operator-nsc.ts";
export { pushAccounts } from "./operator-push.ts";

export interface AccountLimits {
  conns?: number;
  subs?: number;
  payload?: number;
  data?: number;
  jsMemory?: number;
  jsDisk?: number;
  streams?: number;
  consumers?: number;
}

/**
 * A new account's limits: the same defaults as the accounts of modes
 * tailnet and none (connections, subscriptions per connection, streams,
 * consumers) and a fixed JetStream budget, since the store knows no node's
 * size. Without them one account's users could take all of JetStream.
 * The system account keeps none: the node itself works through it.
 */
function newAccountLimits(name: string): AccountLimits {
  if (name === SYS) return {};
  const d = OPERATOR_ACCOUNT_DEFAULTS;
  return { conns: d.conns, subs: d.subs, jsMemory: d.jsMemory, jsDisk: d.jsDisk, streams: d.streams, consumers: d.consumers };
}

/** The limits claim: what was given over what the account had (a new one: the defaults; else unlimited). */
function limitsOf(name: string, given: AccountLimits, had?: Account["limits"]): Account["limits"] {
  const base: Account["limits"] = had ?? {};
  const fallback = had ? {} : newAccountLimits(name);
  const pick = (v: number | undefined, key: keyof NonNullable<Account["limits"]>, d: number | undefined) =>
    v ?? (base[key] as number | undefined) ?? d ?? -1;
  const jsOn = name !== SYS; // the system account never holds streams
  return {
    ...base,
    conn: pick(given.conns, "conn", fallback.conns),
    subs: pick(given.subs, "subs", fallback.subs),
    payload: pick(given.payload, "payload", fallback.payload),
    data: pick(given.data, "data", fallback.data),
    imports: base.imports ?? -1,
    exports: base.exports ?? -1,
    wildcards: base.wildcards ?? true,
    leaf: base.leaf ?? -1,
    ...(jsOn
      ? {
          mem_storage: pick(given.jsMemory, "mem_storage", fallback.jsMemory),
          disk_storage: pick(given.jsDisk, "disk_storage", fallback.jsDisk),
          streams: pick(given.streams, "streams", fallback.streams),
          consumer: pick(given.consumers, "consumer", fallback.consumers),
        }
      : {}),
  };
}

/** A new account: identity key, one signing key, signed by the operator's signing key. */
async function createAccountIn(dir: string, name: string, limits: AccountLimits, akp = createAccount()): Promise<string> {
  mkdirSync(join(accountDir(dir, name), "users"), { recursive: true, mode: 0o700 });
  writeSecret(join(accountDir(dir, name), "account.nk"), seedText(akp) + "\n");
  const sk = saveSigningKey(dir, createAccount());
  await writeAccountJwt(dir, name, akp.getPublicKey(), { limits: limitsOf(name, limits), signing_keys: [sk] });
  return akp.getPublicKey();
}

/**
 * A new operator with an operator signing key, its system account and an
 * admin user for it. strict (default) makes nats-server accept signing keys
 * only, so operator.nk and the accounts' account.nk can leave the host.
 */
export async function initStore(dir: string, operatorName: string, opts: { strict?: boolean } = {}): Promise<StoreInfo> {
  if (existsSync(join(dir, "operator.jwt"))) throw new UsageError("ERR_AUTH_EXISTS", `${dir} already holds an operator`);
  checkName("operator", operatorName);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const okp = createOperator();
  const osk = createOperator();
  const sys = createAccount();
  writeSecret(join(dir, "operator.nk"), seedText(okp) + "\n");
  saveSigningKey(dir, osk);
  const claims = { system_account: sys.getPublicKey(), signing_keys: [osk.getPublicKey()], strict_signing_key_usage: opts.strict ?? true };
  writePublic(join(dir, "operator.jwt"), (await encodeOperator(operatorName, okp, claims)) + "\n");
  await createAccountIn(dir, SYS, {}, sys);
  // The admin is how `auth push` and `peer ...` reach the system account on
  // a node's loopback; it is an operator's credential, not a tailnet one.
  await addUser(dir, SYS, ADMIN, { proxyRequired: false });
  return readStore(dir);
}

/** Adds an account, or edits the limits of one (keeping its key, signing keys, roles and revocations). */
export async function addAccount(dir: string, name: string, limits: AccountLimits = {}): Promise<string> {
  checkName("account", name);
  readStore(dir);
  if (!existsSync(join(accountDir(dir, name), "account.jwt"))) return createAccountIn(dir, name, limits);
  return (await editAccount(dir, name, (nats) => void (nats.limits = limitsOf(name, limits, nats.limits)))).pub;
}

/** Adds an unscoped signing key to an account; it becomes the one new users are signed with. */
export async function addSigningKey(dir: string, account: string): Promise<string> {
  const sk = saveSigningKey(dir, createAccount());
  await editAccount(dir, account, (nats) => void (nats.signing_keys = [...(nats.signing_keys ?? []), sk]));
  return sk;
}

/**
 * Takes a signing key (plain or a role's) out of an account and deletes its
 * seed: once pushed, users it signed are refused.
 */
export async function removeSigningKey(dir: string, account: string, pub: string): Promise<void> {
  const acc = readAccount(dir, account);
  if (!acc.signingKeys.includes(pub) && !acc.roles.some((r) => r.key === pub))
    throw new UsageError("ERR_AUTH_KEY_MISSING", `${pub} is not a signing key of account ${account}`);
  await editAccount(dir, account, (nats) => {
    nats.signing_keys = (nats.signing_keys ?? []).filter((k) => (typeof k === "string" ? k : k.key) !== pub);
  });
  rmSync(join(dir, "keys", `${pub}.nk`), { force: true });
}

/**
 * A role: a scoped signing key whose template is the permissions of every
 * user it signs. nats-server expands {{name()}}, {{subject()}},
 * {{account-name()}}, {{tag(k)}} and {{account-tag(k)}} per user. Adding an
 * existing role replaces its template and keeps its key.
 */
export async function addRole(dir: string, account: string, role: string, template: Partial<UserPermissionsLimits>): Promise<string> {
  checkName("role", role);
  const existing = readAccount(dir, account).roles.find((r) => r.role === role);
  const key = existing?.key ?? saveSigningKey(dir, createAccount());
  const scoped: SigningKey = { kind: "user_scope", key, role, template };
  await editAccount(dir, account, (nats) => {
    const others = (nats.signing_keys ?? []).filter((k) => (typeof k === "string" ? k : k.key) !== key);
    nats.signing_keys = [...others, scoped];
  });
  return key;
}
