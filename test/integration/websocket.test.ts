// The WebSocket face: nats.js wsconnect and a real browser (headless
// Chromium) speak NATS over WebSocket through the tailnet; a page from an
// origin the node does not list is refused. The browser runs in a lab host
// of its own (a network namespace with no route off this machine), beside
// the page's server and a tailnet proxy to the node's WebSocket port.
import assert from "node:assert/strict";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { createConnection } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { wsconnect } from "@nats-io/nats-core";
import { eachLine, REPO_ROOT } from "../../controlplane/src/mod.ts";
import { eventually, startTestTailnet, type TestTailnet } from "./helpers.ts";

const WS_PORT = 8080;
/** Inside the browser's host: the page's server and the proxy to nats-1's WebSocket port. */
const PAGE_PORT = 18080;
const PROXY_PORT = 14080;

// The page's server: serves a page that speaks NATS over WebSocket by hand
// (INFO, CONNECT, SUB, PUB, MSG) and prints what the page reports.
const PAGE_SERVER = `
const http = require("http");
const [port, wsUrl] = [Number(process.argv[1]), process.argv[2]];
const page = \`<!doctype html><title>nats over websocket</title><script>
const report = (r) => { if (!window.done) { window.done = true; fetch("/result", { method: "POST", body: JSON.stringify(r) }); } };
const ws = new WebSocket(\${JSON.stringify(wsUrl)});
ws.binaryType = "arraybuffer";
const enc = new TextEncoder(), dec = new TextDecoder();
let buf = "", info = null, msg = null;
ws.onmessage = (e) => {
  buf += dec.decode(e.data);
  for (let i; (i = buf.indexOf("\\\\r\\\\n")) >= 0; ) {
    const line = buf.slice(0, i); buf = buf.slice(i + 2);
    if (msg) { report({ ok: true, info, subject: msg, payload: line }); return; }
    if (!info && line.startsWith("INFO ")) {
      info = JSON.parse(line.slice(5));
      ws.send(enc.encode('CONNECT {"verbose":false,"pedantic":false,"name":"chromium","lang":"browser","protocol":1}\\\\r\\\\nSUB browser.echo 1\\\\r\\\\nPUB browser.echo 12\\\\r\\\\nhello, nats!\\\\r\\\\n'));
    } else if (line.startsWith("MSG ")) msg = line.split(" ")[1];
    else if (line.startsWith("-ERR")) report({ ok: false, err: line });
  }
};
ws.onclose = (e) => report({ ok: false, err: "closed " + e.code });
</script>\`;
http.createServer((req, res) => {
  if (req.method === "POST") {
    let b = ""; req.on("data", (d) => (b += d)); req.on("end", () => { console.log("RESULT " + b); res.end(); });
  } else { res.setHeader("content-type", "text/html"); res.end(page); }
}).listen(port, "127.0.0.1", () => console.log("LISTENING"));
`;

