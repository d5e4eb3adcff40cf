// The client proxy's SOCKS5 port acts with its device's identity, for any
// local user of the proxy's host. It must lead to the cluster's client port
// only (or what the operator lists), never elsewhere on the tailnet or off
// it, and may ask for a username and password.
import assert from "node:assert/strict";
import { spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect as tcpConnect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { CLI, defaultPolicy, type LabProxy } from "../../localtailnet/mod.ts";
import { eachLine, ExitCode, spawnChild, terminate } from "../../controlplane/src/mod.ts";
import { eventually, logTail, natsConnect, startTestTailnet, type TestTailnet } from "./helpers.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Where a SOCKS5 exchange stopped: the method choice, the login, or the CONNECT reply (with its code). */
type SocksResult = { ok: true; socket: Socket } | { ok: false; failed: "method" | "auth" | "connect" | "closed"; reply?: number };

/** Resolves with exactly n bytes, leaving the rest in the socket for whoever reads next. */
async function readN(s: Socket, n: number): Promise<Buffer | undefined> {
  for (;;) {
    const b = s.read(n) as Buffer | null;
    if (b) return b.length === n ? b : undefined;
    if (s.readableEnded || s.destroyed) return undefined;
    await new Promise<void>((resolve) => {
      const done = () => {
        s.off("readable", done).off("close", done).off("end", done);
        resolve();
      };
      s.on("readable", done).on("close", done).on("end", done);
    });
  }
}

/**
 * One SOCKS5 CONNECT (RFC 1928, with RFC 1929 login when creds are given)
 * through a proxy on 127.0.0.1, by domain name: the proxy, not this
 * process, decides what the name means. On success the socket is the
 * tunnel.
 */
async function socksOpen(proxyPort: number, host: string, port: number, creds?: { user: string; pass: string }): Promise<SocksResult> {
  const s = tcpConnect(proxyPort, "127.0.0.1");
  s.on("error", () => {});
  const timer = setTimeout(() => s.destroy(), 20_000);
  let ok = false;
  try {
    s.write(Buffer.from([5, 1, creds ? 2 : 0]));
    const method = await readN(s, 2);
    if (!method) return { ok: false, failed: "closed" };
    if (method[1] !== (creds ? 2 : 0)) return { ok: false, failed: "method" };
    if (creds) {
      const u = Buffer.from(creds.user);
      const p = Buffer.from(creds.pass);
      s.write(Buffer.concat([Buffer.from([1, u.length]), u, Buffer.from([p.length]), p]));
      const status = await readN(s, 2);
      if (!status || status[1] !== 0) return { ok: false, failed: "auth" };
    }
    const name = Buffer.from(host);
    s.write(Buffer.concat([Buffer.from([5, 1, 0, 3, name.length]), name, Buffer.from([port >> 8, port & 0xff])]));
    const head = await readN(s, 4);
    if (!head) return { ok: false, failed: "closed" };
    const addrLen = head[3] === 1 ? 4 : head[3] === 4 ? 16 : ((await readN(s, 1))?.[0] ?? 0);
    await readN(s, addrLen + 2); // bound address and port
    if (head[1] !== 0) return { ok: false, failed: "connect", reply: head[1] };
    ok = true;
    return { ok: true, socket: s };
  } finally {
    clearTimeout(timer);
    if (!ok) s.destroy();
  }
}

/** The first line a destination sends, read through a SOCKS5 tunnel. */
async function firstLine(s: Socket): Promise<string> {
  let buf = "";
  while (!buf.includes("\r\n")) {
    const b = await readN(s, 1);
    if (!b) break;
    buf += b.toString("latin1");
  }
  s.destroy();
  return buf.split("\r\n")[0]!;
}

/** An HTTP GET through a SOCKS5 tunnel: the status line. */
async function httpStatus(s: Socket, path: string): Promise<string> {
  s.write(`GET ${path} HTTP/1.0\r\nHost: x\r\n\r\n`);
  return firstLine(s);
}

/** Connects through SOCKS5 and reports success, or undefined so that eventually() tries again. */
async function opens(proxyPort: number, host: string, port: number, creds?: { user: string; pass: string }): Promise<Socket | undefined> {
  const r = await socksOpen(proxyPort, host, port, creds);
  return r.ok ? r.socket : undefined;
}

/**
 * A local TCP port whose every connection is a SOCKS5 tunnel to host:port:
 * how a NATS client that cannot speak SOCKS5 itself is put behind the proxy.
 */
function socksTunnel(proxyPort: number, host: string, port: number): Promise<Server> {
  const server = createServer((c) => {
    c.on("error", () => {});
    c.pause();
    void socksOpen(proxyPort, host, port).then((r) => {
      if (!r.ok) return c.destroy();
      r.socket.on("error", () => c.destroy());
      r.socket.pipe(c).pipe(r.socket);
      c.resume();
    });
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

describe("the client proxy's SOCKS5 port", () => {
  let t: TestTailnet;
  let plain: LabProxy; // SOCKS5 with the default policy, no login
  let wide: LabProxy; // --socks5-allow 4222,8222 and a login
  let offTailnet: ChildProcess | undefined;
  const creds = { user: "carol", pass: "correct horse battery staple" };
  const LOCAL_PORT = 2222; // a service on the proxy's own host, off the tailnet

  before(async () => {
    t = await startTestTailnet("proxy");
    // Every device may reach every other, as in Tailscale's default policy:
    // the widest ACL a proxy's owner could have, so that what SOCKS5
    // refuses, its own policy refused.
    await t.tailnet.headscale.setPolicy({ ...defaultPolicy(), acls: [{ action: "accept", src: ["*"], dst: ["*:*"] }] });
    await t.tailnet.startNode("nats-1", { config: { nats: { standalone: true } } });
    const passFile = join(t.dir, "socks5-password");
    writeFileSync(passFile, creds.pass + "\n", { mode: 0o600 });
    [plain, wide] = await Promise.all([
      t.tailnet.startProxy("socks-plain", { to: "nats-1:4222", socks5: true }),
      t.tailnet.startProxy("socks-wide", {
        to: "nats-1:4222",
        socks5: true,
        socks5Allow: ["4222", "8222"],
        socks5User: creds.user,
        socks5PasswordFile: passFile,
      }),
    ]);
    offTailnet = await listenInside(plain, LOCAL_PORT);
  });

  after(async () => {
    if (offTailnet) await terminate(offTailnet, "SIGTERM", 5000);
    await t?.cleanup();
  });

  /** A server on 127.0.0.1:port inside the proxy's own network namespace, where the bridge dials from. */
  async function listenInside(p: LabProxy, port: number): Promise<ChildProcess> {
    const script = `require("net").createServer(s=>s.end("OFF-TAILNET\\r\\n")).listen(${port},"127.0.0.1",()=>console.log("listening"))`;
    const child = spawnChild({ cmd: process.execPath, args: ["-e", script], wrap: p.host.wrap });
    await new Promise<void>((resolve, reject) => {
      eachLine(child.stdout, (l) => l === "listening" && resolve());
      child.once("exit", (code) => reject(new Error(`listener in ${p.host.name} exited (${code})`)));
    });
    return child;
  }

  /**
   * Whether the bridge of proxy p logged a refusal of dest. The lab log is
   * in the text format (`... key=value key=value`), one event a line.
   */
  function refusalLogged(p: LabProxy, dest: string): boolean {
    const fields = [`client=${p.name}`, "code=ERR_SOCKS_REFUSED", `dest=${dest}`];
    return readFileSync(t.logFile, "utf8")
      .split("\n")
      .some((line) => {
        const words = new Set(line.split(" "));
        return fields.every((f) => words.has(f));
      });
  }

  async function assertRefused(p: LabProxy, host: string, port: number, c?: typeof creds): Promise<void> {
    const r = await socksOpen(p.socks5Port!, host, port, c);
    if (r.ok) r.socket.destroy();
    assert.equal(r.ok ? "connected" : r.failed, "connect", `${host}:${port} must be refused at CONNECT\n${logTail(t)}`);
    await eventually(() => refusalLogged(p, `${host}:${port}`), 15_000, `ERR_SOCKS_REFUSED logged for ${host}:${port}`);
  }

  test("the cluster's client port works: a NATS round trip through SOCKS5", async () => {
    const tunnel = await socksTunnel(plain.socks5Port!, "nats-1", 4222);
    t.onCleanup(() => tunnel.close());
    const port = (tunnel.address() as { port: number }).port;
    const nc = await eventually(() => natsConnect(`nats://127.0.0.1:${port}`, { name: "socks5-test" }), 60_000, "NATS through SOCKS5");
    try {
      const sub = nc.subscribe("socks.hello", { max: 1 });
      await nc.flush();
      nc.publish("socks.hello", enc.encode("through socks5"));
      for await (const m of sub) assert.equal(dec.decode(m.data), "through socks5");
    } finally {
      await nc.close();
    }
  });

  test("the client port by MagicDNS FQDN and by tailnet IP", async () => {
    const nats1 = await eventually(
      async () => (await plain.bridge.getStatus()).peers.find((d) => d.name === "nats-1"),
      30_000,
      "nats-1 in the netmap",
    );
    for (const host of [nats1.dnsName, ...nats1.ips]) {
      const s = await eventually(() => opens(plain.socks5Port!, host, 4222), 30_000, `SOCKS5 to ${host}:4222`);
      assert.equal((await firstLine(s)).split(" ")[0], "INFO", host);
    }
  });

  test("other ports of a cluster node are refused: nats-1's monitoring port", async () => {
    await assertRefused(plain, "nats-1", 8222);
    await assertRefused(plain, "nats-1", 6222);
  });

  test("other tailnet devices are refused, though the ACL lets the device reach them", async () => {
    await eventually(
      async () => (await plain.bridge.getStatus()).peers.some((d) => d.name === "socks-wide"),
      30_000,
      "socks-wide in the netmap",
    );
    await assertRefused(plain, "socks-wide", 4222);
    await assertRefused(plain, "socks-wide", LOCAL_PORT);
  });

  test("destinations off the tailnet are refused: the proxy's own loopback, the lab's control server", async () => {
    await assertRefused(plain, "127.0.0.1", LOCAL_PORT);
    await assertRefused(plain, "localhost", LOCAL_PORT);
    const control = new URL(t.tailnet.headscale.url);
    await assertRefused(plain, control.hostname, Number(control.port));
  });

  test("an allow list widens it: the monitoring port, reached with the right login", async () => {
    const s = await eventually(() => opens(wide.socks5Port!, "nats-1", 8222, creds), 30_000, "SOCKS5 to nats-1:8222");
    assert.match(await httpStatus(s, "/healthz"), /^HTTP\/1\.[01] 200/);
    const c = await eventually(() => opens(wide.socks5Port!, "nats-1", 4222, creds), 30_000, "SOCKS5 to nats-1:4222");
    assert.equal((await firstLine(c)).split(" ")[0], "INFO");
    // Still only the cluster: the list names ports on tagged nodes.
    await assertRefused(wide, "socks-plain", 8222, creds);
    await assertRefused(wide, "127.0.0.1", 8222, creds);
  });

  test("with a login set, a wrong one or none is refused", async () => {
    assert.deepEqual(await socksOpen(wide.socks5Port!, "nats-1", 4222, { user: creds.user, pass: "wrong" }), { ok: false, failed: "auth" });
    assert.deepEqual(await socksOpen(wide.socks5Port!, "nats-1", 4222, { user: "mallory", pass: creds.pass }), {
      ok: false,
      failed: "auth",
    });
    assert.deepEqual(await socksOpen(wide.socks5Port!, "nats-1", 4222), { ok: false, failed: "method" });
  });

  test("bad SOCKS5 flags fail before the device joins, with ERR_USAGE", () => {
    const dir = mkdtempSync(join(tmpdir(), "nt-proxy-flags-"));
    // A closed loopback port as the control server: should a check ever
    // let the bridge go on to join, it cannot reach anything.
    const base = [
      "proxy",
      "--to",
      "nats-1:4222",
      "--listen",
      "127.0.0.1:0",
      "--state-dir",
      join(dir, "state"),
      "--control-url",
      "http://127.0.0.1:9",
    ];
    const env = { ...process.env };
    delete env.TS_AUTHKEY;
    delete env.NATS_TSNET_SOCKS5_PASSWORD;
    const cases = [
      ["--socks5", "127.0.0.1:0", "--socks5-user", "carol"], // no password
      ["--socks5", "127.0.0.1:0", "--socks5-allow", "nats-1:http"],
      ["--socks5-allow", "8222"], // without --socks5
    ];
    for (const args of cases) {
      const r = spawnSync(process.execPath, [CLI, ...base, ...args], { encoding: "utf8", env, timeout: 60_000 });
      assert.equal(r.status, ExitCode.usage, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, /: ERR_USAGE: /, args.join(" "));
    }
    const pw = spawnSync(process.execPath, [CLI, ...base, "--socks5", "127.0.0.1:0"], {
      encoding: "utf8",
      env: { ...env, NATS_TSNET_SOCKS5_PASSWORD: "no user for it" },
      timeout: 60_000,
    });
    assert.equal(pw.status, ExitCode.usage, pw.stderr);
    assert.match(pw.stderr, /: ERR_USAGE: /);
    rmSync(dir, { recursive: true, force: true });
  });
});
