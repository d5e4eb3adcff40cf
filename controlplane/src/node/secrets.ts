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
}

export function secretsPath(stateDir: string): string {
  return join(stateDir, "secrets.json");
}

export function loadOrCreateSecrets(stateDir: string): NodeSecrets {
  const path = secretsPath(stateDir);
  if (existsSync(path)) return JSON.parse(readFileSync(path, "utf8")) as NodeSecrets;
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const s: NodeSecrets = {
    sys_user: "nats-tsnet-sys",
    sys_password: randomBytes(24).toString("base64url"),
    app_password: randomBytes(24).toString("base64url"),
  };
  writeFileSync(path, JSON.stringify(s, null, 2) + "\n", { mode: 0o600, flag: "wx" });
  return s;
}

export function readSecrets(stateDir: string): NodeSecrets {
  return JSON.parse(readFileSync(secretsPath(stateDir), "utf8")) as NodeSecrets;
}

/** Accounts block: a system account for the node, one account for tailnet clients. */
export function accountsBlock(s: NodeSecrets, q: (v: string) => string): string {
  return [
    "accounts {",
    `  SYS { users: [ { user: ${q(s.sys_user)}, password: ${q(s.sys_password)} } ] }`,
    `  APP { jetstream: enabled, users: [ { user: "tailnet", password: ${q(s.app_password)} } ] }`,
    "}",
    "system_account: SYS",
    // Auth mode none: a tailnet client that brings no credentials lands in APP.
    'no_auth_user: "tailnet"',
  ].join("\n");
}
