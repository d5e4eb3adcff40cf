// The release file on its own: built here (amd64 only, the fast form of
// `npm run release`), copied alone into an empty directory, and run on a lab
// host with no repository, no node_modules and a PATH that leads nowhere (so
// no Go and no Node either). It joins a cluster with two checkout-run nodes,
// carries an R3 stream, and stops cleanly on SIGTERM; then the same file runs
// as the client-mode proxy.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { appendFileSync, chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, statSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { binaryPath, eachLine, EXIT_CODE_OF, exited, spawnChild, terminate } from "../../controlplane/src/mod.ts";
import { tailnetEnv, type LabProxy } from "../../localtailnet/mod.ts";
import { eventually, logTail, natsConnect, startTestTailnet, testReleaseFile, type TestTailnet } from "./helpers.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** The pids in a lab host's namespace, by command name. */
function pidsIn(netns: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const pid of execFileSync("ip", ["netns", "pids", netns], { encoding: "utf8" }).split("\n").filter(Boolean)) {
    const comm = spawnSync("cat", [`/proc/${pid}/comm`], { encoding: "utf8" }).stdout.trim();
    out.set(comm, [...(out.get(comm) ?? []), pid]);
  }
  return out;
}

const sha256 = (f: string) => createHash("sha256").update(readFileSync(f)).digest("hex");

