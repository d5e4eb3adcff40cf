// `nats-tsnet status` as a person reads it: one screen, sections in the
// order an operator asks the questions (am I on the tailnet, are my peers
// there and routed, is JetStream healthy, who is connected).
import type { ClusterStatus } from "./status.ts";

function table(head: string[], rows: string[][]): string[] {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const fmt = (r: string[]) =>
    r
      .map((c, i) => (c ?? "").padEnd(w[i]!))
      .join("  ")
      .trimEnd();
  return [fmt(head), ...rows.map(fmt)];
}

function keyLine(s: ClusterStatus["self"], now: Date): string {
  if (s.key_expired) return "EXPIRED (ERR_TAILNET_KEY_EXPIRED: renew it, README: Operating)";
  if (!s.key_expiry) return "never expires";
  const days = (Date.parse(s.key_expiry) - now.getTime()) / 86_400_000;
  return `expires ${s.key_expiry} (in ${days < 1 ? `${Math.max(0, Math.round(days * 24))} h` : `${Math.floor(days)} days`})`;
}

export function formatStatus(s: ClusterStatus, now = new Date(s.at)): string {
  const self = s.self;
  const out = [
    `this node: ${self.name} (${self.dns_name})  ${self.ips.join(" ")}  ${self.tags.join(",")}`,
    `  tailnet: ${self.backend_state}, control server ${self.control_reachable ? "reachable" : "NOT reachable"}, key ${keyLine(self, now)}`,
    ...self.health.map((h) => `  tsnet says: ${h}`),
    ...(self.removed ? ["  NOT in the JetStream meta group (ERR_NODE_REMOVED): README, Reliability"] : []),
    "",
    ...table(
      ["MEMBER", "TAILNET", "ROUTE", "PATH", "LATENCY", "JETSTREAM"],
      s.members.map((m) => [
        m.self ? `${m.name} *` : m.name,
        m.self ? "this node" : m.online ? "online" : "offline",
        m.route === "none" ? "-" : m.route,
        m.path === "self" ? "-" : m.endpoint ? `${m.path} ${m.endpoint}` : m.path,
        m.latency_ms === undefined ? "-" : `${m.latency_ms} ms`,
        m.jetstream,
      ]),
    ),
    `meta leader: ${s.meta.leader ?? "none"}${s.meta.cluster_size ? `, group of ${s.meta.cluster_size}` : ""}`,
    "",
  ];
  if (s.streams.length) {
    out.push(
      ...table(
        ["STREAM", "R", "LEADER", "MESSAGES", "COPIES"],
        s.streams.map((x) => [
          `${x.account} > ${x.name}`,
          String(x.replicas),
          x.leader ?? "none",
          String(x.messages),
          x.copies
            .filter((c) => !c.leader)
            .map((c) => `${c.server} ${c.offline ? "offline" : c.current ? "current" : `behind ${c.lag}`}`)
            .join(", ") || "-",
        ]),
      ),
      "",
    );
  } else out.push("no streams", "");
  if (s.clients.length) {
    out.push(
      ...table(
        ["IDENTITY", "CONNS", "DEVICES", "ON", "ACCOUNTS"],
        s.clients.map((c) => [c.identity, String(c.connections), c.devices.join(", ") || "-", c.servers.join(", "), c.accounts.join(", ")]),
      ),
    );
  } else out.push("no client connections");
  return out.join("\n") + "\n";
}
