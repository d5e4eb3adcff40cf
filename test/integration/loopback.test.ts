// Loopback is not a back door: a process on a node's own host cannot use
// the loopback ports to skip the tailnet — not the client port (plain or
// with a forged PROXY header), not the cluster port, not the forwarders.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eventually, natsConnect, startTestTailnet, type TestTailnet } from "./helpers.ts";

// Runs inside a host's namespace: connect, optionally send a PROXY v2
// header, read the INFO line, send `send`, and print everything received
// until the server closes or 3 s pass.
const PROBE = `
const net = require("net");
const [port, host, proxySrc, send] = [Number(process.argv[1]), process.argv[2], process.argv[3], process.argv[4]];
const s = net.connect(port, host);
let out = "";
s.on("connect", () => {
  if (proxySrc) {
    const ip = (a) => Buffer.from(a.split(".").map(Number));
    const addr = Buffer.concat([ip(proxySrc), ip("100.64.0.1"), Buffer.from([0x9c, 0x40, 0x10, 0x8e])]);
    s.write(Buffer.concat([Buffer.from("\\r\\n\\r\\n\\0\\r\\nQUIT\\n", "binary"), Buffer.from([0x21, 0x11, 0, 12]), addr]));
  }
  s.write(send.replace(/\\\\r\\\\n/g, "\\r\\n"));
});
s.on("data", (d) => { out += d.toString(); });
s.on("close", () => { process.stdout.write(JSON.stringify(out)); process.exit(0); });
s.on("error", () => {});
setTimeout(() => { process.stdout.write(JSON.stringify(out)); process.exit(0); }, 3000);
`;

describe("loopback is not a back door", () => {
  let t: TestTailnet;

  const probe = (host: string, port: number, addr: string, send: string, proxySrc = ""): string =>
    JSON.parse(t.tailnet.net.exec(host, process.execPath, ["-e", PROBE, String(port), addr, proxySrc, send]));

  before(async () => {
    t = await startTestTailnet("loopback");
    // nats-1 runs the default auth mode (tailnet), nats-2 auth mode none:
    // the loopback protections must hold in both.
    await Promise.all([t.tailnet.startNode("nats-1"), t.tailnet.startNode("nats-2", { config: { auth: { mode: "none" } } })]);
    await t.tailnet.waitForCluster(["nats-1", "nats-2"]);
  });

  after(async () => {
    await t?.cleanup();
  });

  test("through the tailnet face a client is vouched for and served", async () => {
    const p = await t.tailnet.startProxy("client-1", { to: "nats-1:4222" });
    const nc = await eventually(() => natsConnect(p.url, { name: "via-tailnet" }), 20_000, "connect through the tailnet");
    const r = await nc.request("$JS.API.INFO", "", { timeout: 5000 });
    assert.ok(r.json<{ type: string }>().type.includes("account_info"));
    await nc.close();
  });

  for (const [node, mode] of [
    ["nats-1", "tailnet"],
    ["nats-2", "none"],
  ] as const) {
    test(`auth mode ${mode}: a local process on 127.0.0.1:<client port> is refused`, () => {
      const out = probe(node, 14222, "127.0.0.1", 'CONNECT {"verbose":false}\\r\\nPING\\r\\n');
      assert.match(out, /^INFO /, "nats-server answers the TCP connection");
      assert.match(out, /-ERR '(Authorization Violation|Proxy Connection Required)'/i);
      assert.doesNotMatch(out, /PONG/);
    });

    test(`auth mode ${mode}: a forged PROXY header claiming a tailnet address is refused too`, () => {
      const out = probe(node, 14222, "127.0.0.1", 'CONNECT {"verbose":false}\\r\\nPING\\r\\n', "100.64.0.99");
      assert.match(out, /-ERR '(Authorization Violation|Proxy Connection Required)'/i);
      assert.doesNotMatch(out, /PONG/);
    });
  }

  test("a made-up proxy_sig is refused", () => {
    const out = probe("nats-1", 14222, "127.0.0.1", 'CONNECT {"verbose":false,"proxy_sig":"AAAA"}\\r\\nPING\\r\\n', "100.64.0.99");
    assert.match(out, /-ERR '(Authorization Violation|Proxy Connection Required)'/i);
    assert.doesNotMatch(out, /PONG/);
  });

  test("a local process cannot open a route on 127.0.0.1:<cluster port>", () => {
    const out = probe("nats-1", 16222, "127.0.0.1", 'CONNECT {"verbose":false,"name":"intruder","cluster":"nats-js"}\\r\\nPING\\r\\n');
    assert.match(out, /-ERR 'Authorization Violation'/);
    assert.doesNotMatch(out, /PONG/);
  });

  test("a local process cannot ride a route forwarder into a peer's cluster", async () => {
    const node = t.tailnet.nodes.get("nats-1")!;
    const peer = t.tailnet.nodes.get("nats-2")!;
    const nats2 = JSON.parse(t.tailnet.net.exec("nats-1", "cat", [`${node.dir}/state/status.json`])).routes.find(
      (r: { peer: string }) => r.peer === "nats-2",
    );
    const alias = new URL(nats2.url).hostname;
    const out = probe("nats-1", 16222, alias, 'CONNECT {"verbose":false,"name":"intruder","cluster":"nats-js"}\\r\\nPING\\r\\n');
    assert.doesNotMatch(out, /PONG|INFO/, "nothing from nats-2 reaches the intruder");
    const refusal = await eventually(
      () => node.lines.find((l) => l.msg === "connection refused" && String(l.listener).startsWith("route:")),
      5000,
      "refusal logged",
    );
    assert.match(String(refusal.reason), /route secret/);
    assert.ok(
      peer.lines.every((l) => !(l.msg === "connection refused" && l.listener === "cluster")),
      "nats-2 never even saw it",
    );
  });
});