describe("the release file", () => {
  let t: TestTailnet;
  let bare: string;
  let exe: string;
  let proxy: LabProxy;
  let nc: NatsConnection;

  before(async () => {
    t = await startTestTailnet("release");
    // The suite's release build: a broken `npm run release` fails here.
    const built = testReleaseFile();
    bare = join(t.dir, "bare");
    mkdirSync(join(bare, "empty-path"), { recursive: true });
    exe = join(bare, "nats-tsnet");
    copyFileSync(built, exe);
    await Promise.all(["nats-1", "nats-2"].map((n) => t.tailnet.startNode(n)));
  });

  after(async () => {
    await nc?.close().catch(() => {});
    await t?.cleanup();
  });

  /** The environment of a host with only the release file: no PATH to anything. */
  const bareEnv = () => ({ PATH: join(bare, "empty-path"), HOME: bare });

  test("joins a cluster of checkout-run nodes and serves an R3 stream", async () => {
    const node = await t.tailnet.startNode("nats-3", { exe, bareEnv: bareEnv() });
    await t.tailnet.waitForCluster(["nats-1", "nats-2", "nats-3"]);
    for (const n of ["nats-1", "nats-2", "nats-3"]) {
      const v = await t.tailnet.clusterView(n);
      assert.deepEqual(
        v.routes,
        ["nats-1", "nats-2", "nats-3"].filter((o) => o !== n),
        `${n}'s routes`,
      );
    }
    // The node's bridge and nats-server are the copies it carries,
    // unpacked under its own cache directory, owner-only.
    const pids = pidsIn(node.host.netns);
    for (const comm of ["nats-tsnet-brid", "nats-server"]) {
      const exePath = readlinkSync(`/proc/${pids.get(comm)![0]}/exe`);
      assert.ok(exePath.startsWith(join(bare, ".cache", "nats-tsnet", "bin") + "/"), `${comm} runs from ${exePath}`);
      assert.equal(statSync(exePath).mode & 0o777, 0o500, `${exePath} mode`);
      assert.equal(statSync(join(exePath, "..")).mode & 0o777, 0o700);
    }
    // And the node itself is the copied file, with a PATH that leads nowhere.
    assert.equal(readlinkSync(`/proc/${node.child.pid}/exe`), exe);
    const environ = execFileSync("cat", [`/proc/${node.child.pid}/environ`], { encoding: "utf8" }).split("\0");
    assert.ok(environ.includes(`PATH=${join(bare, "empty-path")}`), "the node's PATH");
    assert.deepEqual(readdirSync(join(bare, "empty-path")), []);

    proxy = await t.tailnet.startProxy("rel-client", { to: "nats-3:4222" });
    nc = await natsConnect(proxy.url);
    const jsm = await jetstreamManager(nc);
    // Right after a member joins, the meta leader may not yet have heard its
    // JetStream ("no suitable peers for placement, peer offline"): retry.
    const si = await eventually(
      () => jsm.streams.add({ name: "REL", subjects: ["rel.>"], num_replicas: 3 }),
      30_000,
      "REL placed on three nodes",
    );
    assert.equal(si.config.num_replicas, 3);
    const js = jetstream(nc);
    for (let i = 0; i < 20; i++) {
      const ack = await js.publish(`rel.${i}`, enc.encode(`m${i}`));
      assert.equal(ack.seq, i + 1);
    }
    const info = await eventually(
      async () => {
        const s = await jsm.streams.info("REL");
        return s.cluster?.replicas?.length === 2 && s.cluster.replicas.every((r) => r.current) ? s : undefined;
      },
      30_000,
      "REL's replicas current",
    );
    assert.equal(info.state.messages, 20);
    const msg = await jsm.streams.getMessage("REL", { seq: 20 });
    assert.equal(dec.decode(msg!.data), "m19");
  });

  test("stops cleanly on SIGTERM, through lame duck, and leaves no process behind", async () => {
    const node = t.tailnet.nodes.get("nats-3")!;
    const ns = node.host.netns;
    const { code, signal } = await t.tailnet.stopNode("nats-3", "SIGTERM");
    assert.equal(code, 0, `exit code (signal ${signal})\n${logTail(t)}`);
    assert.ok(
      node.lines.some((l) => /lame.duck/i.test(String(l.msg))),
      "lame duck logged",
    );
    await eventually(() => pidsIn(ns).size === 0, 10_000, "nats-3's namespace empty");
    // The other two keep the stream.
    await nc.close();
    await proxy.stop();
    proxy = await t.tailnet.startProxy("rel-client-2", { to: "nats-1:4222" });
    nc = await natsConnect(proxy.url);
    const si = await (await jetstreamManager(nc)).streams.info("REL");
    assert.equal(si.state.messages, 20);
  });

  test("refuses a cache directory others can write to, with its code and exit code", () => {
    const shared = join(bare, "shared-cache");
    mkdirSync(shared, { mode: 0o777 });
    chmodSync(shared, 0o777);
    const r = spawnSync(exe, ["proxy", "--to", "nats-1:4222", "--listen", "127.0.0.1:0"], {
      env: { ...bareEnv(), NATS_TSNET_CACHE_DIR: shared },
      encoding: "utf8",
      timeout: 20_000,
    });
    assert.equal(r.status, EXIT_CODE_OF.get("ERR_EMBEDDED_BINARY"), r.stderr);
    assert.match(r.stderr, /ERR_EMBEDDED_BINARY/);
    assert.deepEqual(readdirSync(shared), [], "nothing unpacked there");
  });

  test("runs as the client-mode proxy, and replaces an unpacked binary that was changed", async () => {
    // Damage the unpacked bridge: the next start must not run it.
    const binDir = join(bare, ".cache", "nats-tsnet", "bin");
    const bridge = readdirSync(binDir)
      .map((d) => join(binDir, d, "nats-tsnet-bridge"))
      .find((f) => existsSync(f))!;
    const good = sha256(bridge);
    chmodSync(bridge, 0o700);
    appendFileSync(bridge, "tampered");
    chmodSync(bridge, 0o500);
    assert.notEqual(sha256(bridge), good);

    const host = t.tailnet.net.addHost("rel-proxy");
    const authKey = await t.tailnet.headscale.authKey({ user: undefined });
    const state = join(bare, "proxy-state");
    const child = spawnChild({
      cmd: exe,
      args: [
        "proxy",
        "--to",
        "nats-1:4222",
        "--listen",
        "127.0.0.1:4222",
        "--hostname",
        "rel-proxy",
        "--state-dir",
        state,
        "--log-format",
        "json",
      ],
      env: { ...bareEnv(), ...tailnetEnv(), TS_AUTHKEY: authKey, TS_CONTROL_URL: t.tailnet.headscale.url },
      wrap: host.wrap,
    });
    const lines: string[] = [];
    eachLine(child.stderr, (l) => lines.push(l));
    eachLine(child.stdout, (l) => lines.push(l));
    try {
      await eventually(() => lines.some((l) => l.includes('"proxy ready"')), 60_000, `proxy ready: ${lines.slice(-5).join(" | ")}`);
      // A client on the proxy's host, through the proxy, reads the stream.
      const nats = binaryPath("nats");
      const r = await eventually(
        () => {
          const p = spawnSync("ip", ["netns", "exec", host.netns, nats, "-s", "nats://127.0.0.1:4222", "stream", "info", "REL", "--json"], {
            encoding: "utf8",
            timeout: 20_000,
          });
          return p.status === 0 ? p.stdout : undefined;
        },
        30_000,
        "nats stream info through the release proxy",
      );
      assert.equal((JSON.parse(r) as { state: { messages: number } }).state.messages, 20);
      assert.ok(existsSync(join(bare, ".cache", "nats-tsnet", "bin")));
      assert.equal(readdirSync(binDir).length, 2, "one directory per carried binary");
      assert.equal(sha256(bridge), good, "the changed bridge was replaced from the embedded copy");
    } finally {
      await terminate(child, "SIGTERM", 20_000);
    }
    const { code } = await exited(child);
    assert.equal(code, 0, lines.slice(-5).join("\n"));
  });
});
