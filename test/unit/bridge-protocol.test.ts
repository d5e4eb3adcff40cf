// The control protocol seen from the TypeScript side: the requests the
// control plane's Bridge methods write must be exactly the fixture that the
// Go side decodes strictly (dataplane/bridge/protocol_fixture_test.go), and
// the fixture's events and answers must be what the TypeScript side reads.
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import {
  Bridge,
  BridgeError,
  REPO_ROOT,
  createLogger,
  identityOf,
  membersOf,
  type Observed,
  type TailnetStatus,
  type WhoIs,
} from "../../controlplane/src/mod.ts";

interface Fixture {
  requests: Array<{ op: string; args?: unknown }>;
  events: Array<{ event: string; data?: unknown }>;
  responses: Array<{ op: string; response: { id: number; ok: boolean; result?: unknown; error?: { code: string; message: string } } }>;
}
const fixture = JSON.parse(readFileSync(join(REPO_ROOT, "dataplane", "bridge", "testdata", "control-protocol.json"), "utf8")) as Fixture;

/** A Bridge whose child is a stand-in: what it writes to stdin is kept, lines can be fed to its stdout handler. */
function fakeBridge(): { bridge: Bridge; written: Array<{ id: number; op: string; args?: unknown }>; feed(line: string): void } {
  const written: Array<{ id: number; op: string; args?: unknown }> = [];
  const child = Object.assign(new EventEmitter(), {
    stdin: { writable: true, write: (line: string) => written.push(JSON.parse(line)) },
  });
  const BridgeCtor = Bridge as unknown as new (child: unknown) => Bridge;
  const bridge = new BridgeCtor(child);
  const log = createLogger({ level: "silent" });
  const feed = (line: string) => (bridge as unknown as { onLine(l: string, log: unknown): void }).onLine(line, log);
  return { bridge, written, feed };
}

const secret = { user: "nats-tsnet-route", pass: "c2VjcmV0LXJvdXRlLXBhc3N3b3Jk" };

