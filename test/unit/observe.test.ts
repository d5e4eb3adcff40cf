import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { MetaMembership, metaVerdict } from "../../controlplane/src/observe/meta-watch.ts";

describe("meta membership, as the meta leader sees it", () => {
  const view = { leader: "nats-1", cluster_size: 3, replicas: [{ name: "nats-2", current: true }] };

  test("listed as leader or replica is a member; unlisted under a leader is out", () => {
    assert.equal(metaVerdict("nats-1", view), "member");
    assert.equal(metaVerdict("nats-2", view), "member");
    assert.equal(metaVerdict("nats-3", view), "out");
  });

  test("no leader or no answer is unknown: a server cut off must not conclude it was removed", () => {
    assert.equal(metaVerdict("nats-3", undefined), "unknown");
    assert.equal(metaVerdict("nats-3", {}), "unknown");
    assert.equal(metaVerdict("nats-3", { leader: "", replicas: [] }), "unknown");
  });

  test("out counts only after unbroken patience; a member answer clears it, unknown neither clears nor confirms", () => {
    const m = new MetaMembership(30_000);
    assert.equal(m.observe("out", 0), false);
    assert.equal(m.out, true);
    assert.equal(m.observe("unknown", 20_000), false);
    assert.equal(m.observe("out", 30_000), true, "30 s of out answers, an unknown between them");
    assert.equal(m.observe("member", 40_000), false);
    assert.equal(m.out, false);
    assert.equal(m.observe("out", 50_000), false, "patience starts again after a member answer");
    assert.equal(m.observe("out", 79_999), false);
    assert.equal(m.observe("out", 80_000), true);
  });
});

import parsePrometheus from "parse-prometheus-text-format";
import { buildStatus, identityOfName, type StatusInputs } from "../../controlplane/src/observe/status.ts";
import { renderMetrics } from "../../controlplane/src/observe/metrics.ts";
import { Counters } from "../../controlplane/src/observe/counters.ts";
import { formatStatus } from "../../controlplane/src/observe/format.ts";

const dev = (name: string, n: number, online = true, tags = ["tag:nats"]) => ({
  id: `n${n}`,
  name,
  dnsName: `${name}.tail.example`,
  hostName: name,
  ips: [`100.64.0.${n}`],
  tags,
  online,
});

function inputs(): StatusInputs {
  return {
    at: new Date("2026-11-24T01:00:00Z"),
    tailnet: {
      backendState: "Running",
      self: dev("nats-1", 1),
      peers: [dev("nats-2", 2), dev("nats-3", 3, false), dev("laptop", 9, true, [])],
    },
    clusterTag: "tag:nats",
    serverName: "nats-1",
    observed: {
      backendState: "Running",
      keyExpiry: "2027-05-22T00:00:00Z",
      keyExpired: false,
      health: [],
      peers: [
        {
          name: "nats-2",
          ips: ["100.64.0.2"],
          online: true,
          path: "direct",
          endpoint: "10.0.0.2:41641",
          rxBytes: 1,
          txBytes: 2,
          latencyMs: 0.812,
        },
        { name: "nats-3", ips: ["100.64.0.3"], online: false, path: "none", rxBytes: 0, txBytes: 0 },
      ],
      metrics: {
        faces: { "local:lan": { accepted: 4, refused: { ERR_LOCAL_FROM_HOST: 2 }, open: 1, bytesIn: 10, bytesOut: 20 } },
        whois: { bounds: [0.001, 0.01], counts: [3, 4, 5], sum: 0.5, count: 5, errors: 1 },
      },
    },
    routesUp: ["nats-2"],
    meta: {
      leader: "nats-1",
      cluster_size: 3,
      replicas: [
        { name: "nats-2", current: true },
        { name: "nats-3", current: false, offline: true },
      ],
    },
    removed: false,
    jsz: [
      {
        server: { name: "nats-2", id: "B" },
        data: {
          account_details: [
            { name: "APP", stream_detail: [{ name: "ORDERS", state: { messages: 9, bytes: 90 }, cluster: { leader: "nats-1" } }] },
          ],
        },
      },
      {
        server: { name: "nats-1", id: "A" },
        data: {
          account_details: [
            {
              name: "APP",
              stream_detail: [
                {
                  name: "ORDERS",
                  config: { num_replicas: 3 },
                  state: { messages: 10, bytes: 100 },
                  cluster: {
                    leader: "nats-1",
                    replicas: [
                      { name: "nats-2", current: true, lag: 0 },
                      { name: "nats-3", current: false, offline: true, lag: 7 },
                    ],
                  },
                },
              ],
            },
          ],
        },
      },
    ],
    connz: [
      {
        server: { name: "nats-1", id: "A" },
        data: {
          connections: [
            { cid: 1, name: "alice@example.com (laptop) app", account: "APP", in_msgs: 3 },
            { cid: 2, name: "nats-tsnet observer", account: "SYS" },
          ],
        },
      },
      {
        server: { name: "nats-2", id: "B" },
        data: { connections: [{ cid: 7, name: "alice@example.com (laptop) worker", account: "APP", out_msgs: 4 }] },
      },
    ],
  };
}

