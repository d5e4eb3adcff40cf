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
}

export function secretsPath(stateDir: string): string {
  return join(stateDir, "secrets.json");
}

export function loadOrCreateSecrets(stateDir: string): NodeSecrets {
  const path = secretsPath(stateDir);
  if (existsSync(path)) {
    const s = JSON.parse(readFileSync(path, "utf8")) as NodeSecrets;
    if (s.route_password) return s;
    // State from an older version: add what is missing, keep the rest.
    s.route_password = randomBytes(24).toString("base64url");
    writeFileSync(path, JSON.stringify(s, null, 2) + "\n", { mode: 0o600 });
    return s;
  }
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const s: NodeSecrets = {
    sys_user: "nats-tsnet-sys",
    sys_password: randomBytes(24).toString("base64url"),
    app_password: randomBytes(24).toString("base64url"),
    route_password: randomBytes(24).toString("base64url"),
  };
  writeFileSync(path, JSON.stringify(s, null, 2) + "\n", { mode: 0o600, flag: "wx" });
  return s;
}

export function readSecrets(stateDir: string): NodeSecrets {
  return JSON.parse(readFileSync(secretsPath(stateDir), "utf8")) as NodeSecrets;
}

export const ROUTE_USER = "nats-tsnet-route";

/**
 * Accounts and the trusted proxy. A tailnet client lands in APP only when
 * the bridge vouched for it (proxy_required: the bridge signs the server's
 * nonce with a key that lives only in its memory); a local process that
 * dials 127.0.0.1 directly, forged PROXY header or not, is refused.
 */
export function accountsBlock(s: NodeSecrets, q: (v: string) => string, proxyKey: string): string {
  return [
    `proxies { trusted: [ { key: ${q(proxyKey)} } ] }`,
    "accounts {",
    `  SYS { users: [ { user: ${q(s.sys_user)}, password: ${q(s.sys_password)} } ] }`,
    `  APP { jetstream: enabled, users: [ { user: "tailnet", password: ${q(s.app_password)}, proxy_required: true } ] }`,
    "}",
    "system_account: SYS",
    // Auth mode none: a tailnet client that brings no credentials lands in APP.
    'no_auth_user: "tailnet"',
  ].join("\n");
}
