// Users of the operator store: issuing .creds (with the key keys.ts picks),
// re-issuing them under a new signing key, revoking them, and saying what
// state each is in. A user needs no push; a revocation is a change of the
// account JWT, which does.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createUser, fromSeed } from "@nats-io/nkeys";
import { encodeUser, fmtCreds, parseCreds, type ClaimsData, type User, type UserPermissionsLimits } from "@nats-io/jwt";
import { UsageError } from "../errors.ts";
import { isRevoked, userSigner, userState, type UserSigner, type UserState } from "./keys.ts";
import {
  KeyRing,
  accountDir,
  checkName,
  editAccount,
  readAccount,
  readOperator,
  userCredsPath,
  writeSecret,
  type AccountRecord,
} from "./operator-store.ts";

export interface UserSpec {
  pubAllow?: string[];
  pubDeny?: string[];
  subAllow?: string[];
  subDeny?: string[];
  respMax?: number;
  respTtlMs?: number;
  expiresInMs?: number;
  bearer?: boolean;
  /** Default true: the user gets in only through a node's tailnet face. */
  proxyRequired?: boolean;
  /** Sign with this role's scoped key: the permissions come from the role. */
  role?: string;
  /** Sign with this signing key of the account rather than the default one. */
  signingKey?: string;
  /** JWT tags ("key:value"), read by a role's {{tag(key)}}. */
  tags?: string[];
}

/** A user's (or a role template's) permissions claim from the CLI's flags. */
export function permissionsOf(spec: UserSpec): Partial<UserPermissionsLimits> & { proxy_required: boolean } {
  const perm = (allow?: string[], deny?: string[]) => ({ ...(allow?.length ? { allow } : {}), ...(deny?.length ? { deny } : {}) });
  return {
    pub: perm(spec.pubAllow, spec.pubDeny),
    sub: perm(spec.subAllow, spec.subDeny),
    ...(spec.respMax ? { resp: { max: spec.respMax, ttl: (spec.respTtlMs ?? 0) * 1_000_000 } } : {}),
    bearer_token: spec.bearer ?? false,
    proxy_required: spec.proxyRequired ?? true,
    subs: -1,
    data: -1,
    payload: -1,
  };
}

const OWN_PERMISSIONS: Array<keyof UserSpec> = ["pubAllow", "pubDeny", "subAllow", "subDeny", "respMax", "respTtlMs", "bearer"];

/** Signs a user JWT and writes its .creds. A role's user carries no permissions: nats-server would refuse it. */
async function issue(
  acc: AccountRecord,
  signer: UserSigner,
  ring: KeyRing,
  name: string,
  user: { seed?: string; nats: Partial<User>; exp?: number; tags?: string[] },
  path: string,
): Promise<void> {
  const ukp = user.seed ? fromSeed(new TextEncoder().encode(user.seed)) : createUser();
  const nats = { ...user.nats, ...(user.tags?.length ? { tags: user.tags } : {}) };
  delete nats.issuer_account; // set by encodeUser for a signing key, absent for the identity key
  const exp = user.exp ? { exp: user.exp } : {};
  const jwt =
    signer.key === acc.pub
      ? await encodeUser(name, ukp, ring.pair(acc.pub), nats, exp)
      : await encodeUser(name, ukp, acc.pub, nats, { ...exp, signer: ring.pair(signer.key), scopedUser: Boolean(signer.role) });
  writeSecret(path, fmtCreds(jwt, ukp));
}

/** Writes <account>/users/<name>.creds (JWT + seed), readable by every NATS client. */
export async function addUser(dir: string, account: string, name: string, spec: UserSpec = {}): Promise<string> {
  checkName("user", name);
  const acc = readAccount(dir, account);
  const ring = KeyRing.of(dir);
  const signer = userSigner(acc, readOperator(dir).strict, ring, { role: spec.role, key: spec.signingKey });
  if (signer.role && (OWN_PERMISSIONS.some((k) => spec[k] !== undefined) || spec.proxyRequired === false))
    throw new UsageError("ERR_USAGE", `a user of role ${signer.role.role} takes its permissions from the role: drop the permission flags`);
  const exp = spec.expiresInMs ? Math.floor((Date.now() + spec.expiresInMs) / 1000) : undefined;
  const path = userCredsPath(dir, account, name);
  await issue(acc, signer, ring, name, { nats: signer.role ? {} : permissionsOf(spec), exp, tags: spec.tags }, path);
  return path;
}

