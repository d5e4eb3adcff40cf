// Which key signs what, given an operator store. Pure: the claims come in
// decoded and the seeds on disk are behind KeySource, so the rules can be
// tested without a store and read in one place.
//
// NATS's rules (nats-server enforces them): an account JWT is signed by the
// operator's identity key or one of its signing keys, a user JWT by its
// account's identity key or one of the account's signing keys. An operator
// with strict_signing_key_usage accepts signing keys only: identity keys then
// sign nothing but the JWT that lists the signing keys, and can live offline.
// A scoped signing key (a "role") carries the permissions of every user it
// signs; such users must carry none of their own.
import type { Account, ClaimsData, Operator, SigningKey, UserPermissionsLimits } from "@nats-io/jwt";
import { UsageError } from "../errors.ts";

export interface OperatorView {
  name: string;
  pub: string;
  signingKeys: string[];
  strict: boolean;
}

export interface Role {
  key: string;
  role: string;
  template: Partial<UserPermissionsLimits>;
}

export interface AccountView {
  name: string;
  pub: string;
  /** Unscoped signing keys, in the JWT's order. */
  signingKeys: string[];
  roles: Role[];
}

/** Where seeds are: answers whether one is at hand and where it was looked for. */
export interface KeySource {
  has(pub: string): boolean;
  where(pub: string): string;
}

export function operatorView(c: ClaimsData<Operator>): OperatorView {
  const nats = c.nats as Operator & { strict_signing_key_usage?: boolean };
  return {
    name: c.name,
    pub: c.sub,
    signingKeys: (nats.signing_keys ?? []).map((k) => (typeof k === "string" ? k : k.key)),
    strict: nats.strict_signing_key_usage === true,
  };
}

export function accountView(c: ClaimsData<Account>): AccountView {
  const keys = c.nats.signing_keys ?? [];
  return {
    name: c.name,
    pub: c.sub,
    signingKeys: keys.filter((k): k is string => typeof k === "string"),
    roles: keys
      .filter((k): k is SigningKey => typeof k !== "string" && k.kind === "user_scope")
      .map((k) => ({ key: k.key, role: k.role, template: k.template ?? {} })),
  };
}

function missing(keys: KeySource, wanted: string[], what: string): never {
  if (wanted.length === 0) throw new UsageError("ERR_AUTH_KEY_MISSING", `${what}: the JWT lists no key that may do it`);
  const looked = wanted.map((k) => `${k} (looked for ${keys.where(k)})`).join(", ");
  throw new UsageError("ERR_AUTH_KEY_MISSING", `${what} needs the seed of ${wanted.length > 1 ? "one of " : ""}${looked}`);
}

/**
 * The key that signs the operator's accounts: a signing key when one is at
 * hand (the newest, last in the JWT), the identity key only if the
 * operator is not strict.
 */
export function accountSigner(op: OperatorView, keys: KeySource): string {
  const sk = op.signingKeys.filter((k) => keys.has(k)).at(-1);
  if (sk) return sk;
  if (!op.strict && keys.has(op.pub)) return op.pub;
  const why = op.strict ? " (strict signing-key usage: only signing keys)" : "";
  return missing(keys, op.strict ? op.signingKeys : [...op.signingKeys, op.pub], `signing accounts of operator ${op.name}${why}`);
}

export interface UserSigner {
  key: string;
  /** Set when the key is a role: the user must carry no permissions of its own. */
  role?: Role;
}

/**
 * The key that signs a user of acc. With role, that role's scoped key;
 * with key, that key (it must belong to the account); otherwise the newest
 * unscoped signing key at hand, or the identity key if the operator is not
 * strict. A role's key is never picked by default: it would give the user
 * the role's permissions instead of its own.
 */
export function userSigner(acc: AccountView, strict: boolean, keys: KeySource, want: { role?: string; key?: string } = {}): UserSigner {
  const what = `signing users of account ${acc.name}`;
  if (want.role !== undefined) {
    const role = acc.roles.find((r) => r.role === want.role);
    if (!role) {
      const known = acc.roles.map((r) => r.role).join(", ") || "none";
      throw new UsageError("ERR_AUTH_NO_ROLE", `account ${acc.name} has no role ${want.role} (roles: ${known})`);
    }
    return keys.has(role.key) ? { key: role.key, role } : missing(keys, [role.key], `${what} with role ${role.role}`);
  }
  if (want.key !== undefined) {
    const role = acc.roles.find((r) => r.key === want.key);
    const allowed = acc.signingKeys.includes(want.key) || role || (!strict && want.key === acc.pub);
    if (!allowed) throw new UsageError("ERR_AUTH_KEY_MISSING", `${want.key} may not sign users of account ${acc.name}`);
    return keys.has(want.key) ? { key: want.key, ...(role ? { role } : {}) } : missing(keys, [want.key], what);
  }
  const sk = acc.signingKeys.filter((k) => keys.has(k)).at(-1);
  if (sk) return { key: sk };
  if (!strict && keys.has(acc.pub)) return { key: acc.pub };
  return missing(keys, strict ? acc.signingKeys : [...acc.signingKeys, acc.pub], `${what}${strict ? " (strict operator)" : ""}`);
}

/** nats-server's rule: a JWT issued at or before its key's (or "*") revocation time is revoked. */
export function isRevoked(user: { sub: string; iat: number }, revocations: Record<string, number> = {}): boolean {
  return [revocations[user.sub], revocations["*"]].some((t) => t !== undefined && user.iat <= t);
}

export type UserState = "ok" | "expired" | "revoked" | "unknown-signer";

/**
 * What nats-server would say of a user JWT, given its account as the cluster
 * knows it: the clear reason behind a bare "Authorization Violation".
 * Revocations hold seconds; a JWT issued at or before them is revoked.
 */
export function userState(
  user: { sub: string; iss: string; iat: number; exp?: number },
  acc: AccountView & { revocations?: Record<string, number> },
  strict: boolean,
  nowSec = Math.floor(Date.now() / 1000),
): UserState {
  const signers = [...acc.signingKeys, ...acc.roles.map((r) => r.key), ...(strict ? [] : [acc.pub])];
  if (!signers.includes(user.iss)) return "unknown-signer";
  if (isRevoked(user, acc.revocations)) return "revoked";
  if (user.exp !== undefined && user.exp <= nowSec) return "expired";
  return "ok";
}
