// The route protocol under attack: a device that carries
// the cluster tag may open a route by design, so the bridge must keep what
// it says from steering any node, and an optional cluster key must keep a
// device with only a leaked tagged auth key out altogether.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, writeFileSync } from "node:fs";
import { connect as tcpConnect, type Socket } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { CLUSTER_TAG, type LabNode } from "../../localtailnet/mod.ts";
import { eventually, startTestTailnet, type TestTailnet } from "./helpers.ts";

const NAMES = ["nats-1", "nats-2"];

/** A listener on a node host's own loopback that records whatever connects to it. */
function trap(node: LabNode, port: number): { hits: string[]; proc: ChildProcess } {
  const script = `require("net").createServer((s) => { s.on("data", (d) => process.stdout.write("hit " + JSON.stringify(String(d)) + "\\n")); process.stdout.write("hit connect\\n"); }).listen(${port}, "127.0.0.1", () => process.stdout.write("ready\\n"));`;
  const proc = spawn("ip", ["netns", "exec", node.host.netns, process.execPath, "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  const hits: string[] = [];
  proc.stdout!.on("data", (d: Buffer) => {
    for (const l of d.toString().split("\n")) if (l.startsWith("hit")) hits.push(l);
  });
  return { hits, proc };
}

/** Speaks the route protocol to a node as a rogue nats-server would, through a tailnet device. */
class RogueRoute {
  readonly lines: string[] = [];
  closed = false;
  private readonly s: Socket;
  constructor(port: number) {
    this.s = tcpConnect(port, "127.0.0.1");
    let buf = "";
    this.s.on("data", (d) => {
      buf += d.toString();
      let i: number;
      while ((i = buf.indexOf("\r\n")) >= 0) {
        this.lines.push(buf.slice(0, i));
        buf = buf.slice(i + 2);
      }
    });
    this.s.on("close", () => (this.closed = true));
    this.s.on("error", () => {});
  }
  send(...lines: string[]): void {
    this.s.write(lines.map((l) => `${l}\r\n`).join(""));
  }
  close(): void {
    this.s.destroy();
  }
}

const connect = (name: string) =>
  `CONNECT ${JSON.stringify({ echo: true, verbose: false, pedantic: false, tls_required: false, headers: true, name, cluster: "nats-js", lnoc: true })}`;
const info = (o: Record<string, unknown>) =>
  `INFO ${JSON.stringify({ cluster: "nats-js", headers: true, proto: 1, jetstream: false, ...o })}`;

describe("routes: no member steers another, and a cluster key keeps tag-only devices out", () => {
  let t: TestTailnet;

  before(async () => {
    t = await startTestTailnet("routes");
    await Promise.all(NAMES.map((n) => t.tailnet.startNode(n)));
    await t.tailnet.waitForCluster(NAMES);
  });

  after(async () => {
    await t?.cleanup();
  });

  test("a tagged device gossiping a foreign route makes no node dial it; its routes end with it", async () => {
    const node = t.tailnet.nodes.get("nats-1")!;
    const loop = trap(node, 19999);
    t.onCleanup(() => loop.proc.kill());
    const rogueDevice = await t.tailnet.startProxy("rogue", { to: "nats-1:6222", tags: [CLUSTER_TAG] });
    const rogue = new RogueRoute(rogueDevice.port);
    t.onCleanup(() => rogue.close());
    rogue.send(connect("rogue"), info({ server_id: "NROGUE0000000000000000000000000000000000000000000000000", server_name: "rogue" }));
    // The route is taken (nats-1 lists it)...
    await eventually(async () => (await t.tailnet.clusterView("nats-1")).routes.includes("rogue"), 30_000, "nats-1 routes to the rogue");
    // ...then the rogue gossips a "server" on nats-1's own loopback, wanting the route secret.
    rogue.send(
      info({
        server_id: "NFOREIGN00000000000000000000000000000000000000000000000",
        server_name: "foreign",
        ip: "nats-route://127.0.0.1:19999/",
        auth_required: true,
      }),
      "PING",
    );
    await eventually(() => rogue.lines.includes("PONG"), 10_000, "nats-1 read past the gossip");
    // nats-server acts on gossip at once; give it more than enough time to.
    await sleep(3000);
    assert.deepEqual(loop.hits, [], "nats-1 dialed the gossiped address");
    // Defence in depth: the kernel (Landlock) lets nats-server connect to the cluster port only.
    assert.ok(
      node.lines.some((l) => /outbound connections confined to TCP ports \[16222\]/.test(String(l.msg))),
      "nats-server runs confined",
    );
    const view = await t.tailnet.clusterView("nats-1");
    assert.ok(!view.routes.includes("foreign"), `nats-1 routes to a gossiped server: ${view.routes}`);
    assert.deepEqual([...new Set(view.routes)].filter((r) => r !== "rogue").sort(), ["nats-2"], "the members' own routes are untouched");

    // Removed from the tailnet, the rogue keeps no route anywhere.
    await t.tailnet.headscale.deleteNode("rogue");
    await eventually(
      async () => !(await t.tailnet.clusterView("nats-1")).routes.includes("rogue"),
      60_000,
      "nats-1 drops the rogue's routes",
    );
    await rogueDevice.stop();
  });

  test("with a cluster key, members cluster and a device with only the tag opens no route", async () => {
    const key = "k".repeat(8) + "cluster-key-for-the-routes-test-0123456789";
    const restart = async (n: string, k: string) => {
      const file = join(t.tailnet.nodes.get(n)!.dir, "cluster.key");
      await t.tailnet.stopNode(n);
      writeFileSync(file, k, { mode: 0o600 });
      chmodSync(file, 0o600);
      await t.tailnet.startNode(n, { config: { tailnet: { cluster_key_file: file } } });
    };
    await Promise.all(NAMES.map((n) => restart(n, key)));
    await t.tailnet.waitForCluster(NAMES);

    // A tagged device without the key: nats-1 proves itself first, then refuses its CONNECT.
    const intruder = await t.tailnet.startProxy("tag-only", { to: "nats-1:6222", tags: [CLUSTER_TAG] });
    const rogue = new RogueRoute(intruder.port);
    t.onCleanup(() => rogue.close());
    rogue.send(
      connect("tag-only"),
      info({ server_id: "NTAGONLY00000000000000000000000000000000000000000000000", server_name: "tag-only" }),
    );
    await eventually(() => rogue.closed, 20_000, "nats-1 closes the keyless route");
    const node = t.tailnet.nodes.get("nats-1")!;
    assert.ok(
      node.lines.some((l) => l.msg === "connection refused" && l.listener === "cluster" && String(l.from).length > 0),
      "the refusal is logged",
    );
    assert.ok(!(await t.tailnet.clusterView("nats-1")).routes.includes("tag-only"), "no route to the keyless device");
    await intruder.stop();

    // A member with another key is no member: no route either way.
    await restart("nats-2", key.replace(/0/g, "1"));
    await eventually(
      async () => !(await t.tailnet.clusterView("nats-1")).routes.includes("nats-2"),
      60_000,
      "nats-1 has no route to a node with another key",
    );
    await sleep(5000);
    assert.deepEqual((await t.tailnet.clusterView("nats-2")).routes, [], "nats-2 routes nowhere with the wrong key");
    // The right key again: the cluster heals.
    await restart("nats-2", key);
    await t.tailnet.waitForCluster(NAMES);
  });
});