interface StoredUser {
  name: string;
  path: string;
  seed: string;
  claims: ClaimsData<User>;
}

async function storedUsers(dir: string, account: string): Promise<StoredUser[]> {
  const d = join(accountDir(dir, account), "users");
  const files = (existsSync(d) ? readdirSync(d) : []).filter((f) => f.endsWith(".creds")).sort();
  return Promise.all(
    files.map(async (f) => {
      const c = await parseCreds(readFileSync(join(d, f)));
      return { name: f.slice(0, -6), path: join(d, f), seed: c.key, claims: c.uc };
    }),
  );
}

export interface UserRow {
  name: string;
  pub: string;
  signer: string;
  role?: string;
  expires?: Date;
  state: UserState;
}

/** Every user with .creds in the store, and what nats-server would make of it. */
export async function listUsers(dir: string, account: string): Promise<UserRow[]> {
  const acc = readAccount(dir, account);
  const strict = readOperator(dir).strict;
  return (await storedUsers(dir, account)).map(({ name, claims: c }) => ({
    name,
    pub: c.sub,
    signer: c.iss,
    role: acc.roles.find((r) => r.key === c.iss)?.role,
    ...(c.exp ? { expires: new Date(c.exp * 1000) } : {}),
    state: userState(c, { ...acc, revocations: acc.claims.nats.revocations }, strict),
  }));
}

/**
 * Signs users again, keeping their key, claims and expiry: a role's user
 * with its role's key, others with the account's current default signing
 * key. The step of a rotation between adding the new key and removing the
 * old. Revoked users stay revoked (a new JWT would postdate the revocation).
 */
export async function reissueUsers(
  dir: string,
  account: string,
  names?: string[],
): Promise<Array<{ name: string; path: string; signer: string }>> {
  const acc = readAccount(dir, account);
  const strict = readOperator(dir).strict;
  const ring = KeyRing.of(dir);
  const all = await storedUsers(dir, account);
  for (const n of names ?? []) if (!all.some((u) => u.name === n)) throw noUser(dir, account, n);
  const out = [];
  for (const u of all.filter((u) => !names || names.includes(u.name))) {
    if (isRevoked(u.claims, acc.claims.nats.revocations)) continue;
    const role = acc.roles.find((r) => r.key === u.claims.iss)?.role;
    const signer = userSigner(acc, strict, ring, { role });
    await issue(acc, signer, ring, u.name, { seed: u.seed, nats: u.claims.nats, exp: u.claims.exp }, u.path);
    out.push({ name: u.name, path: u.path, signer: signer.key });
  }
  return out;
}

function noUser(dir: string, account: string, who: string): UsageError {
  return new UsageError("ERR_AUTH_NO_USER", `no user ${who} in account ${account} (looked for ${userCredsPath(dir, account, who)})`);
}

const nowSec = () => Math.floor(Date.now() / 1000);

/**
 * Revokes a user (by name in the store, or by public key, e.g. one made
 * elsewhere): every JWT of that key issued up to now is refused, and
 * nats-server disconnects it once the account is pushed.
 */
export async function revokeUser(dir: string, account: string, who: string): Promise<string> {
  let pub = who;
  if (!/^U[A-Z2-7]{55}$/.test(who)) {
    const u = (await storedUsers(dir, account)).find((u) => u.name === who);
    if (!u) throw noUser(dir, account, who);
    pub = u.claims.sub;
  }
  await editAccount(dir, account, (nats) => void (nats.revocations = { ...nats.revocations, [pub]: nowSec() }));
  return pub;
}

/** Revokes every user JWT of the account issued at or before `before` (seconds). */
export async function revokeAllBefore(dir: string, account: string, before = nowSec()): Promise<void> {
  await editAccount(dir, account, (nats) => void (nats.revocations = { ...nats.revocations, "*": before }));
}
