// A cluster that forms by itself from the tailnet and follows
// membership live. Real headscale, tsnet, nats-server and nats.js clients.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { connect as tcpConnect } from "node:net";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { CLI, CLUSTER_TAG, defaultPolicy, type LabProxy } from "../../localtailnet/mod.ts";
import type { ClusterStatus } from "../../controlplane/src/observe/status.ts";
import { eventually, logTail, natsConnect, startTestTailnet, type TestTailnet } from "./helpers.ts";

const enc = new TextEncoder();

// A deliberately lax ACL that lets ordinary members reach :6222, so that the
// bridge's own tag check (defence in depth behind the ACL) is what refuses them.
const LAX_POLICY = {
  ...defaultPolicy(),
  acls: [
    { action: "accept", src: [CLUSTER_TAG], dst: [`${CLUSTER_TAG}:4222`, `${CLUSTER_TAG}:6222`, `${CLUSTER_TAG}:8222`] },
    { action: "accept", src: ["autogroup:member"], dst: [`${CLUSTER_TAG}:4222`, `${CLUSTER_TAG}:6222`, `${CLUSTER_TAG}:8222`] },
  ],
};

function natsServerPid(t: TestTailnet, node: string): string | undefined {
  const ns = t.tailnet.nodes.get(node)!.host.netns;
  return execFileSync("ip", ["netns", "pids", ns], { encoding: "utf8" })
    .split("\n")
    .filter(Boolean)
    .find((p) => spawnSync("cat", [`/proc/${p}/comm`], { encoding: "utf8" }).stdout.trim() === "nats-server");
}

function startTime(pid: string): string {
  return execFileSync("cat", [`/proc/${pid}/stat`], { encoding: "utf8" }).split(" ")[21]!;
}

