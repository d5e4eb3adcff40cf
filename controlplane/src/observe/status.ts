// One picture of the cluster from this node: the tailnet (this device, every
// member, the path to each), the routes, the JetStream meta group, the
// streams and who is connected. `nats-tsnet status`, the topology page and
// /metrics all read this one shape, so that what they show cannot disagree.
//
// buildStatus is pure: it joins what the bridge, this nats-server and the
// system account said (gathered by the Observer) into the picture.
import type { Observed, TailnetStatus } from "../bridge-client/client.ts";
import type { MetaView, ServerReply } from "./sys.ts";

export interface MemberStatus {
  name: string;
  ips: string[];
  self: boolean;
  /** Online as the control server sees it. */
  online: boolean;
  /** This node's route to it: up, down, or none (itself). */
  route: "up" | "down" | "none";
  /** WireGuard path from this device, and a disco ping's round trip. */
  path: Observed["peers"][number]["path"] | "self";
  endpoint?: string;
  latency_ms?: number;
  jetstream: "leader" | "current" | "behind" | "offline" | "not in meta group";
}

export interface StreamCopy {
  server: string;
  leader: boolean;
  current: boolean;
  offline: boolean;
  /** Operations this copy is behind its leader. */
  lag: number;
}

export interface StreamStatus {
  account: string;
  name: string;
  replicas: number;
  leader?: string;
  messages: number;
  bytes: number;
  copies: StreamCopy[];
}

export interface ClientGroup {
  /** The tailnet identity (login or tags), a local face, or this node's own connections. */
  identity: string;
  devices: string[];
  connections: number;
  servers: string[];
  accounts: string[];
  in_msgs: number;
  out_msgs: number;
}

export interface ClusterStatus {
  at: string;
  self: {
    name: string;
    dns_name: string;
    ips: string[];
    tags: string[];
    backend_state: string;
    control_reachable: boolean;
    key_expiry?: string;
    key_expired: boolean;
    health: string[];
    /** The meta leader has not listed this server (ERR_NODE_REMOVED). */
    removed: boolean;
  };
  members: MemberStatus[];
  meta: { leader?: string; cluster_size?: number };
  streams: StreamStatus[];
  clients: ClientGroup[];
}

/** What nats-server's JSZ says per account (the fields used here). */
export interface JszData {
  meta_cluster?: MetaView;
  account_details?: Array<{
    name: string;
    stream_detail?: Array<{
      name: string;
      config?: { num_replicas?: number };
      state?: { messages: number; bytes: number };
      cluster?: { leader?: string; replicas?: Array<{ name: string; current: boolean; offline?: boolean; lag?: number }> };
    }>;
  }>;
}

export interface ConnzData {
  connections?: Array<{ cid: number; name?: string; account?: string; authorized_user?: string; in_msgs?: number; out_msgs?: number }>;
}

export interface StatusInputs {
  at: Date;
  tailnet: TailnetStatus;
  clusterTag: string;
  serverName: string;
  observed?: Observed;
  /** remote_name of every route nats-server has up. */
  routesUp: string[];
  meta?: MetaView;
  removed: boolean;
  jsz: Array<ServerReply<JszData>>;
  connz: Array<ServerReply<ConnzData>>;
}

/** tsnet's health warnings that mean the control server is out of reach. */
const CONTROL_DOWN = /control|coordination server|login server|logged out|needs login/i;

export function buildStatus(i: StatusInputs): ClusterStatus {
  const self = i.tailnet.self;
  const health = i.observed?.health ?? [];
  return {
    at: i.at.toISOString(),
    self: {
      name: self.name,
      dns_name: self.dnsName,
      ips: self.ips,
      tags: self.tags,
      backend_state: i.observed?.backendState ?? i.tailnet.backendState,
      control_reachable: (i.observed?.backendState ?? i.tailnet.backendState) === "Running" && !health.some((h) => CONTROL_DOWN.test(h)),
      ...(i.observed?.keyExpiry && { key_expiry: i.observed.keyExpiry }),
      key_expired: Boolean(i.observed?.keyExpired),
      health,
      removed: i.removed,
    },
    members: members(i),
    meta: { leader: i.meta?.leader || undefined, cluster_size: i.meta?.cluster_size },
    streams: streams(i.jsz),
    clients: clients(i.connz),
  };
}

