// Where an operator store keeps what a node's host reads without the rest of
// the operator code (auth/secrets.ts: the admin's .creds for `peer ...`):
// plain paths, so that a node in another auth mode does not load nkeys, JWT
// and NATS client code to know them.
import { join } from "node:path";

export const SYS = "SYS";
export const ADMIN = "admin";

/** The system-account admin's .creds: how `auth push` and `peer ...` reach SYS on a node's loopback. */
export function adminCredsPath(dir: string): string {
  return join(dir, "accounts", SYS, "users", `${ADMIN}.creds`);
}
