// The system account, as the node and its commands use it to look at the
// whole cluster: nats-server answers `$SYS.REQ.SERVER.PING.<KIND>` from
// every server (or, for JSZ with leader_only, from the meta leader alone),
// so one connection on loopback sees what every node's monitoring port
// would show, without opening any of them to the tailnet.
import { connect, credsAuthenticator, type NatsConnection } from "@nats-io/transport-node";
import type { Config } from "../config/mod.ts";
import { systemCredentials } from "../auth/secrets.ts";

/** One server's answer to a $SYS.REQ.SERVER.PING request. */
export interface ServerReply<T> {
  server: { name: string; id: string };
  data?: T;
  error?: { code: number; description: string };
}

export async function sysConnect(config: Config, name: string, opts: { reconnect?: boolean } = {}): Promise<NatsConnection> {
  const base = {
    servers: `127.0.0.1:${config.nats.loopback.client_port}`,
    name,
    // Loopback only: never learn the cluster's tailnet URLs.
    ignoreClusterUpdates: true,
    ...(opts.reconnect && { maxReconnectAttempts: -1, waitOnFirstConnect: true, reconnectTimeWait: 1000 }),
  };
  const c = systemCredentials(config);
  return connect("creds" in c ? { ...base, authenticator: credsAuthenticator(c.creds) } : { ...base, ...c });
}

/**
 * Asks every server (PING.<kind>) and gathers their answers until none came
 * for a moment: the number of servers is what we are trying to learn, so a
 * count cannot end the wait.
 */
export async function pingAll<T>(nc: NatsConnection, kind: string, opts: object = {}, maxWaitMs = 2000): Promise<Array<ServerReply<T>>> {
  const out: Array<ServerReply<T>> = [];
  const it = await nc.requestMany(`$SYS.REQ.SERVER.PING.${kind}`, JSON.stringify(opts), {
    strategy: "stall",
    stall: 300,
    maxWait: maxWaitMs,
  });
  for await (const m of it) {
    try {
      out.push(m.json<ServerReply<T>>());
    } catch {
      // An answer that is not JSON is not a server's answer: skip it.
    }
  }
  return out;
}

/** The meta group as its leader sees it (a follower's /jsz lists no replicas). */
export interface MetaView {
  leader?: string;
  cluster_size?: number;
  replicas?: Array<{ name: string; current: boolean; offline?: boolean; active?: number; lag?: number }>;
}

/** The meta leader's view, or undefined when no leader answered. */
export async function metaLeaderView(nc: NatsConnection, timeoutMs = 3000): Promise<MetaView | undefined> {
  try {
    const r = await nc.request("$SYS.REQ.SERVER.PING.JSZ", JSON.stringify({ leader_only: true }), { timeout: timeoutMs });
    return r.json<ServerReply<{ meta_cluster?: MetaView }>>().data?.meta_cluster;
  } catch {
    return undefined;
  }
}
