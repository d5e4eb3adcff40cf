// Pushing account JWTs to a running cluster through one node's loopback, as
// the store's SYS admin. The full resolver stores each update and sends it
// to every other server, which applies it (new limits, signing keys,
// revocations: revoked users are disconnected) without a restart.
import { readFileSync } from "node:fs";
import { connect, credsAuthenticator } from "@nats-io/transport-node";
import { OperationError } from "../errors.ts";
import { adminCredsPath, readStore } from "./operator-store.ts";

/** Pushes the named accounts (default: all) and returns nats-server's answer for each. */
export async function pushAccounts(dir: string, clientPort: number, only?: string[]): Promise<Array<{ account: string; result: string }>> {
  const store = readStore(dir);
  const creds = readFileSync(adminCredsPath(dir));
  const nc = await connect({
    servers: `127.0.0.1:${clientPort}`,
    authenticator: credsAuthenticator(creds),
    ignoreClusterUpdates: true,
    name: "nats-tsnet auth push",
  });
  try {
    const out = [];
    for (const a of store.accounts.filter((a) => !only || only.includes(a.name))) {
      const r = await nc.request("$SYS.REQ.CLAIMS.UPDATE", a.jwt, { timeout: 10_000 });
      const body = r.json<{ data?: { message?: string }; error?: { description?: string } }>();
      if (body.error) throw new OperationError("ERR_AUTH_PUSH", `pushing account ${a.name}: ${body.error.description}`);
      out.push({ account: a.name, result: body.data?.message ?? "ok" });
    }
    return out;
  } finally {
    await nc.close();
  }
}
