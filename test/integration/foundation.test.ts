// A single node whose only face is tsnet, on a real local tailnet.
// Everything here is real: headscale, tsnet devices in namespaces,
// upstream nats-server, nats.js over the tailnet through a client device.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { CLI, type LabProxy } from "../../localtailnet/mod.ts";
import { exited, ExitCode } from "../../controlplane/src/mod.ts";
import { eventually, logTail, natsConnect, socks5Connect, startTestTailnet, type TestTailnet } from "./helpers.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

describe("a single node on the local tailnet", () => {
  let t: TestTailnet;
  let client: LabProxy;
  let monitor: LabProxy;
  let nc: NatsConnection;

  before(async () => {
    t = await startTestTailnet("foundation");
    await t.tailnet.startNode("nats-1", { config: { nats: { standalone: true } } });
    client = await t.tailnet.startProxy("client-1", { to: "nats-1:4222" });
    monitor = await t.tailnet.startProxy("client-2", { to: "nats-1:8222" });
    nc = await eventually(
      () => natsConnect(client.url, { name: "foundation-test", timeout: 3000 }),
      30_000,
      "NATS connection through the tailnet",
    );
  });

  after(async () => {
    await nc?.close();
    await t?.cleanup();
  });

  test("core publish/subscribe through the tailnet", async () => {
    const sub = nc.subscribe("greet.>", { max: 3 });
    for (let i = 0; i < 3; i++) nc.publish(`greet.${i}`, enc.encode(`hello ${i}`));
    const got: string[] = [];
    for await (const m of sub) got.push(`${m.subject}=${dec.decode(m.data)}`);
    assert.deepEqual(got, ["greet.0=hello 0", "greet.1=hello 1", "greet.2=hello 2"]);
    const reply = nc.subscribe("svc.echo");
    void (async () => {
      for await (const m of reply) m.respond(m.data);
    })();
    const r = await nc.request("svc.echo", enc.encode("ping"), { timeout: 5000 });
    assert.equal(dec.decode(r.data), "ping");
  });

  test("JetStream: create a stream, publish with acks, read every message back", async () => {
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.add({ name: "ORDERS", subjects: ["orders.>"] });
    assert.equal(info.config.name, "ORDERS");
    const js = jetstream(nc);
    const acks = [];
    for (let i = 1; i <= 20; i++) acks.push(await js.publish(`orders.${i}`, enc.encode(`order ${i}`)));
    assert.deepEqual(
      acks.map((a) => a.seq),
      Array.from({ length: 20 }, (_, i) => i + 1),
    );
    for (const seq of [1, 10, 20]) {
      const m = await jsm.streams.getMessage("ORDERS", { seq });
      assert.equal(dec.decode(m!.data), `order ${seq}`);
    }
    assert.equal((await jsm.streams.info("ORDERS")).state.messages, 20);
  });

  test("/connz over the tailnet monitoring face shows the client's tailnet address", async () => {
    const tailnetIP = client.bridge.status!.self.ips[0]!;
    assert.match(tailnetIP, /^100\./);
    const res = await fetch(`http://127.0.0.1:${monitor.port}/connz`);
    const connz = (await res.json()) as { connections: Array<{ name?: string; ip: string }> };
    const mine = connz.connections.find((c) => c.name?.endsWith(" foundation-test"));
    assert.equal(mine?.name, "dev (client-1) foundation-test", "the bridge names the connection after its tailnet identity");
    assert.ok(mine, `our connection is listed: ${JSON.stringify(connz.connections)}`);
    assert.equal(mine.ip, tailnetIP);
    // The only loopback connections are the node's own (its auth callout and housekeeping).
    const local = connz.connections.filter((c) => c.ip === "127.0.0.1");
    assert.ok(
      local.every((c) => c.name?.startsWith("nats-tsnet ")),
      `loopback connections: ${JSON.stringify(local)}`,
    );
  });

  test("a standalone node keeps status.json: its view of the tailnet, with no routes", () => {
    const node = t.tailnet.nodes.get("nats-1")!;
    const st = JSON.parse(readFileSync(join(node.dir, "state", "status.json"), "utf8"));
    assert.equal(st.self.name, "nats-1");
    assert.ok(
      ["client-1", "client-2"].every((d) => st.peers.some((p: { name: string }) => p.name === d)),
      `both client devices are listed: ${JSON.stringify(st.peers.map((p: { name: string }) => p.name))}`,
    );
    assert.deepEqual(st.routes, []);
  });

  test("inside the node's host the only TCP listeners are on loopback", async () => {
    const node = t.tailnet.nodes.get("nats-1")!;
    // tsnet opens a kernel listener for its peerAPI; the bridge shuts it on its next sweep.
    const listeners = await eventually(
      () => {
        const out = t.tailnet.net.exec(node.host.name, "ss", ["-Hltn"]);
        const addrs = out
          .trim()
          .split("\n")
          .filter(Boolean)
          .map((l) => l.trim().split(/\s+/)[3]!);
        return addrs.every((a) => a.startsWith("127.") || a.startsWith("[::1]")) ? addrs : undefined;
      },
      10_000,
      "loopback-only listeners",
    );
    assert.ok(listeners.includes("127.0.0.1:14222"), `nats-server client port on loopback: ${listeners}`);
    assert.ok(listeners.includes("127.0.0.1:18222"), `monitoring port on loopback: ${listeners}`);
  });

  test("client mode also serves SOCKS5 onto the tailnet", async () => {
    const p = await t.tailnet.startProxy("socks-user", { to: "nats-1:4222", socks5: true });
    // A new device may get its netmap a moment after it is up: retry the CONNECT, not the greeting's shape.
    const first = await eventually(
      async () => {
        const r = await socks5Connect(p.socks5Port!, "nats-1", 4222);
        return r.reply === 0 ? r.firstLine.split(" ")[0] : undefined;
      },
      20_000,
      "SOCKS5 CONNECT to nats-1:4222 through the proxy",
    );
    assert.equal(first, "INFO");
    await p.stop();
  });

  test("forwarders try every tailnet address: IPv6 works, and a dead first address falls back", async () => {
    const node = t.tailnet.nodes.get("nats-1")!;
    const ips = client.bridge.status!.peers.find((p) => p.name === "nats-1")!.ips;
    const v6 = ips.find((ip) => ip.includes(":"))!;
    assert.ok(v6, `nats-1 has an IPv6 tailnet address: ${ips}`);
    // Read the first bytes (the INFO line) through a forwarder, from inside the client's host.
    const infoThrough = async (name: string, targets: string[]) => {
      const f = await client.bridge.forward({ name, listen: "127.0.0.1:0", targets });
      const script = `const s=require("net").connect(${f.addr.split(":")[1]},"127.0.0.1");s.once("data",d=>{process.stdout.write(d.toString().split(" ")[0]);s.destroy()});s.on("error",e=>{console.error(e.message);process.exit(1)})`;
      return t.tailnet.net.exec(client.host.name, process.execPath, ["-e", script]);
    };
    assert.equal(await infoThrough("v6-only", [`[${v6}]:4222`]), "INFO");
    assert.equal(await infoThrough("fallback", ["100.64.0.250:4222", `[${v6}]:4222`]), "INFO");
    assert.ok(node.host.netns);
  });

  test("a nats-server crash is restarted and clients come back", async () => {
    const node = t.tailnet.nodes.get("nats-1")!;
    const pidOf = () =>
      execFileSync("ip", ["netns", "pids", node.host.netns], { encoding: "utf8" })
        .split("\n")
        .filter(Boolean)
        .find((p) => spawnSync("cat", [`/proc/${p}/comm`], { encoding: "utf8" }).stdout.trim() === "nats-server");
    const before = pidOf();
    assert.ok(before, "nats-server runs in the node's namespace");
    process.kill(Number(before), "SIGKILL");
    const after = await eventually(
      () => {
        const p = pidOf();
        return p && p !== before ? p : undefined;
      },
      20_000,
      "nats-server restarted",
    );
    assert.notEqual(after, before);
    assert.ok(
      node.lines.some((l) => l.msg === "restarting" && l.process === "nats-server"),
      "the restart is logged",
    );
    // The client reconnects by itself and JetStream data survived (file store, sync always).
    const jsm = await eventually(
      async () => {
        await nc.flush();
        const m = await jetstreamManager(nc);
        await m.getAccountInfo();
        return m;
      },
      30_000,
      "client reconnected",
    );
    assert.equal((await jsm.streams.info("ORDERS")).state.messages, 20);
  });

  test("a wrong auth key fails fast with a clear message and the tailnet exit code", async () => {
    const n = await t.tailnet.startNode("bad-key", {
      authKey: "hskey-auth-thisisnotavalidkey",
      wait: false,
      config: { tailnet: { up_timeout: "60s" } },
    });
    const { code } = await exited(n.child);
    assert.equal(code, ExitCode.tailnet);
    const err = n.lines.find((l) => l.code === "ERR_TAILNET_AUTH");
    assert.ok(err, `ERR_TAILNET_AUTH logged, got: ${JSON.stringify(n.lines.filter((l) => Number(l.level) >= 50))}`);
    assert.match(String(err.msg), /refused the auth key/);
  });

  test("an unreachable control server fails with a clear message", async () => {
    const dead = `http://${t.tailnet.headscale.host.ip}:9`; // a host that exists, a port nothing serves
    const n = await t.tailnet.startNode("no-control", { wait: false, config: { tailnet: { control_url: dead, up_timeout: "8s" } } });
    const { code } = await exited(n.child);
    assert.equal(code, ExitCode.tailnet);
    const err = n.lines.find((l) => l.code === "ERR_TAILNET_CONTROL_UNREACHABLE");
    assert.ok(
      err,
      `ERR_TAILNET_CONTROL_UNREACHABLE logged, got: ${JSON.stringify(n.lines.filter((l) => Number(l.level) >= 50))}\n${logTail(t)}`,
    );
    assert.match(String(err.msg), new RegExp(`cannot reach the control server ${dead.replace(/[.]/g, "\\.")}`));
  });

  test("the bridge gets the auth key through a pipe, never in its environment, and only without state", async () => {
    const bridgeOf = (nodePid: number) => {
      const kids = execFileSync("ps", ["-o", "pid=", "--ppid", String(nodePid)], { encoding: "utf8" })
        .split("\n")
        .map((p) => p.trim())
        .filter(Boolean);
      // setpriv execs, so the bridge is a direct child of the node.
      const pid = kids.find((p) => /nats-tsnet-bridge/.test(readFileSync(`/proc/${p}/cmdline`, "utf8").split("\0")[0]!));
      assert.ok(pid, `a bridge among the children of ${nodePid}: ${kids.join(", ")}`);
      return pid;
    };
    const envOf = (pid: number | string) => readFileSync(`/proc/${pid}/environ`, "utf8").split("\0").filter(Boolean);
    const keyOf = (env: string[]) => env.find((e) => e.startsWith("TS_AUTHKEY="))?.slice("TS_AUTHKEY=".length);
    const starts = (lines: Array<Record<string, unknown>>) => lines.filter((l) => l.msg === "bridge starting");
    const check = (n: { child: { pid?: number } }) => {
      const key = keyOf(envOf(n.child.pid!));
      assert.ok(key, "the lab hands the node its key in TS_AUTHKEY");
      const env = envOf(bridgeOf(n.child.pid!));
      assert.deepEqual(
        env.filter((e) => /^TS_AUTH_?KEY=/.test(e)),
        [],
        "no auth key variable in the bridge's environ",
      );
      assert.ok(!env.some((e) => e.includes(key)), "the key is nowhere in the bridge's environ");
    };

    const first = await t.tailnet.startNode("keyless", { config: { nats: { standalone: true } } });
    check(first);
    assert.deepEqual(
      starts(first.lines).map((l) => l.authKey),
      ["provided"],
      "a new device gets the key",
    );
    assert.deepEqual(
      starts(first.lines).map((l) => l.peerAPI),
      [false],
      "tsnet's peerAPI server, which answers every peer whatever the ACL, is not in the bridge",
    );
    assert.deepEqual(
      starts(first.lines).map((l) => l.memoryLimit),
      ["128MiB"],
      "the bridge runs with its soft memory limit (GOMEMLIMIT unset)",
    );
    assert.ok(!first.lines.some((l) => JSON.stringify(l).includes(keyOf(envOf(first.child.pid!))!)), "the key is never logged");
    assert.equal((await t.tailnet.stopNode("keyless")).code, 0);

    const again = await t.tailnet.startNode("keyless", { config: { nats: { standalone: true } } });
    check(again);
    assert.deepEqual(
      starts(again.lines).map((l) => l.authKey),
      ["none"],
      "a device with state in its directory starts without the key",
    );
    assert.equal((await t.tailnet.stopNode("keyless")).code, 0);
  });

  test("SIGKILL of the node leaves no orphan bridge or nats-server", async () => {
    const n = await t.tailnet.startNode("doomed", { config: { nats: { standalone: true } } });
    const pids = () => execFileSync("ip", ["netns", "pids", n.host.netns], { encoding: "utf8" }).split("\n").filter(Boolean);
    assert.ok(pids().length >= 3, "node, bridge and nats-server run");
    n.child.kill("SIGKILL");
    await eventually(() => pids().length === 0, 20_000, "every process of the node gone");
    t.tailnet.nodes.delete("doomed");
  });

  test("SIGTERM stops the node gracefully (lame duck) with exit code 0", async () => {
    const n = await t.tailnet.startNode("graceful", { config: { nats: { standalone: true } } });
    const { code } = await t.tailnet.stopNode("graceful", "SIGTERM");
    assert.equal(code, 0);
    assert.ok(
      n.lines.some((l) => l.msg === "lame duck"),
      "lame duck mode was used",
    );
    assert.ok(n.lines.some((l) => l.msg === "stopped"));
  });
});

describe("configuration errors", () => {
  test("a malformed config exits with the config exit code and names file:line:column", () => {
    const dir = mkdtempSync(join(tmpdir(), "nt-badcfg-"));
    const file = join(dir, "config.yaml");
    writeFileSync(file, "hostname: nats-1\nnats:\n  client_prot: 4222\n");
    const r = spawnSync(process.execPath, [CLI, "run", "--config", file], { encoding: "utf8" });
    assert.equal(r.status, ExitCode.config);
    assert.match(r.stderr, new RegExp(`${file.replace(/[.]/g, "\\.")}:3:3: nats\\.client_prot: `));
    assert.match(r.stderr, /did you mean "client_port"/);
  });

  test("a YAML syntax error names the line", () => {
    const dir = mkdtempSync(join(tmpdir(), "nt-badcfg-"));
    const file = join(dir, "config.yaml");
    writeFileSync(file, "hostname: nats-1\ntailnet:\n  tags: [tag:a\n");
    const r = spawnSync(process.execPath, [CLI, "config", "check", "--config", file], { encoding: "utf8" });
    assert.equal(r.status, ExitCode.config);
    assert.match(r.stderr, new RegExp(`${file.replace(/[.]/g, "\\.")}:\\d+:\\d+: `));
  });
});
