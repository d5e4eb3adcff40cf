// /metrics in Prometheus's text format (version 0.0.4).
//
// Written here rather than with a metrics library: every figure is a
// snapshot taken from somewhere else (the bridge's counters, nats-server,
// the cluster status) at the moment of the scrape, and the libraries'
// counters can only be incremented in the process that owns them. What is
// left is a few lines of escaping and formatting, tested with a real
// parser of the format (test/unit/observe.test.ts).
import type { Observed } from "../bridge-client/client.ts";
import type { Counters, Labels } from "./counters.ts";
import type { ClusterStatus } from "./status.ts";

type Kind = "counter" | "gauge" | "histogram";

interface Family {
  name: string;
  help: string;
  kind: Kind;
  samples: Array<{ suffix?: string; labels: Labels; value: number }>;
}

export class Exposition {
  private readonly families: Family[] = [];

  family(name: string, kind: Kind, help: string): Family {
    const f = { name, help, kind, samples: [] };
    this.families.push(f);
    return f;
  }

  /** A family with one sample per row; rows without a value are left out. */
  add(name: string, kind: Kind, help: string, rows: Array<[Labels, number | undefined]>): void {
    const f = this.family(name, kind, help);
    for (const [labels, value] of rows) if (value !== undefined && Number.isFinite(value)) f.samples.push({ labels, value });
  }

  text(): string {
    const out: string[] = [];
    for (const f of this.families) {
      if (!f.samples.length) continue;
      out.push(`# HELP ${f.name} ${f.help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`, `# TYPE ${f.name} ${f.kind}`);
      for (const s of f.samples) out.push(`${f.name}${s.suffix ?? ""}${labelText(s.labels)} ${formatValue(s.value)}`);
    }
    return out.join("\n") + "\n";
  }
}

function labelText(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
}