describe("a three-node cluster on the tailnet", () => {
  let t: TestTailnet;
  /** `nats-tsnet status --json` on a node's host, as its operator runs it. */
  const status = (n: string): ClusterStatus => {
    const nd = t.tailnet.nodes.get(n)!;
    const out = execFileSync("ip", ["netns", "exec", nd.host.netns, process.execPath, CLI, "status", "--json", "--config", nd.configPath], {
      encoding: "utf8",
      timeout: 20_000,
    });
    return JSON.parse(out) as ClusterStatus;
  };
  const proxies: Record<string, LabProxy> = {};
  let nc: NatsConnection;
  const names = ["nats-1", "nats-2", "nats-3"];

  before(async () => {
    t = await startTestTailnet("cluster");
    // The lab applies LAX_POLICY for the defence-in-depth test below.
    t.tailnet.headscale.setPolicyFile(LAX_POLICY);
    await t.tailnet.headscale.stop();
    await t.tailnet.headscale.start();
    const t0 = Date.now();
    await Promise.all(names.map((n) => t.tailnet.startNode(n)));
    await t.tailnet.waitForCluster(names);
    console.log(`# cold start to a ready 3-node cluster: ${((Date.now() - t0) / 1000).toFixed(1)}s`);
    for (const n of names) proxies[n] = await t.tailnet.startProxy(`client-${n}`, { to: `${n}:4222` });
    nc = await eventually(() => natsConnect(proxies["nats-1"]!.url, { name: "cluster-test", timeout: 3000 }), 30_000, "client connection");
  });

  after(async () => {
    await nc?.close().catch(() => {});
    await t?.cleanup();
  });

  test("every node routes to the two others and one meta leader is elected", async () => {
    for (const n of names) {
      const v = await t.tailnet.clusterView(n);
      assert.deepEqual(
        v.routes,
        names.filter((o) => o !== n),
        `${n} routes`,
      );
      assert.ok(v.metaLeader && names.includes(v.metaLeader), `${n} sees a meta leader`);
      assert.equal(v.metaSize, 3);
    }
  });

  test("clients learn the other nodes by tailnet name, never 127.0.0.1", () => {
    const urls = nc.info!.connect_urls ?? [];
    assert.deepEqual(
      [...urls].sort(),
      names.map((n) => `${n}.tailnet.internal:4222`),
    );
  });

  test("an R3 stream created through node 1 is readable through node 3", async () => {
    const jsm = await jetstreamManager(nc);
    const si = await jsm.streams.add({ name: "R3", subjects: ["r3.>"], num_replicas: 3 });
    assert.equal(si.config.num_replicas, 3);
    const js = jetstream(nc);
    for (let i = 1; i <= 10; i++) await js.publish("r3.a", enc.encode(`m${i}`));
    const nc3 = await natsConnect(proxies["nats-3"]!.url);
    try {
      assert.equal(nc3.info!.server_name, "nats-3");
      const jsm3 = await jetstreamManager(nc3);
      const m = await jsm3.streams.getMessage("R3", { seq: 10 });
      assert.equal(new TextDecoder().decode(m!.data), "m10");
      assert.equal((await jsm3.streams.info("R3")).state.messages, 10);
    } finally {
      await nc3.close();
    }
  });

  test("an untagged device connecting to a node's :6222 is refused and logged", async () => {
    const p = await t.tailnet.startProxy("intruder", { to: "nats-1:6222" });
    const got = await new Promise<string>((resolve) => {
      const s = tcpConnect(p.port, "127.0.0.1");
      let data = "";
      s.on("data", (d) => {
        data += d.toString();
      });
      s.on("close", () => resolve(data));
      s.on("error", () => resolve(data));
      s.setTimeout(10_000, () => s.destroy());
    });
    assert.equal(got, "", "no route INFO reaches an untagged caller");
    const node = t.tailnet.nodes.get("nats-1")!;
    const refusal = await eventually(
      () => node.lines.find((l) => l.msg === "connection refused" && l.listener === "cluster"),
      5000,
      "refusal logged",
    );
    assert.match(String(refusal.who), /intruder/);
    assert.match(String(refusal.reason), /carries none of the tags/);
    await p.stop();
  });

  test("a node killed while a client publishes with acks loses nothing and catches up after restart", async () => {
    // Publish through nats-2 so the client's own node survives.
    const pub = await natsConnect(proxies["nats-2"]!.url, { name: "publisher" });
    const jsm = await jetstreamManager(pub);
    await jsm.streams.add({ name: "DURABLE", subjects: ["dur.>"], num_replicas: 3 });
    const js = jetstream(pub);
    const acked: number[] = [];
    let stop = false;
    const loop = (async () => {
      let i = 0;
      while (!stop) {
        i++;
        try {
          const a = await js.publish("dur.x", enc.encode(`v${i}`), { msgID: `id-${i}`, timeout: 5000 });
          acked.push(a.seq);
        } catch {
          await sleep(100); // not acknowledged: it does not count, try the next one
        }
      }
    })();
    await eventually(() => acked.length >= 20, 20_000, "publishing under way");
    const victim = t.tailnet.nodes.get("nats-3")!;
    victim.child.kill("SIGKILL");
    await eventually(
      () => execFileSync("ip", ["netns", "pids", victim.host.netns], { encoding: "utf8" }).trim() === "",
      20_000,
      "nats-3 gone",
    );
    t.tailnet.nodes.delete("nats-3");
    // `status --json` on a survivor says so within seconds.
    const killedAt = Date.now();
    const seen = await eventually(
      () => {
        const m = status("nats-1").members.find((x) => x.name === "nats-3");
        return m && !m.online && m.route === "down" ? m : undefined;
      },
      30_000,
      "status shows nats-3 offline with its route down",
    );
    console.log(`# status showed the killed member offline, route down, after ${((Date.now() - killedAt) / 1000).toFixed(1)}s`);
    assert.notEqual(seen.jetstream, "leader");
    const atKill = acked.length;
    await eventually(() => acked.length >= atKill + 30, 30_000, "publishing continues on two nodes");
    stop = true;
    await loop;
    // No acknowledged message is lost: every acked sequence is readable.
    const info = await jsm.streams.info("DURABLE");
    const maxSeq = Math.max(...acked);
    assert.ok(info.state.last_seq >= maxSeq, `last_seq ${info.state.last_seq} >= max acked ${maxSeq}`);
    for (const seq of acked) {
      const m = await jsm.streams.getMessage("DURABLE", { seq });
      assert.ok(m, `acked seq ${seq} is stored`);
    }
    // Restart with the same state dir: it rejoins and catches up.
    await t.tailnet.startNode("nats-3");
    await t.tailnet.waitForCluster(names);
    const want = info.state.messages;
    await eventually(
      async () => {
        const jsz = await t.tailnet.monitor("nats-3", "/jsz?streams=true");
        const s = jsz.account_details?.flatMap((a: any) => a.stream_detail ?? []).find((d: any) => d.name === "DURABLE");
        return s && s.state.messages === want;
      },
      60_000,
      "nats-3 caught up",
    );
    // And back: every member online and routed over a direct path, the
    // stream's three copies, and the publisher's identity among the clients.
    const back = await eventually(
      () => {
        const s = status("nats-1");
        const ok = s.members.every((m) => m.self || (m.online && m.route === "up" && m.path === "direct" && m.latency_ms !== undefined));
        return ok && s.streams.find((x) => x.name === "DURABLE")?.copies.length === 3 ? s : undefined;
      },
      60_000,
      "status shows the whole cluster again",
    );
    assert.deepEqual(
      back.members.map((m) => m.name),
      names,
    );
    assert.ok(back.meta.leader && names.includes(back.meta.leader));
    assert.equal(back.streams.find((x) => x.name === "DURABLE")!.replicas, 3);
    const publisher = back.clients.find((c) => c.devices.some((d) => d.startsWith("client-nats-2")));
    assert.ok(publisher && publisher.servers.includes("nats-2"), `the publisher's identity is listed: ${JSON.stringify(back.clients)}`);
    await pub.close();
  });

  test("a fourth tagged node joins live: routes everywhere, no restarts, connections kept", async () => {
    const pidsBefore = Object.fromEntries(
      names.map((n) => {
        const p = natsServerPid(t, n)!;
        return [n, { pid: p, start: startTime(p) }];
      }),
    );
    // The server's own view of the connection: same cid before and after.
    const cidOf = async () =>
      (await t.tailnet.monitor("nats-1", "/connz?limit=1000")).connections.find((c: { name?: string }) => c.name?.endsWith(" cluster-test"))
        ?.cid;
    const cidBefore = await cidOf();
    assert.ok(cidBefore, "the test client is connected to nats-1");
    let disconnects = 0;
    void (async () => {
      for await (const s of nc.status()) if (s.type === "disconnect" || s.type === "reconnect") disconnects++;
    })();
    const t0 = Date.now();
    await t.tailnet.startNode("nats-4");
    const all = [...names, "nats-4"];
    await t.tailnet.waitForCluster(all);
    console.log(`# 4th node's start to routes on every node: ${((Date.now() - t0) / 1000).toFixed(1)}s`);
    for (const n of names) {
      const p = natsServerPid(t, n)!;
      assert.deepEqual({ pid: p, start: startTime(p) }, pidsBefore[n], `${n}'s nats-server was not restarted`);
      // nats-4 may reach a node first by its own route; the node's own join follows within its debounce.
      await eventually(
        () => t.tailnet.nodes.get(n)!.lines.some((l) => l.msg === "peer joined: route added" && l.peer === "nats-4"),
        10_000,
        `${n} logged the join`,
      );
    }
    await nc.flush();
    assert.equal(await cidOf(), cidBefore, "the client connection was kept");
    assert.equal(disconnects, 0);
  });

  test("a node that leaves the tailnet loses its routes; peer remove shrinks the meta group", async () => {
    await t.tailnet.stopNode("nats-4");
    await t.tailnet.headscale.deleteNode("nats-4");
    for (const n of names) {
      await eventually(async () => !(await t.tailnet.clusterView(n)).routes.includes("nats-4"), 30_000, `${n} dropped the route to nats-4`);
      const left = await eventually(
        () => t.tailnet.nodes.get(n)!.lines.find((l) => l.msg === "peer left: route removed" && l.peer === "nats-4"),
        10_000,
        "leave logged",
      );
      assert.equal(left.why, "left the tailnet");
    }
    const jsz = await t.tailnet.monitor("nats-1", "/jsz");
    assert.equal(jsz.meta_cluster.cluster_size, 4, "a departed peer counts until it is removed");
    const node1 = t.tailnet.nodes.get("nats-1")!;
    const list = execFileSync(
      "ip",
      ["netns", "exec", node1.host.netns, process.execPath, CLI, "peer", "list", "--json", "--config", node1.configPath],
      { encoding: "utf8" },
    );
    const rows = JSON.parse(list).rows as Array<{ name: string; route: unknown; jetstream: { offline: boolean } | null }>;
    assert.ok(
      rows.find((r) => r.name === "nats-4" && r.route === null && r.jetstream?.offline),
      `peer list shows nats-4 gone but in the meta group: ${list}`,
    );
    const r = spawnSync(
      "ip",
      ["netns", "exec", node1.host.netns, process.execPath, CLI, "peer", "remove", "nats-4", "--config", node1.configPath],
      { encoding: "utf8" },
    );
    assert.equal(r.status, 0, r.stderr + logTail(t));
    await eventually(async () => (await t.tailnet.monitor("nats-1", "/jsz")).meta_cluster.cluster_size === 3, 30_000, "meta group of 3");
  });

  test("a client connected to a node that is killed reconnects to another", async () => {
    const c = await natsConnect(
      names.map((n) => proxies[n]!.url),
      {
        noRandomize: true,
        reconnectTimeWait: 250,
        maxReconnectAttempts: 100,
        name: "failover",
        // A node that dies with its host sends no FIN over the tailnet; pings notice.
        pingInterval: 1000,
        maxPingOut: 2,
      },
    );
    t.onCleanup(() => c.close());
    assert.equal(c.info!.server_name, "nats-1");
    let reconnected = false;
    void (async () => {
      for await (const s of c.status()) if (s.type === "reconnect") reconnected = true;
    })();
    const n1 = t.tailnet.nodes.get("nats-1")!;
    n1.child.kill("SIGKILL");
    t.tailnet.nodes.delete("nats-1");
    await eventually(() => reconnected, 30_000, "reconnected");
    assert.notEqual(c.info!.server_name, "nats-1");
    const sub = c.subscribe("after.failover", { max: 1 });
    c.publish("after.failover", enc.encode("still here"));
    for await (const m of sub) assert.equal(new TextDecoder().decode(m.data), "still here");
    await c.close();
  });
});
