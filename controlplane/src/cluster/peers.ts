// `nats-tsnet peer list|remove`: run on a node's host, next to the node.
// They read what the node wrote to its state dir and ask nats-server on
// loopback; they never touch the tailnet themselves.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Config } from "../config/mod.ts";
import type { Device } from "../bridge-client/client.ts";
import { metaLeaderView, sysConnect, type MetaView } from "../observe/sys.ts";
import { OperationError } from "../errors.ts";
import { localGet } from "../util/http.ts";
import { readStoreHealth, type StoreHealthFile } from "../node/store-health.ts";

export interface PeerRow {
  name: string;
  tailnet: { ips: string[]; online: boolean; tags: string[] } | null;
  route: { url: string; connected: boolean } | null;
  jetstream: { role: "leader" | "follower"; current: boolean; offline: boolean } | null;
}

async function getJSON(port: number, path: string): Promise<any> {
  return JSON.parse((await localGet(port, path, 5000)).body);
}

function readStatus(config: Config): { self: Device; peers: Device[]; routes: Array<{ peer: string; url: string }> } {
  try {
    return JSON.parse(readFileSync(join(config.state_dir, "status.json"), "utf8"));
  } catch (cause) {
    throw new OperationError("ERR_NODE_NOT_RUNNING", `no status in ${config.state_dir}: is the node running with this config?`, { cause });
  }
}

/**
 * The meta group as its leader sees it (only the leader knows every
 * member's state), or this server's own view when no leader answers.
 */
async function metaGroup(config: Config): Promise<MetaView> {
  const nc = await sysConnect(config, "nats-tsnet peer");
  try {
    return (
      (await metaLeaderView(nc, 5000)) ?? (await getJSON(config.nats.loopback.monitor_port, "/jsz").catch(() => ({}))).meta_cluster ?? {}
    );
  } finally {
    await nc.close();
  }
}

/** Tailnet peers, routes and the JetStream meta group, side by side. */
export async function peerList(config: Config): Promise<{ self: string; metaLeader?: string; rows: PeerRow[]; store: StoreHealthFile }> {
  const st = readStatus(config);
  const port = config.nats.loopback.monitor_port;
  const [routez, meta] = await Promise.all([getJSON(port, "/routez"), metaGroup(config)]);
  const routed = new Set<string>((routez.routes ?? []).map((r: { remote_name: string }) => r.remote_name));
  const replicas = new Map((meta.replicas ?? []).map((r) => [r.name, r]));
  const names = new Set<string>([
    ...st.peers.filter((p) => p.tags.includes(config.tailnet.cluster_tag)).map((p) => p.name),
    ...st.routes.map((r) => r.peer),
    ...replicas.keys(),
  ]);
  const rows: PeerRow[] = [...names].sort().map((name) => {
    const dev = st.peers.find((p) => p.name === name);
    const route = st.routes.find((r) => r.peer === name);
    const rep = replicas.get(name);
    return {
      name,
      tailnet: dev ? { ips: dev.ips, online: dev.online, tags: dev.tags } : null,
      route: route ? { url: route.url, connected: routed.has(name) } : null,
      jetstream:
        meta.leader === name
          ? { role: "leader", current: true, offline: false }
          : rep
            ? { role: "follower", current: rep.current, offline: Boolean(rep.offline) }
            : null,
    };
  });
  return { self: st.self.name, metaLeader: meta.leader, rows, store: readStoreHealth(config.state_dir) };
}

export function formatPeerList(l: Awaited<ReturnType<typeof peerList>>): string {
  const head = ["PEER", "TAILNET", "ROUTE", "JETSTREAM"];
  const rows = l.rows.map((r) => [
    r.name,
    r.tailnet ? `${r.tailnet.online ? "online" : "offline"} ${r.tailnet.ips.join(" ")}` : "not on the tailnet",
    r.route ? `${r.route.connected ? "up" : "down"} ${r.route.url}` : "none",
    r.jetstream ? `${r.jetstream.role}${r.jetstream.offline ? " offline" : r.jetstream.current ? "" : " behind"}` : "not in meta group",
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (r: string[]) =>
    r
      .map((c, i) => c.padEnd(w[i]!))
      .join("  ")
      .trimEnd();
  return [`this node: ${l.self}   meta leader: ${l.metaLeader ?? "none"}`, fmt(head), ...rows.map(fmt), ...storeLines(l)].join("\n") + "\n";
}

/**
 * What this node's nats-server said about its store or its membership, if
 * anything (see store-health.ts). A removal is shown only while this node is
 * out of the meta group: once it is taken back the record is history.
 */
function storeLines(l: Awaited<ReturnType<typeof peerList>>): string[] {
  const what = {
    ERR_STORE_DAMAGED: "this node's store damaged",
    ERR_STORE_FULL: "this node's store full",
    ERR_NODE_REMOVED: "this node removed from the meta group",
  } as const;
  const member = Boolean(l.rows.find((r) => r.name === l.self)?.jetstream);
  const out = (Object.keys(what) as Array<keyof typeof what>).flatMap((code) => {
    const r = l.store[code];
    if (!r || (code === "ERR_NODE_REMOVED" && member)) return [];
    return [`${what[code]}: ${r.count} times, last ${r.last} (${code}): ${r.line}`];
  });
  return out.length ? ["", ...out] : [];
}

/**
 * Removes a server that is gone for good from the JetStream meta group
 * ($JS.API.SERVER.REMOVE, as `nats server raft peer-remove` does). Never
 * done automatically: only an operator knows a peer will not come back.
 */
export async function peerRemove(config: Config, name: string): Promise<void> {
  const nc = await sysConnect(config, "nats-tsnet peer");
  try {
    const r = await nc.request("$JS.API.SERVER.REMOVE", JSON.stringify({ peer: name }), { timeout: 10_000 });
    const body = r.json<{ success?: boolean; error?: { description: string } }>();
    if (!body.success) {
      throw new OperationError(
        "ERR_PEER_REMOVE",
        `removing ${name} from the JetStream meta group failed: ${body.error?.description ?? JSON.stringify(body)}`,
      );
    }
  } finally {
    await nc.close();
  }
}