describe("the WebSocket face", () => {
  let t: TestTailnet;
  let netns: string;
  const children: ChildProcess[] = [];

  before(async () => {
    t = await startTestTailnet("websocket");
    // Pages from the browser host's own page server (any port there) may connect.
    // Two nodes in a cluster: nats-server then offers clients the other's TCP URL, which a WebSocket client must not get.
    const config = { nats: { websocket_port: WS_PORT, websocket_origins: ["127.0.0.1:*"] } };
    await Promise.all([t.tailnet.startNode("nats-1", { config }), t.tailnet.startNode("nats-2", { config })]);
    await t.tailnet.waitForCluster(["nats-1", "nats-2"]);
    await t.tailnet.startProxy("browser-proxy", { to: `nats-1:${WS_PORT}`, host: "browser", port: PROXY_PORT });
    netns = t.tailnet.net.hosts.get("browser")!.netns;
  });

  after(async () => {
    for (const c of children) c.kill("SIGKILL");
    await t?.cleanup();
  });

  /** Runs a program in the browser's host; its output lines are collected. */
  function inBrowserHost(cmd: string, args: string[]): { lines: string[]; child: ChildProcess } {
    const child = spawn("ip", ["netns", "exec", netns, cmd, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    children.push(child);
    const lines: string[] = [];
    eachLine(child.stdout!, (l) => lines.push(l));
    eachLine(child.stderr!, () => {});
    return { lines, child };
  }

  test("nats.js wsconnect: a round trip, no TCP URLs in INFO, the connection named after its tailnet identity", async () => {
    // This process is not in the browser's host: a proxy here, on our loopback.
    const p = await t.tailnet.startProxy("ws-laptop", { to: `nats-1:${WS_PORT}` });
    const url = p.url.replace(/^nats:/, "ws:");
    const nc = await eventually(() => wsconnect({ servers: url, name: "js-ws", ignoreClusterUpdates: true }), 30_000, "wsconnect");
    const sub = nc.subscribe("ws.echo", { max: 1 });
    void (async () => {
      for await (const m of sub) m.respond(m.data);
    })();
    assert.equal((await nc.request("ws.echo", "over websocket", { timeout: 5000 })).string(), "over websocket");
    // INFO as the WebSocket client reads it, beside what a TCP client reads from the same node.
    const wsInfo = await firstLine(new WebSocket(url));
    assert.ok(wsInfo.startsWith("INFO "), wsInfo);
    assert.ok(!wsInfo.includes("connect_urls"), `a WebSocket client gets no TCP URLs: ${wsInfo}`);
    const tcp = await t.tailnet.startProxy("tcp-laptop", { to: "nats-1:4222" });
    assert.match(
      await tcpFirstLine(tcp.url),
      /"connect_urls":\[[^\]]*nats-2/,
      "a TCP client does get them (so the check above means something)",
    );
    const connz = await t.tailnet.monitor<{ connections: Array<{ name?: string }> }>("nats-1", "/connz");
    assert.ok(
      connz.connections.some((c) => /\(ws-laptop\) js-ws$/.test(c.name ?? "")),
      `named after the device: ${JSON.stringify(connz.connections.map((c) => c.name))}`,
    );
    await nc.close();
  });

  /** The first line a WebSocket sends (the server's INFO). */
  function firstLine(ws: WebSocket): Promise<string> {
    ws.binaryType = "arraybuffer";
    return new Promise((resolve, reject) => {
      ws.onmessage = (e) => {
        resolve(new TextDecoder().decode(e.data as ArrayBuffer).split("\r\n")[0]!);
        ws.close();
      };
      ws.onerror = () => reject(new Error("websocket error"));
    });
  }

  /** The first line a TCP NATS URL sends. */
  function tcpFirstLine(url: string): Promise<string> {
    const u = new URL(url);
    return new Promise((resolve, reject) => {
      const s = createConnection(Number(u.port), u.hostname);
      let buf = "";
      s.on("data", (d) => {
        buf += d.toString();
        if (buf.includes("\r\n")) {
          resolve(buf.split("\r\n")[0]!);
          s.destroy();
        }
      });
      s.on("error", reject);
    });
  }

  /** Opens the page in headless Chromium from origin host:PAGE_PORT; what the page reported. */
  async function browse(
    host: string,
  ): Promise<{ ok: boolean; err?: string; payload?: string; subject?: string; info?: Record<string, unknown> }> {
    const server = inBrowserHost(process.execPath, ["-e", PAGE_SERVER, String(PAGE_PORT), `ws://127.0.0.1:${PROXY_PORT}`]);
    try {
      await eventually(() => server.lines.includes("LISTENING"), 10_000, "page server");
      const profile = mkdtempSync(join(t.dir, "chromium-"));
      const browser = inBrowserHost("chromium", [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--metrics-recording-only",
        `--user-data-dir=${profile}`,
        `http://${host}:${PAGE_PORT}/`,
      ]);
      try {
        const line = await eventually(() => server.lines.find((l) => l.startsWith("RESULT ")), 60_000, "the page's report");
        return JSON.parse(line.slice("RESULT ".length));
      } finally {
        browser.child.kill("SIGKILL");
      }
    } finally {
      server.child.kill("SIGKILL");
    }
  }

  test("a browser page from an allowed origin round-trips a message", async () => {
    const r = await browse("127.0.0.1");
    assert.deepEqual([r.ok, r.subject, r.payload], [true, "browser.echo", "hello, nats!"], JSON.stringify(r));
    assert.equal(r.info?.connect_urls, undefined);
  });

  test("a page from an origin the node does not list is refused, and the node says why", async () => {
    const r = await browse("localhost");
    assert.equal(r.ok, false, JSON.stringify(r));
    await eventually(
      () =>
        t.tailnet.nodes
          .get("nats-1")!
          .lines.some((l) => l.code === "ERR_WEBSOCKET_REFUSED" && String(l.origin) === `http://localhost:${PAGE_PORT}`),
      10_000,
      "ERR_WEBSOCKET_REFUSED logged with the origin",
    );
  });

  test("with the WebSocket face on, nothing new listens on the node's host: loopback stays closed", () => {
    const ss = t.tailnet.net.exec("nats-1", "ss", ["-Hltn"]);
    assert.ok(!new RegExp(`:${WS_PORT}\\b`).test(ss), `a local listener on ${WS_PORT}: ${ss}`);
    // And nats-server's loopback client port still refuses a local process
    // (a nats.js client that never tries the cluster's tailnet names from there).
    const host = t.tailnet.nodes.get("nats-1")!.host;
    const script = `require("@nats-io/transport-node").connect({ servers: "127.0.0.1:14222", reconnect: false, ignoreClusterUpdates: true })
      .then(() => console.log("CONNECTED"), (e) => console.log("REFUSED " + e.message))`;
    const out = execFileSync("ip", ["netns", "exec", host.netns, process.execPath, "-e", script], {
      encoding: "utf8",
      cwd: REPO_ROOT,
      timeout: 30_000,
    });
    assert.match(out, /^REFUSED .*Authorization Violation/im, out);
  });
});