describe("bridge control protocol: TypeScript and Go agree", () => {
  test("every request the control plane sends is one the fixture holds, field for field", () => {
    const { bridge, written } = fakeBridge();
    const quiet = (p: Promise<unknown>) => void p.catch(() => {});
    quiet(bridge.getStatus());
    quiet(bridge.whois("100.64.0.7"));
    quiet(bridge.observe(["100.64.0.2"]));
    quiet(
      bridge.listen({
        name: "client",
        port: 4222,
        target: "127.0.0.1:14222",
        proxyProtocol: true,
        signClients: true,
        nameClients: true,
        limits: { maxConns: 256, rate: 20, burst: 100 },
        grantGate: { capability: "nats-tsnet.dev/cap/nats", users: ["alice@example.com"], tags: ["tag:svc"] },
      }),
    );
    quiet(
      bridge.listen({
        name: "client-quota",
        port: 4223,
        target: "127.0.0.1:14222",
        proxyProtocol: true,
        signClients: true,
        nameClients: true,
        clientQuota: { subs: 1000, payload: 1048576 },
      }),
    );
    quiet(
      bridge.listen({
        name: "client-tls",
        port: 4224,
        target: "127.0.0.1:14222",
        proxyProtocol: true,
        signClients: true,
        nameClients: true,
        tls: {
          certFile: "/etc/nats-tsnet/tls/server.pem",
          keyFile: "/etc/nats-tsnet/tls/server.key",
          minVersion: "1.3",
          clientCaFile: "/etc/nats-tsnet/tls/clients-ca.pem",
          revoked: ["serial:2a"],
        },
      }),
    );
    quiet(
      bridge.listen({
        name: "websocket",
        port: 8080,
        target: "127.0.0.1:14222",
        proxyProtocol: true,
        signClients: true,
        nameClients: true,
        webSocket: { origins: ["app.example", "*.apps.example"] },
      }),
    );
    quiet(
      bridge.listen({
        name: "local:docker",
        port: 4222,
        target: "127.0.0.1:14222",
        proxyProtocol: true,
        signClients: true,
        nameClients: true,
        limits: { maxConns: 256, rate: 20, burst: 100 },
        local: { listen: "172.17.0.1:4222", face: "docker" },
      }),
    );
    quiet(bridge.listen({ name: "monitor", port: 8222, target: "127.0.0.1:18222" }));
    quiet(bridge.listen({ name: "cluster", port: 6222, target: "127.0.0.1:16222", allowTags: ["tag:nats"], routeSecret: secret }));
    quiet(
      bridge.forward({
        name: "route:nodeB1CNTRL",
        listen: "127.64.0.2:16222",
        targets: ["100.64.0.2:6222", "[fd7a:115c:a1e0::2]:6222"],
        routeSecret: secret,
      }),
    );
    quiet(bridge.closeListener("client", true));
    quiet(bridge.denied("100.64.0.9", "alice@example.com is in no group that may connect"));
    quiet(bridge.quota("100.64.0.7", { subs: 10000, payload: -1 }));
    assert.deepEqual(
      written.map(({ op, args }) => (args === undefined ? { op } : { op, args })),
      fixture.requests,
    );
  });

  test("answers resolve (or reject with the bridge's code) as the fixture says", async () => {
    const { bridge, feed } = fakeBridge();
    const byOp = new Map<string, Promise<unknown>>();
    const calls: Record<string, () => Promise<unknown>> = {
      status: () => bridge.getStatus(),
      whois: () => bridge.whois("100.64.0.7"),
      observe: () => bridge.observe([]),
      listen: () => bridge.listen({ name: "x", port: 1, target: "127.0.0.1:1" }),
      forward: () => bridge.forward({ name: "x", targets: ["100.64.0.2:6222"] }),
      close: () => bridge.closeListener("x"),
      denied: () => bridge.denied("100.64.0.9", "why"),
      quota: () => bridge.quota("100.64.0.9", { subs: 1, payload: 1 }),
    };
    for (const { op, response } of fixture.responses) {
      // The bridge numbers nothing itself: it answers the id it was asked with.
      const p = calls[op]!();
      const id = (bridge as unknown as { nextId: number }).nextId - 1;
      byOp.set(
        `${op}:${response.ok}`,
        p.then(
          (v) => ({ v }),
          (e: unknown) => ({ e }),
        ),
      );
      feed(JSON.stringify({ ...response, id }));
    }
    const whois = (await byOp.get("whois:true")) as { v: WhoIs };
    assert.equal(identityOf(whois.v).label, whois.v.label, "the label is the bridge's");
    assert.match(whois.v.label, / \(laptop\)$/);
    const seen = (await byOp.get("observe:true")) as { v: Observed };
    assert.equal(seen.v.peers[0]!.path, "direct");
    assert.equal(seen.v.metrics.faces.client!.refused.ERR_NO_GRANT, 2);
    const status = (await byOp.get("status:true")) as { v: TailnetStatus };
    assert.ok(status.v.self.ips.length > 0);
    const refused = (await byOp.get("listen:false")) as { e: BridgeError };
    assert.ok(refused.e instanceof BridgeError);
    const expected = fixture.responses.find((r) => r.op === "listen" && !r.response.ok)!.response.error!.code;
    assert.equal(refused.e.code, expected);
  });

  test("events carry what the control plane reads: status for up and peers, a code for fatal", () => {
    const { bridge, feed } = fakeBridge();
    const seen: Array<[string, unknown]> = [];
    for (const name of ["up", "peers", "netmap", "ready", "fatal"]) bridge.on(name, (d: unknown) => seen.push([name, d]));
    for (const ev of fixture.events) feed(JSON.stringify(ev));
    assert.deepEqual(
      seen.map(([n]) => n),
      fixture.events.map((e) => e.event),
    );
    const peers = fixture.events.find((e) => e.event === "peers")!.data as TailnetStatus;
    assert.deepEqual(bridge.status, peers, "a peers event replaces the status");
    for (const m of membersOf(peers, peers.self.tags[0]!)) assert.ok(m.ips.length > 0 && m.id && m.name);
    const fatal = fixture.events.find((e) => e.event === "fatal")!.data as { code: string; message: string };
    assert.match(fatal.code, /^ERR_[A-Z_]+$/);
  });
});
