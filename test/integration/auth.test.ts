// Tailnet identity is the NATS identity: the auth callout decides every
// connection from WhoIs and the app-capability grants of a real headscale
// policy. Two users, a tagged service, a user without a grant, the system
// account, a policy change that cuts a live connection, malformed input.
import assert from "node:assert/strict";
import { connect as tcpConnect } from "node:net";
import { after, before, describe, test } from "node:test";
import type { NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { CAPABILITY, CLUSTER_TAG, defaultPolicy, type LabProxy } from "../../localtailnet/mod.ts";
import { inboxPrefix } from "../../controlplane/src/mod.ts";
import { eventually, natsConnect, startTestTailnet, type TestTailnet } from "./helpers.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const SVC = "tag:svc";

function policy(withAlice = true): Record<string, unknown> {
  const base = defaultPolicy() as { acls: unknown[] };
  const grant = (src: string, ...caps: Record<string, unknown>[]) => ({ src: [src], dst: [CLUSTER_TAG], app: { [CAPABILITY]: caps } });
  return {
    tagOwners: { [CLUSTER_TAG]: ["dev@"], [SVC]: ["dev@"] },
    acls: [...base.acls, { action: "accept", src: [SVC], dst: [`${CLUSTER_TAG}:4222`] }],
    grants: [
      // No _INBOX.> anywhere: each identity has its own inbox prefix.
      ...(withAlice
        ? [
            grant("alice@", {
              pub: { allow: ["alice.>", "shared.>"] },
              sub: { allow: ["alice.>", "shared.>"] },
              jetstream: { streams: ["ALICE"], manage: true },
            }),
          ]
        : []),
      grant("bob@", {
        pub: { allow: ["bob.>", "shared.>"], deny: ["shared.secret"] },
        sub: { allow: ["bob.>", "shared.>"] },
        jetstream: { streams: ["BOB"], manage: true },
      }),
      grant(SVC, { pub: { allow: [">"] }, sub: { allow: [">"] }, account: "OPS" }),
      grant("dev@", { pub: { allow: [">"] }, sub: { allow: [">"] }, account: "SYS" }),
      // mallory: a narrow SYS grant beside a general one without an account.
      grant("mallory@", { pub: { allow: ["$SYS.REQ.SERVER.PING"] }, account: "SYS" }, { pub: { allow: [">"] }, sub: { allow: [">"] } }),
      // erin: a grant whose resp.ttl is not a duration.
      grant("erin@", { sub: { allow: ["erin.>"] }, resp: { max: 1, ttl: "1d" } }),
      // frank: limits nats-server would silently drop for a callout user; the bridge holds them.
      grant("frank@", { pub: { allow: ["frank.>"] }, sub: { allow: ["frank.>"] }, limits: { subs: 1, payload: 64 } }),
      // carol@ has no grant at all.
    ],
  };
}

/** Collects the async errors (permission violations) a connection reports. */
function errorsOf(nc: NatsConnection): string[] {
  const errs: string[] = [];
  void (async () => {
    for await (const s of nc.status()) if (s.type === "error") errs.push(String((s as { error: Error }).error?.message ?? s));
  })();
  return errs;
}

describe("auth mode tailnet: identity from the tailnet, rights from grants", () => {
  let t: TestTailnet;
  const p: Record<string, LabProxy> = {};

  before(async () => {
    t = await startTestTailnet("auth");
    for (const u of ["alice", "bob", "carol", "mallory", "erin", "frank"]) await t.tailnet.headscale.ensureUser(u);
    await t.tailnet.headscale.setPolicy(policy());
    await t.tailnet.startNode("nats-1", { config: { nats: { standalone: true }, auth: { accounts: ["APP", "OPS"] } } });
    const to = "nats-1:4222";
    [p.alice, p.bob, p.carol, p.dev, p.svc, p.mallory, p.erin, p.frank] = await Promise.all([
      t.tailnet.startProxy("alice-laptop", { to, user: "alice" }),
      t.tailnet.startProxy("bob-laptop", { to, user: "bob" }),
      t.tailnet.startProxy("carol-laptop", { to, user: "carol" }),
      t.tailnet.startProxy("dev-laptop", { to, user: "dev" }),
      t.tailnet.startProxy("svc-1", { to, tags: [SVC] }),
      t.tailnet.startProxy("mallory-laptop", { to, user: "mallory" }),
      t.tailnet.startProxy("erin-laptop", { to, user: "erin" }),
      t.tailnet.startProxy("frank-laptop", { to, user: "frank" }),
    ]);
  });

  after(async () => {
    await t?.cleanup();
  });

  test("each identity does exactly what its grant says; violations reach the client", async () => {
    const alice = await eventually(() => natsConnect(p.alice!.url, { name: "alice" }), 20_000, "alice connects");
    const bob = await natsConnect(p.bob!.url, { name: "bob" });
    t.onCleanup(() => Promise.all([alice.close(), bob.close()]));
    const aliceErrs = errorsOf(alice);
    const bobErrs = errorsOf(bob);

    // Own subjects and the shared ones work.
    const own = alice.subscribe("alice.inbox", { max: 1 });
    const shared = bob.subscribe("shared.>", { max: 1 });
    await Promise.all([alice.flush(), bob.flush()]);
    alice.publish("alice.inbox", enc.encode("note to self"));
    alice.publish("shared.news", enc.encode("hello bob"));
    for await (const m of own) assert.equal(dec.decode(m.data), "note to self");
    for await (const m of shared) assert.deepEqual([m.subject, dec.decode(m.data)], ["shared.news", "hello bob"]);

    // Outside the grant: refused, and the client is told.
    alice.publish("bob.inbox", enc.encode("sneaky"));
    bob.publish("shared.secret", enc.encode("denied by a deny entry"));
    await eventually(() => aliceErrs.some((e) => /Permissions Violation for Publish to "bob\.inbox"/i.test(e)), 5000, "alice told");
    await eventually(() => bobErrs.some((e) => /Permissions Violation for Publish to "shared\.secret"/i.test(e)), 5000, "bob told");
    const sneaky = alice.subscribe("bob.>");
    await eventually(() => aliceErrs.some((e) => /Permissions Violation for Subscription to "bob\.>"/i.test(e)), 5000, "subscribe refused");
    sneaky.unsubscribe();
  });

  test("a user with no grant cannot connect and is told why", async () => {
    await assert.rejects(natsConnect(p.carol!.url, { name: "carol", reconnect: false }), (e: Error) => {
      assert.match(e.message, /Authorization Violation/i);
      assert.match(e.message, new RegExp(`no grant of ${CAPABILITY.replace(/[./]/g, "\\$&")} for carol`));
      return true;
    });
    const node = t.tailnet.nodes.get("nats-1")!;
    assert.ok(
      node.lines.some((l) => l.msg === "auth decision" && l.decision === "deny" && String(l.who).startsWith("carol")),
      "the node logs the denial",
    );
  });

  test("accounts keep tenants apart; the system account is reachable only by whom the policy names", async () => {
    const svc = await natsConnect(p.svc!.url, { name: "svc" });
    const alice = await natsConnect(p.alice!.url, { name: "alice-2" });
    const dev = await natsConnect(p.dev!.url, { name: "dev" });
    t.onCleanup(() => Promise.all([svc.close(), alice.close(), dev.close()]));
    // Same subject, different accounts: nothing crosses.
    const heard: string[] = [];
    const sub = alice.subscribe("shared.>", {
      callback: (_e, m) => {
        heard.push(m.subject);
      },
    });
    await alice.flush();
    svc.publish("shared.ops", enc.encode("internal"));
    await svc.flush();
    alice.publish("shared.app", enc.encode("visible"));
    await eventually(() => heard.includes("shared.app"), 5000, "alice hears her own account");
    assert.ok(!heard.includes("shared.ops"), "OPS traffic does not reach APP");
    sub.unsubscribe();
    // Only dev's grant names SYS.
    const ping = await dev.request("$SYS.REQ.SERVER.PING", "", { timeout: 5000 });
    assert.equal(ping.json<{ server: { name: string } }>().server.name, "nats-1");
    await assert.rejects(svc.request("$SYS.REQ.SERVER.PING", "", { timeout: 1500 }));
  });

  test("/connz names who is connected", async () => {
    const bob = await natsConnect(p.bob!.url, { name: "bob-connz" });
    t.onCleanup(() => bob.close());
    const connz = await t.tailnet.monitor("nats-1", "/connz?auth=true&limit=1000");
    // The bridge names every connection after its tailnet identity; the client's own name follows.
    const c = connz.connections.find((x: { name?: string }) => x.name?.endsWith(" bob-connz"));
    assert.ok(c, `bob's connection is listed: ${JSON.stringify(connz.connections.map((x: { name?: string }) => x.name))}`);
    assert.equal(c.name, "bob (bob-laptop) bob-connz");
    assert.equal(c.account, "APP");
  });

  test("malformed input on the client face is refused without touching other connections", async () => {
    const bob = await natsConnect(p.bob!.url, { name: "bob-survivor" });
    t.onCleanup(() => bob.close());
    const send = (payload: string) =>
      new Promise<string>((resolve) => {
        const s = tcpConnect(p.alice!.port, "127.0.0.1");
        let got = "";
        s.on("data", (d) => {
          got += d.toString();
          if (got.includes("\r\n") && !s.writableEnded) s.end(payload);
        });
        s.on("close", () => resolve(got));
        s.on("error", () => resolve(got));
        s.setTimeout(15_000, () => s.destroy());
      });
    const garbage = await send("GARBAGE {not json\r\n");
    assert.match(garbage, /^INFO /, "the server greeted, then the bridge hung up");
    assert.doesNotMatch(garbage, /PONG|\+OK/);
    const huge = await send(`CONNECT {"jwt":"${"x".repeat(100_000)}"}\r\nPING\r\n`);
    assert.doesNotMatch(huge, /PONG/);
    const node = t.tailnet.nodes.get("nats-1")!;
    // Logged by code, at most once per device and code every 10 s (a flood
    // of bad handshakes must not flood the log): the first of the two.
    await eventually(
      () => node.lines.some((l) => l.msg === "connection refused" && l.code === "ERR_CLIENT_HANDSHAKE" && l.listener === "client"),
      5000,
      "refusal logged",
    );
    // Everyone else carries on.
    const rtt = await bob.rtt();
    assert.ok(rtt >= 0);
  });

  test("a narrow SYS grant beside a general one is refused, not merged into SYS with everything", async () => {
    await assert.rejects(natsConnect(p.mallory!.url, { name: "mallory", reconnect: false }), (e: Error) => {
      assert.match(e.message, /Authorization Violation.*several accounts \(APP, SYS\)/i);
      return true;
    });
  });

  test("a grant with a malformed resp.ttl refuses the connection and says why", async () => {
    await assert.rejects(natsConnect(p.erin!.url, { name: "erin", reconnect: false }), (e: Error) => {
      assert.match(e.message, /Authorization Violation.*malformed: resp\.ttl/i);
      return true;
    });
  });

  test("a grant's limits hold: the bridge enforces what nats-server ignores for a callout user", async () => {
    const frank = await natsConnect(p.frank!.url, { name: "frank" });
    t.onCleanup(() => frank.close());
    const errs = errorsOf(frank);
    frank.subscribe("frank.one");
    frank.subscribe("frank.two");
    await eventually(() => errs.some((e) => /maximum subscriptions exceeded/i.test(e)), 5000, "frank's second subscription refused");
    assert.ok((await frank.rtt()) >= 0, "the connection stays");
  });

  test("each identity has its own inbox: JetStream replies reach bob, and alice cannot read them", async () => {
    const bobInbox = inboxPrefix({ user: "bob", tags: [] });
    const bob = await natsConnect(p.bob!.url, { name: "bob-js", inboxPrefix: bobInbox });
    const alice = await natsConnect(p.alice!.url, { name: "alice-spy", inboxPrefix: inboxPrefix({ user: "alice", tags: [] }) });
    t.onCleanup(() => Promise.all([bob.close(), alice.close()]));
    const aliceErrs = errorsOf(alice);
    // alice tries both the shared inbox and bob's own: both refused.
    alice.subscribe("_INBOX.>");
    alice.subscribe(`${bobInbox}.>`);
    await eventually(
      () => aliceErrs.filter((e) => /Permissions Violation for Subscription to "_INBOX/i.test(e)).length >= 2,
      5000,
      "inbox spying refused",
    );
    // bob's JetStream works through his own inbox prefix.
    const jsm = await jetstreamManager(bob);
    await jsm.streams.add({ name: "BOB", subjects: ["bob.orders.>"] });
    await jetstream(bob).publish("bob.orders.1", enc.encode("bob's order"));
    const got = await jsm.streams.getMessage("BOB", { seq: 1 });
    assert.equal(dec.decode(got!.data), "bob's order");
  });

  test("a jetstream grant opens its own streams and no other", async () => {
    const alice = await natsConnect(p.alice!.url, { name: "alice-js", inboxPrefix: inboxPrefix({ user: "alice", tags: [] }) });
    t.onCleanup(() => alice.close());
    const jsm = await jetstreamManager(alice, { timeout: 2000 });
    await jsm.streams.add({ name: "ALICE", subjects: ["alice.orders.>"] });
    assert.equal((await jsm.streams.info("ALICE")).config.name, "ALICE");
    // bob's stream: neither readable nor replaceable; no stream of another name either.
    await assert.rejects(jsm.streams.info("BOB"));
    await assert.rejects(jsm.streams.getMessage("BOB", { seq: 1 }));
    await assert.rejects(jsm.streams.add({ name: "BOB2", subjects: ["bob.>"] }));
  });

  test("the audit log: 'connected' comes from nats-server's own event, never for a forged local connection", async () => {
    const node = t.tailnet.nodes.get("nats-1")!;
    const bob = await natsConnect(p.bob!.url, { name: "bob-audited" });
    t.onCleanup(() => bob.close());
    await eventually(
      () => node.lines.some((l) => l.msg === "connected" && String(l.who) === "bob (bob-laptop) bob-audited" && l.account === "APP"),
      5000,
      "bob's connect event logged with his identity",
    );
    // A local process with a forged PROXY header claiming dev's device: refused, and no "connected".
    const devIp = p.dev!.bridge.status!.self.ips.find((ip) => ip.startsWith("100."))!;
    const before = node.lines.length;
    const forged = forgedProxyHello(devIp);
    const out = t.tailnet.net.exec(node.host.name, process.execPath, ["-e", forged]);
    assert.doesNotMatch(out, /PONG/, "the forged connection got nowhere");
    await new Promise((r) => setTimeout(r, 1000));
    const since = node.lines.slice(before);
    assert.ok(
      since.some((l) => l.msg === "auth decision" && l.ip === devIp),
      "the callout was asked (its answer is logged as a decision only)",
    );
    assert.ok(!since.some((l) => l.msg === "connected"), "no 'connected' line for the forged connection");
  });

  test("a second CONNECT cannot rename the connection: the bridge rewrites every CONNECT", async () => {
    const s = tcpConnect(p.alice!.port, "127.0.0.1");
    t.onCleanup(() => s.destroy());
    let got = "";
    s.on("data", (d) => (got += d.toString()));
    const until = (re: RegExp, what: string) => eventually(() => re.test(got), 10_000, what);
    await until(/^INFO /, "INFO");
    s.write('CONNECT {"verbose":false,"name":"alice-raw","protocol":1}\r\nPING\r\n');
    await until(/PONG\r\n/, "first PONG");
    // The forged identity, and a PUB whose payload looks like a CONNECT: only real CONNECT lines are rewritten.
    const fake = 'CONNECT {"name":"evil"}\r\n';
    s.write(`CONNECT {"name":"bob (bob-laptop) payroll-app"}\r\nPUB alice.raw ${fake.length}\r\n${fake}\r\nPING\r\n`);
    await until(/PONG\r\n[\s\S]*PONG\r\n/, "second PONG");
    const connz = await t.tailnet.monitor("nats-1", "/connz?limit=1000");
    const names = connz.connections.map((x: { name?: string }) => x.name ?? "");
    assert.ok(
      names.includes("alice (alice-laptop) bob (bob-laptop) payroll-app"),
      `renamed under alice's identity: ${JSON.stringify(names)}`,
    );
    assert.ok(!names.includes("bob (bob-laptop) payroll-app"), "the forged name never shows bare");
  });

  test("removing a grant cuts the live connection and its reconnect is denied", async () => {
    const alice = await natsConnect(p.alice!.url, { name: "alice-doomed", maxReconnectAttempts: 3, reconnectTimeWait: 500 });
    let disconnected = false;
    void (async () => {
      for await (const s of alice.status()) if (s.type === "disconnect") disconnected = true;
    })();
    await alice.flush();
    await t.tailnet.headscale.setPolicy(policy(false));
    await eventually(() => disconnected, 30_000, "alice disconnected after losing her grant");
    await alice.closed();
    await assert.rejects(natsConnect(p.alice!.url, { name: "alice-again", reconnect: false }), /no grant .* for alice/);
    const node = t.tailnet.nodes.get("nats-1")!;
    assert.ok(node.lines.some((l) => l.msg === "policy changed: disconnecting to re-authorize" && String(l.who).startsWith("alice")));
  });
});

/**
 * A script for a local process on the node's host: dial nats-server's
 * loopback client port with a PROXY v2 header claiming a tailnet address,
 * then CONNECT and PING. Prints whatever the server answered.
 */
function forgedProxyHello(claimedIp: string): string {
  return `
const net = require("net");
const sig = Buffer.from([0x0d,0x0a,0x0d,0x0a,0x00,0x0d,0x0a,0x51,0x55,0x49,0x54,0x0a]);
const ip = ${JSON.stringify(claimedIp)}.split(".").map(Number);
const hdr = Buffer.concat([sig, Buffer.from([0x21, 0x11, 0, 12]), Buffer.from(ip), Buffer.from([127,0,0,1]), Buffer.from([0x9c,0x40, 0x10,0x7e])]);
const s = net.connect(14222, "127.0.0.1", () => s.write(hdr));
let out = "";
s.on("data", (d) => { out += d; if (out.includes("INFO") && !s.sent) { s.sent = true; s.write('CONNECT {"verbose":false,"name":"forged"}\\r\\nPING\\r\\n'); } });
s.on("close", () => { process.stdout.write(out); });
s.on("error", () => {});
setTimeout(() => s.destroy(), 3000);
`;
}
