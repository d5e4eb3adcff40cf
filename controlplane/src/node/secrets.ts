// Credentials the node makes for itself and keeps in its state dir (0600):
// the system-account user that `nats-tsnet peer ...` and the node's own
// housekeeping use. Nobody hands these out; they never leave the host.
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface NodeSecrets {
  sys_user: string;
  sys_password: string;
  /** Password of the default-account user; unusable by design (no_auth_user picks it). */
  app_password: string;
  /** Route password of this node's cluster port; only its own bridge presents it. */
  route_password: string;
  /** Password of the auth-callout service's own user. */
  auth_password: string;
}

const FIELDS = ["sys_password", "app_password", "route_password", "auth_password"] as const;

export function secretsPath(stateDir: string): string {
  return join(stateDir, "secrets.json");
}

export function loadOrCreateSecrets(stateDir: string): NodeSecrets {
  const path = secretsPath(stateDir);
  const s = (existsSync(path) ? JSON.parse(readFileSync(path, "utf8")) : { sys_user: "nats-tsnet-sys" }) as NodeSecrets;
  // Fill in whatever is missing (new state, or state from an older version); keep the rest.
  const missing = FIELDS.filter((f) => !s[f]);
  if (missing.length) {
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    for (const f of missing) s[f] = randomBytes(24).toString("base64url");
    writeFileSync(path, JSON.stringify(s, null, 2) + "\n", { mode: 0o600 });
  }
  return s;
}

export function readSecrets(stateDir: string): NodeSecrets {
  return JSON.parse(readFileSync(secretsPath(stateDir), "utf8")) as NodeSecrets;
}

export const ROUTE_USER = "nats-tsnet-route";

/**
 * Accounts and the trusted proxy. A tailnet client gets in only when the
 * bridge vouched for it (proxy_required: the bridge signs the server's
 * nonce with a key that lives only in its memory); a local process that
 * dials 127.0.0.1 directly, forged PROXY header or not, is refused.
 *
 * auth mode tailnet: no user of its own for clients; the auth callout
 * decides each connection from the caller's tailnet identity and places it
 * in one of `accounts` (or SYS, if a grant says so).
 * auth mode none: every vouched-for client lands in APP with full rights.
 */
export function accountsBlock(
  s: NodeSecrets,
  q: (v: string) => string,
  proxyKey: string,
  auth: { mode: "none" } | { mode: "tailnet"; issuer: string; accounts: readonly string[]; authUser: string },
): string {
  const out = [`proxies { trusted: [ { key: ${q(proxyKey)} } ] }`, "accounts {"];
  out.push(`  SYS { users: [ { user: ${q(s.sys_user)}, password: ${q(s.sys_password)} } ] }`);
  if (auth.mode === "none") {
    out.push(`  APP { jetstream: enabled, users: [ { user: "tailnet", password: ${q(s.app_password)}, proxy_required: true } ] }`, "}",
      "system_account: SYS", 'no_auth_user: "tailnet"');
    return out.join("\n");
  }
  out.push(`  AUTH { users: [ { user: ${q(auth.authUser)}, password: ${q(s.auth_password)} } ] }`);
  for (const a of auth.accounts) out.push(`  ${q(a)} { jetstream: enabled }`);
  out.push("}", "system_account: SYS", "authorization {", "  auth_callout {",
    `    issuer: ${q(auth.issuer)}`, "    account: AUTH",
    `    auth_users: [ ${q(auth.authUser)}, ${q(s.sys_user)} ]`, "  }", "}");
  return out.join("\n");
}