describe("the cluster status", () => {
  test("members joined from tailnet, paths, routes and the meta group; the stream leader's record wins", () => {
    const s = buildStatus(inputs());
    assert.deepEqual(
      s.members.map((m) => [m.name, m.online, m.route, m.path, m.latency_ms, m.jetstream]),
      [
        ["nats-1", true, "none", "self", undefined, "leader"],
        ["nats-2", true, "up", "direct", 0.81, "current"],
        ["nats-3", false, "down", "none", undefined, "offline"],
      ],
      "the laptop (no cluster tag) is no member",
    );
    assert.equal(s.streams.length, 1);
    assert.equal(s.streams[0]!.messages, 10, "from the leader, not the follower that answered first");
    assert.deepEqual(
      s.streams[0]!.copies.map((c) => [c.server, c.leader, c.current, c.lag]),
      [
        ["nats-1", true, true, 0],
        ["nats-2", false, true, 0],
        ["nats-3", false, false, 7],
      ],
    );
    assert.deepEqual(s.clients[0], {
      identity: "alice@example.com",
      devices: ["laptop"],
      connections: 2,
      servers: ["nats-1", "nats-2"],
      accounts: ["APP"],
      in_msgs: 3,
      out_msgs: 4,
    });
    assert.equal(s.clients[1]!.identity, "this node's own");
    assert.equal(s.self.control_reachable, true);
    assert.match(formatStatus(s), /nats-3\s+offline\s+down\s+none\s+-\s+offline/);
  });

  test("connection names: the bridge's identity label, a local face's caller, or none", () => {
    assert.deepEqual(identityOfName("tag:svc,tag:web (web-1) api"), { identity: "tag:svc,tag:web", device: "web-1" });
    assert.deepEqual(identityOfName("local:docker (172.17.0.2) ctr-app"), { identity: "local:docker", device: "172.17.0.2" });
    assert.deepEqual(identityOfName("(laptop)"), { identity: "untagged device", device: "laptop" });
    assert.deepEqual(identityOfName("nats-tsnet observer"), { identity: "this node's own" });
    assert.deepEqual(identityOfName(undefined), { identity: "this node's own" });
  });

  test("an expired key and an unreachable control server are said", () => {
    const i = inputs();
    i.observed = { ...i.observed!, backendState: "NeedsLogin", keyExpired: true, health: ["not connected to the control server"] };
    const s = buildStatus(i);
    assert.equal(s.self.key_expired, true);
    assert.equal(s.self.control_reachable, false);
    assert.match(formatStatus(s), /ERR_TAILNET_KEY_EXPIRED/);
  });
});

describe("/metrics", () => {
  test("a real Prometheus text parser reads every family, with conventional types and names", () => {
    const counters = new Counters();
    counters.inc("auth_decisions", { decision: "deny" });
    counters.inc("auth_decisions", { decision: "deny" });
    counters.inc("reconcile_events", { event: "joined" });
    const text = renderMetrics({
      status: buildStatus(inputs()),
      observed: inputs().observed,
      counters,
      varz: { connections: 3, routes: 2, mem: 1, slow_consumers: 0 },
      jsz: { memory: 0, storage: 100, streams: 1, consumers: 0 },
      memory: [
        ["nats-tsnet", 50e6],
        ["bridge", undefined],
      ],
    });
    const families = new Map(parsePrometheus(text).map((f) => [f.name, f]));
    const one = (name: string, labels: Record<string, string> = {}) =>
      Number(families.get(name)?.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v))?.value);
    assert.equal(families.get("nats_tsnet_bridge_connections_refused_total")?.type, "COUNTER");
    assert.equal(one("nats_tsnet_bridge_connections_refused_total", { face: "local:lan", reason: "ERR_LOCAL_FROM_HOST" }), 2);
    assert.equal(one("nats_tsnet_auth_decisions_total", { decision: "deny" }), 2);
    assert.equal(one("nats_tsnet_reconcile_events_total", { event: "joined" }), 1);
    assert.equal(one("nats_tsnet_member_route_up", { peer: "nats-3" }), 0);
    assert.ok(Math.abs(one("nats_tsnet_member_latency_seconds", { peer: "nats-2" }) - 0.00081) < 1e-9);
    assert.equal(one("nats_stream_replica_lag", { stream: "ORDERS", server: "nats-3" }), 7);
    assert.equal(one("nats_server_jetstream_meta_is_leader"), 1);
    assert.equal(one("nats_tsnet_resident_memory_bytes", { process: "nats-tsnet" }), 50e6);
    assert.equal(families.get("nats_tsnet_resident_memory_bytes")!.metrics.length, 1, "a process without a figure is left out");
    const h = families.get("nats_tsnet_bridge_whois_duration_seconds")!;
    assert.equal(h.type, "HISTOGRAM");
    assert.deepEqual((h.metrics[0] as { buckets: Record<string, string> }).buckets, { "0.001": "3", "0.01": "4", "+Inf": "5" });
    for (const f of families.values()) assert.match(f.name, /^nats_(tsnet|server|stream)_[a-z_]+$/);
  });
});
