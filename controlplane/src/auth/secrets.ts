// Credentials the node makes for itself and keeps in its state dir (0600):
// the system-account user that `nats-tsnet peer ...` and the node's own
// housekeeping use, the route secret, the callout's own user. Nobody hands
// these out; they never leave the host.
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Config } from "../config/mod.ts";
import { OperationError } from "../errors.ts";
import { adminCredsPath } from "./operator-paths.ts";
import { writeFileAtomic } from "../util/fs.ts";

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

/** The user name routes present with route_password. */
export const ROUTE_USER = "nats-tsnet-route";

function secretsPath(stateDir: string): string {
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
    writeFileAtomic(path, JSON.stringify(s, null, 2) + "\n");
  }
  return s;
}

/**
 * How a command on the node's host reaches the system account on loopback:
 * the node's own system user, or in operator mode the store's admin creds.
 */
export function systemCredentials(config: Config): { user: string; pass: string } | { creds: Uint8Array } {
  if (config.auth.mode === "operator") {
    return { creds: readFileSync(adminCredsPath(config.auth.operator_dir)) };
  }
  let s: NodeSecrets;
  try {
    s = JSON.parse(readFileSync(secretsPath(config.state_dir), "utf8")) as NodeSecrets;
  } catch (cause) {
    throw new OperationError("ERR_NODE_NOT_RUNNING", `no node secrets in ${config.state_dir}: has a node run with this config?`, { cause });
  }
  return { user: s.sys_user, pass: s.sys_password };
}