function members(i: StatusInputs): MemberStatus[] {
  const self = i.tailnet.self;
  const paths = new Map((i.observed?.peers ?? []).map((p) => [p.name, p]));
  const up = new Set(i.routesUp);
  const meta = (name: string): MemberStatus["jetstream"] => {
    if (i.meta?.leader === name) return "leader";
    const r = i.meta?.replicas?.find((x) => x.name === name);
    if (!r) return "not in meta group";
    return r.offline ? "offline" : r.current ? "current" : "behind";
  };
  const out: MemberStatus[] = [
    { name: self.name, ips: self.ips, self: true, online: true, route: "none", path: "self", jetstream: meta(i.serverName) },
  ];
  for (const p of i.tailnet.peers.filter((d) => d.tags.includes(i.clusterTag))) {
    const path = paths.get(p.name);
    out.push({
      name: p.name,
      ips: p.ips,
      self: false,
      online: p.online,
      route: up.has(p.name) ? "up" : "down",
      path: path?.path ?? "none",
      ...(path?.endpoint && { endpoint: path.endpoint }),
      ...(path?.latencyMs !== undefined && { latency_ms: Math.round(path.latencyMs * 100) / 100 }),
      jetstream: meta(p.name),
    });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * Every server reports the streams it holds a copy of; the stream's leader
 * knows every copy's lag, so its record wins.
 */
function streams(jsz: Array<ServerReply<JszData>>): StreamStatus[] {
  const byKey = new Map<string, StreamStatus>();
  for (const r of jsz) {
    for (const acc of r.data?.account_details ?? []) {
      for (const s of acc.stream_detail ?? []) {
        const key = `${acc.name}\u0000${s.name}`;
        const leader = s.cluster?.leader ?? r.server.name;
        const fromLeader = leader === r.server.name;
        if (byKey.has(key) && !fromLeader) continue;
        const copies: StreamCopy[] = [
          { server: leader, leader: true, current: true, offline: false, lag: 0 },
          ...(s.cluster?.replicas ?? []).map((c) => ({
            server: c.name,
            leader: false,
            current: c.current,
            offline: Boolean(c.offline),
            lag: c.lag ?? 0,
          })),
        ];
        byKey.set(key, {
          account: acc.name,
          name: s.name,
          replicas: s.config?.num_replicas ?? copies.length,
          leader: s.cluster?.leader || (s.cluster ? undefined : r.server.name),
          messages: s.state?.messages ?? 0,
          bytes: s.state?.bytes ?? 0,
          copies: fromLeader ? copies : [],
        });
      }
    }
  }
  return [...byKey.values()].sort((a, b) => (a.account + a.name < b.account + b.name ? -1 : 1));
}

/**
 * The bridge puts the caller's identity in front of its connection name,
 * "who (device) client-name" (IdentityLabel; a local face's caller is
 * "local:face (ip)"). A connection without one is the node's own (the
 * callout, the observer) or a process on loopback with credentials.
 */
export function identityOfName(name: string | undefined): { identity: string; device?: string } {
  const m = /^(.*?)\s?\(([^()]+)\)(?: |$)/.exec(name ?? "");
  if (!m) return { identity: "this node's own" };
  return { identity: m[1] || "untagged device", device: m[2] };
}

function clients(connz: Array<ServerReply<ConnzData>>): ClientGroup[] {
  const groups = new Map<string, ClientGroup>();
  for (const r of connz) {
    for (const c of r.data?.connections ?? []) {
      const { identity, device } = identityOfName(c.name);
      let g = groups.get(identity);
      if (!g) {
        g = { identity, devices: [], connections: 0, servers: [], accounts: [], in_msgs: 0, out_msgs: 0 };
        groups.set(identity, g);
      }
      g.connections++;
      g.in_msgs += c.in_msgs ?? 0;
      g.out_msgs += c.out_msgs ?? 0;
      if (device && !g.devices.includes(device)) g.devices.push(device);
      if (!g.servers.includes(r.server.name)) g.servers.push(r.server.name);
      if (c.account && !g.accounts.includes(c.account)) g.accounts.push(c.account);
    }
  }
  for (const g of groups.values()) for (const xs of [g.devices, g.servers, g.accounts]) xs.sort();
  return [...groups.values()].sort((a, b) => b.connections - a.connections || (a.identity < b.identity ? -1 : 1));
}
