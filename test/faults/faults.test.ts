// Fault suite (npm run test:faults): a client publishes with acks to an R3
// stream throughout each fault; at the end a checker reads back every
// acknowledged sequence. Each scenario reports acked, lost (must be 0),
// duplicates, client reconnect times and time to recover.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { appendFileSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { REPO_ROOT } from "../../controlplane/src/mod.ts";
import { CLI, namespaceMemory } from "../../localtailnet/mod.ts";
import { eventually, natsConnect, startTestTailnet, type TestTailnet } from "../integration/helpers.ts";

const NAMES = ["nats-1", "nats-2", "nats-3"];
const SOAK_SECONDS = Number(process.env.FAULT_SOAK_SECONDS ?? 600);
const REPORT = join(REPO_ROOT, "bench", "results", "faults.jsonl");

/** Publishes with acks until stopped; records every acked sequence and reconnect gaps. */
class Load {
  acked = new Map<number, string>(); // seq -> msg id
  failures = 0;
  reconnects: number[] = [];
  private stopped = false;
  private loop?: Promise<void>;
  private disconnectedAt = 0;
  readonly nc: NatsConnection;
  readonly stream: string;

  constructor(nc: NatsConnection, stream: string) {
    this.nc = nc;
    this.stream = stream;
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === "disconnect") this.disconnectedAt = Date.now();
        if (s.type === "reconnect" && this.disconnectedAt) this.reconnects.push(Date.now() - this.disconnectedAt);
      }
    })();
  }

  start(): void {
    const js = jetstream(this.nc, { timeout: 5000 });
    let i = 0;
    this.loop = (async () => {
      let id = "";
      while (!this.stopped) {
        // A message that was not acknowledged is retried under the same ID,
        // as a careful client does; the stream's duplicate window must then
        // keep it from being stored twice.
        if (!id) id = `${this.stream}-${++i}`;
        try {
          const a = await js.publish(`${this.stream}.x`, new TextEncoder().encode(id), { msgID: id });
          this.acked.set(a.seq, id);
          id = "";
        } catch {
          this.failures++;
          await sleep(200);
        }
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  /**
   * Reads back every acked sequence; counts lost and duplicated messages.
   * A read that fails for any reason but "no message" (a stream leader
   * being elected after the fault, say) is retried: only a message the
   * stream says it does not have, or has with other content, is lost.
   */
  async check(jsm: JetStreamManager): Promise<{ acked: number; lost: number; duplicates: number; lost_sample: number[] }> {
    let lost = 0;
    const sample: number[] = [];
    for (const [seq, id] of this.acked) {
      let data: string | null = null;
      for (let attempt = 0; ; attempt++) {
        try {
          const m = await jsm.streams.getMessage(this.stream, { seq });
          data = m ? new TextDecoder().decode(m.data) : null;
          break;
        } catch (e) {
          if (/no message found/i.test((e as Error).message) || attempt >= 60) break;
          await sleep(500);
        }
      }
      if (data !== id) {
        lost++;
        if (sample.length < 10) sample.push(seq);
      }
    }
    const info = await jsm.streams.info(this.stream);
    const duplicates = Math.max(0, info.state.messages - this.acked.size);
    return { acked: this.acked.size, lost, duplicates, lost_sample: sample };
  }
}

describe("faults under acked load", () => {
  let t: TestTailnet;
  let nc: NatsConnection;
  let jsm: JetStreamManager;

  before(async () => {
    t = await startTestTailnet("faults");
    await Promise.all(NAMES.map((n) => t.tailnet.startNode(n)));
    await t.tailnet.waitForCluster(NAMES);
    const proxies = await Promise.all(NAMES.map((n) => t.tailnet.startProxy(`client-${n}`, { to: `${n}:4222` })));
    nc = await natsConnect(
      proxies.map((p) => p.url),
      { name: "fault-load", maxReconnectAttempts: -1, reconnectTimeWait: 250, pingInterval: 2000, maxPingOut: 2 },
    );
    jsm = await jetstreamManager(nc);
    mkdirSync(join(REPO_ROOT, "bench", "results"), { recursive: true });
    writeFileSync(REPORT, "");
  });

  after(async () => {
    await nc?.close().catch(() => {});
    await t?.cleanup();
  });

  async function scenario(name: string, fault: () => Promise<number | void>): Promise<void> {
    const stream = name.toUpperCase().replace(/[^A-Z0-9]/g, "_");
    // Right after a cluster forms (or heals) the meta leader may not yet have
    // heard from every peer ("no suitable peers for placement"): retry.
    await eventually(
      () => jsm.streams.add({ name: stream, subjects: [`${stream}.>`], num_replicas: 3, duplicate_window: 120_000_000_000 }),
      60_000,
      `stream ${stream} placed on three nodes`,
    );
    const load = new Load(nc, stream);
    load.start();
    await eventually(() => load.acked.size >= 20, 30_000, "load under way");
    const tFault = Date.now();
    const recoverMs = (await fault()) ?? Date.now() - tFault;
    await sleep(2000);
    await load.stop();
    const r = {
      scenario: name,
      ...(await load.check(jsm)),
      unacked_attempts: load.failures,
      reconnect_ms: load.reconnects,
      recover_s: +(Number(recoverMs) / 1000).toFixed(1),
    };
    console.log(`# ${JSON.stringify(r)}`);
    appendFileSync(REPORT, JSON.stringify(r) + "\n");
    assert.equal(r.lost, 0, `acknowledged messages lost in ${name}`);
    assert.equal(r.duplicates, 0, `duplicates in ${name}`);
  }

  test("a node partitioned for 30 s, then healed", () =>
    scenario("partition", async () => {
      t.tailnet.net.setLink("nats-3", false);
      await sleep(30_000);
      const healed = Date.now();
      t.tailnet.net.setLink("nats-3", true);
      await t.tailnet.waitForCluster(NAMES, 120_000);
      return Date.now() - healed;
    }));

  test("the control server down for 60 s; afterwards a new node still joins", () =>
    scenario("control-down", async () => {
      await t.tailnet.headscale.stop();
      await sleep(60_000);
      await t.tailnet.headscale.start();
      const back = Date.now();
      await t.tailnet.startNode("nats-4");
      await t.tailnet.waitForCluster([...NAMES, "nats-4"], 120_000);
      const recovered = Date.now() - back;
      // nats-4 goes for good: the operator's steps (see README, Reliability).
      await t.tailnet.stopNode("nats-4");
      await t.tailnet.headscale.deleteNode("nats-4");
      const n1 = t.tailnet.nodes.get("nats-1")!;
      execFileSync("ip", ["netns", "exec", n1.host.netns, process.execPath, CLI, "peer", "remove", "nats-4", "--config", n1.configPath]);
      await eventually(async () => (await t.tailnet.monitor("nats-1", "/jsz")).meta_cluster?.cluster_size === 3, 60_000, "meta group of 3");
      return recovered;
    }));

  test("a rolling restart of all three nodes", () =>
    scenario("rolling-restart", async () => {
      const t0 = Date.now();
      for (const n of NAMES) {
        await t.tailnet.stopNode(n, "SIGTERM");
        await t.tailnet.startNode(n);
        await t.tailnet.waitForCluster(NAMES, 120_000);
      }
      return Date.now() - t0;
    }));

  test("a node whose JetStream store is wiped rejoins and is refilled", () =>
    scenario("wiped-store", async () => {
      const node = t.tailnet.nodes.get("nats-2")!;
      await t.tailnet.stopNode("nats-2", "SIGKILL");
      rmSync(join(node.dir, "state", "jetstream"), { recursive: true, force: true });
      const t0 = Date.now();
      await t.tailnet.startNode("nats-2");
      await t.tailnet.waitForCluster(NAMES, 120_000);
      return Date.now() - t0;
    }));

  test(`steady load for ${SOAK_SECONDS} s: memory of every process sampled`, { timeout: (SOAK_SECONDS + 300) * 1000 }, () =>
    scenario("soak", async () => {
      const sample = () => Object.fromEntries(NAMES.map((n) => [n, namespaceMemory(t.tailnet.nodes.get(n)!.host.netns)]));
      const first = sample();
      const end = Date.now() + SOAK_SECONDS * 1000;
      let last = first;
      while (Date.now() < end) {
        await sleep(Math.min(30_000, end - Date.now()));
        last = sample();
      }
      const growth = Object.fromEntries(
        NAMES.map((n) => [n, Object.fromEntries(Object.keys(last[n]!).map((p) => [p, +(last[n]![p]! - (first[n]![p] ?? 0)).toFixed(1)]))]),
      );
      console.log(`# ${JSON.stringify({ soak_seconds: SOAK_SECONDS, rss_mib_start: first, rss_mib_end: last, growth_mib: growth })}`);
      appendFileSync(
        REPORT,
        JSON.stringify({
          scenario: "soak-memory",
          soak_seconds: SOAK_SECONDS,
          rss_mib_start: first,
          rss_mib_end: last,
          growth_mib: growth,
        }) + "\n",
      );
    }),
  );
});