function formatValue(v: number): string {
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

const bool = (b: boolean) => (b ? 1 : 0);

export interface MetricsInputs {
  status: ClusterStatus;
  observed?: Observed;
  counters: Counters;
  /** This node's nats-server /varz and /jsz (the fields used here). */
  varz?: { connections?: number; routes?: number; mem?: number; slow_consumers?: number };
  jsz?: { memory?: number; storage?: number; streams?: number; consumers?: number; messages?: number };
  memory: Array<[process: string, rssBytes: number | undefined]>;
}

/** Everything /metrics says, from one look at the cluster. */
export function renderMetrics(i: MetricsInputs): string {
  const e = new Exposition();
  bridgeFamilies(e, i.observed);
  tailnetFamilies(e, i.status);
  e.add(
    "nats_tsnet_auth_decisions_total",
    "counter",
    "Auth callout decisions (mode tailnet), by decision.",
    i.counters.of("auth_decisions").map((c) => [c.labels, c.value]),
  );
  e.add(
    "nats_tsnet_reconcile_events_total",
    "counter",
    "Route reconcile events: members joined, left, moved.",
    i.counters.of("reconcile_events").map((c) => [c.labels, c.value]),
  );
  e.add(
    "nats_tsnet_resident_memory_bytes",
    "gauge",
    "Resident memory of this node's processes.",
    i.memory.map(([process, rss]) => [{ process }, rss]),
  );
  serverFamilies(e, i);
  return e.text();
}

function bridgeFamilies(e: Exposition, o: Observed | undefined): void {
  const faces = Object.entries(o?.metrics.faces ?? {});
  e.add(
    "nats_tsnet_bridge_connections_accepted_total",
    "counter",
    "Connections a bridge face passed to its upstream.",
    faces.map(([face, c]) => [{ face }, c.accepted]),
  );
  e.add(
    "nats_tsnet_bridge_connections_refused_total",
    "counter",
    "Connections a bridge face refused, by reason (a stable code).",
    faces.flatMap(([face, c]) => Object.entries(c.refused).map(([reason, n]): [Labels, number] => [{ face, reason }, n])),
  );
  e.add(
    "nats_tsnet_bridge_connections_open",
    "gauge",
    "Connections open through a bridge face.",
    faces.map(([face, c]) => [{ face }, c.open]),
  );
  e.add(
    "nats_tsnet_bridge_received_bytes_total",
    "counter",
    "Bytes from callers through a bridge face.",
    faces.map(([face, c]) => [{ face }, c.bytesIn]),
  );
  e.add(
    "nats_tsnet_bridge_sent_bytes_total",
    "counter",
    "Bytes to callers through a bridge face.",
    faces.map(([face, c]) => [{ face }, c.bytesOut]),
  );
  const h = o?.metrics.whois;
  if (h) {
    const f = e.family("nats_tsnet_bridge_whois_duration_seconds", "histogram", "How long the bridge's WhoIs calls into tsnet take.");
    h.bounds.forEach((le, k) => f.samples.push({ suffix: "_bucket", labels: { le: String(le) }, value: h.counts[k]! }));
    f.samples.push({ suffix: "_bucket", labels: { le: "+Inf" }, value: h.counts[h.bounds.length]! });
    f.samples.push({ suffix: "_sum", labels: {}, value: h.sum }, { suffix: "_count", labels: {}, value: h.count });
    e.add("nats_tsnet_bridge_whois_errors_total", "counter", "WhoIs calls that failed.", [[{}, h.errors]]);
  }
}

function tailnetFamilies(e: Exposition, s: ClusterStatus): void {
  e.add("nats_tsnet_tailnet_running", "gauge", "1 when this device's tailnet backend is Running.", [
    [{}, bool(s.self.backend_state === "Running")],
  ]);
  e.add("nats_tsnet_tailnet_control_reachable", "gauge", "1 when tsnet reports no trouble reaching the control server.", [
    [{}, bool(s.self.control_reachable)],
  ]);
  e.add("nats_tsnet_tailnet_key_expired", "gauge", "1 when this device's node key has expired (ERR_TAILNET_KEY_EXPIRED).", [
    [{}, bool(s.self.key_expired)],
  ]);
  e.add("nats_tsnet_tailnet_key_expiry_timestamp_seconds", "gauge", "When this device's node key expires (absent: never).", [
    [{}, s.self.key_expiry ? Date.parse(s.self.key_expiry) / 1000 : undefined],
  ]);
  e.add("nats_tsnet_meta_removed", "gauge", "1 when the JetStream meta leader does not list this server (ERR_NODE_REMOVED).", [
    [{}, bool(s.self.removed)],
  ]);
  const peers = s.members.filter((m) => !m.self);
  e.add(
    "nats_tsnet_member_online",
    "gauge",
    "1 when a cluster member is online on the tailnet.",
    peers.map((m) => [{ peer: m.name }, bool(m.online)]),
  );
  e.add(
    "nats_tsnet_member_route_up",
    "gauge",
    "1 when this node's route to a member is up.",
    peers.map((m) => [{ peer: m.name }, bool(m.route === "up")]),
  );
  e.add(
    "nats_tsnet_member_path",
    "gauge",
    "The WireGuard path to a member: 1 on the label of the path in use (direct, peer-relay, derp, none).",
    peers.map((m) => [{ peer: m.name, path: m.path }, 1]),
  );
  e.add(
    "nats_tsnet_member_latency_seconds",
    "gauge",
    "Round trip of a disco ping to a member.",
    peers.map((m) => [{ peer: m.name }, m.latency_ms === undefined ? undefined : m.latency_ms / 1000]),
  );
}

function serverFamilies(e: Exposition, i: MetricsInputs): void {
  const { status: s, varz, jsz } = i;
  e.add("nats_server_connections", "gauge", "Client connections on this node's nats-server.", [[{}, varz?.connections]]);
  e.add("nats_server_routes", "gauge", "Routes this node's nats-server has up.", [[{}, varz?.routes]]);
  e.add("nats_server_slow_consumers_total", "counter", "Slow consumers this nats-server has seen.", [[{}, varz?.slow_consumers]]);
  e.add("nats_server_jetstream_memory_bytes", "gauge", "JetStream memory storage in use on this server.", [[{}, jsz?.memory]]);
  e.add("nats_server_jetstream_storage_bytes", "gauge", "JetStream file storage in use on this server.", [[{}, jsz?.storage]]);
  e.add("nats_server_jetstream_streams", "gauge", "Streams with a copy on this server.", [[{}, jsz?.streams]]);
  e.add("nats_server_jetstream_consumers", "gauge", "Consumers with a copy on this server.", [[{}, jsz?.consumers]]);
  e.add("nats_server_jetstream_meta_leader", "gauge", "1 on the label of the JetStream meta leader (0 series when there is none).", [
    [{ leader: s.meta.leader ?? "" }, s.meta.leader ? 1 : undefined],
  ]);
  e.add("nats_server_jetstream_meta_is_leader", "gauge", "1 when this server leads the JetStream meta group.", [
    [{}, bool(s.meta.leader === s.self.name)],
  ]);
  e.add(
    "nats_stream_messages",
    "gauge",
    "Messages in a stream (as its leader reports).",
    s.streams.map((x) => [{ account: x.account, stream: x.name }, x.messages]),
  );
  e.add(
    "nats_stream_bytes",
    "gauge",
    "Bytes in a stream (as its leader reports).",
    s.streams.map((x) => [{ account: x.account, stream: x.name }, x.bytes]),
  );
  const copies = s.streams.flatMap((x) => x.copies.map((c) => ({ account: x.account, stream: x.name, ...c })));
  e.add(
    "nats_stream_replica_lag",
    "gauge",
    "Operations a stream copy is behind its leader.",
    copies.map((c) => [{ account: c.account, stream: c.stream, server: c.server }, c.lag]),
  );
  e.add(
    "nats_stream_replica_current",
    "gauge",
    "1 when a stream copy is current with its leader.",
    copies.map((c) => [{ account: c.account, stream: c.stream, server: c.server }, bool(c.current && !c.offline)]),
  );
}
