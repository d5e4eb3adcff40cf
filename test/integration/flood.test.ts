// Issue 15, item 2: one device cannot keep everyone else's connections out.
// A device with no grant keeps 80 connection attempts in flight on the
// node's client port while ten other users connect; a granted device that
// goes past its per-device limit is refused while the others carry on. The
// node runs auth mode tailnet with small nats.device_limits, so that the
// limits show within a test.
import assert from "node:assert/strict";
import { connect as tcpConnect } from "node:net";
import { after, before, describe, test } from "node:test";
import type { NatsConnection } from "@nats-io/transport-node";
import { CAPABILITY, CLUSTER_TAG, defaultPolicy, type LabProxy } from "../../localtailnet/mod.ts";
import { eventually, logTail, natsConnect, startTestTailnet, type TestTailnet } from "./helpers.ts";

const USERS = Array.from({ length: 10 }, (_, i) => `user${i + 1}`);
const FLOOD = "carol"; // no grant anywhere
const IN_FLIGHT = 80;
const LIMITS = { max_connections: 4, connect_rate: 5, connect_burst: 10 };

function policy(): Record<string, unknown> {
  const base = defaultPolicy() as { acls: unknown[] };
  return {
    tagOwners: { [CLUSTER_TAG]: ["dev@"] },
    acls: base.acls,
    grants: [
      { src: USERS.map((u) => `${u}@`), dst: [CLUSTER_TAG], app: { [CAPABILITY]: [{ pub: { allow: [">"] }, sub: { allow: [">"] } }] } },
    ],
  };
}

type Outcome = "refused-early" | "no-grant" | "no-reason" | "auth-timeout" | "admitted" | "other";

/**
 * One raw NATS connection attempt, as a flooding client makes it: read the
 * first line, answer an INFO with CONNECT and PING, and see how it ends.
 */
function attempt(port: number, name: string): Promise<Outcome> {
  return new Promise((resolve) => {
    const s = tcpConnect(port, "127.0.0.1");
    let got = "";
    let sent = false;
    let settled = false;
    const done = (o: Outcome) => {
      if (settled) return;
      settled = true;
      s.destroy();
      resolve(o);
    };
    s.on("data", (d) => {
      got += d.toString();
      if (got.startsWith("-ERR 'Connection Refused")) return done("refused-early");
      if (/-ERR 'Authorization Violation: no grant/.test(got)) return done("no-grant");
      // nats-server gave up waiting for its auth callout: a starved callout.
      if (/-ERR 'Authentication Timeout'/.test(got)) return done("auth-timeout");
      if (/-ERR 'Authorization Violation'/.test(got)) return done("no-reason");
      if (/\r\n(PONG|\+OK)\r\n/.test(got)) return done("admitted");
      if (!sent && got.startsWith("INFO ") && got.includes("\r\n")) {
        sent = true;
        s.write(`CONNECT {"verbose":false,"name":${JSON.stringify(name)}}\r\nPING\r\n`);
      }
    });
    s.on("error", () => done("other"));
    s.on("close", () => done("other"));
    s.setTimeout(30_000, () => done("other"));
  });
}

/** Keeps n attempts in flight until stopped; counts how they ended. */
function flood(port: number, n: number) {
  const tally: Record<Outcome, number> = { "refused-early": 0, "no-grant": 0, "no-reason": 0, "auth-timeout": 0, admitted: 0, other: 0 };
  let stopped = false;
  let total = 0;
  const loops = Array.from({ length: n }, async () => {
    while (!stopped) {
      tally[await attempt(port, "flood")]++;
      total++;
    }
  });
  return {
    tally,
    attempts: () => total,
    stop: async () => {
      stopped = true;
      await Promise.all(loops);
    },
  };
}

/** The node's log lines (its own and its bridge's) about one user's device. */
function linesAbout(t: TestTailnet, user: string, msg: string): Array<Record<string, unknown>> {
  return t.tailnet.nodes.get("nats-1")!.lines.filter((l) => l.msg === msg && String(l.who).startsWith(`${user} (`));
}

describe("one device cannot keep the others out", () => {
  let t: TestTailnet;
  const p: Record<string, LabProxy> = {};
  const open: NatsConnection[] = [];

  before(async () => {
    t = await startTestTailnet("flood");
    for (const u of [...USERS, FLOOD]) await t.tailnet.headscale.ensureUser(u);
    await t.tailnet.headscale.setPolicy(policy());
    await t.tailnet.startNode("nats-1", { config: { nats: { standalone: true, device_limits: LIMITS } } });
    const proxies = await Promise.all([...USERS, FLOOD].map((u) => t.tailnet.startProxy(`${u}-laptop`, { to: "nats-1:4222", user: u })));
    for (const [i, u] of [...USERS, FLOOD].entries()) p[u] = proxies[i]!;
  });

  after(async () => {
    await Promise.allSettled(open.map((nc) => nc.close()));
    await t?.cleanup();
  });

  test(`a device with no grant keeps ${IN_FLIGHT} attempts in flight; ten other users connect`, async (ctx) => {
    const f = flood(p[FLOOD]!.port, IN_FLIGHT);
    try {
      await eventually(() => f.attempts() >= IN_FLIGHT, 60_000, "the flood under way");
      // Each user connects once, while the flood goes on: no retry would hide a starved one.
      const users = await Promise.allSettled(
        USERS.map(async (u) => {
          const nc = await natsConnect(p[u]!.url, { name: `${u}-app`, timeout: 20_000, reconnect: false });
          open.push(nc);
          await nc.flush();
          return nc;
        }),
      );
      const failed = users.flatMap((r, i) => (r.status === "rejected" ? [`${USERS[i]}: ${(r.reason as Error).message}`] : []));
      assert.deepEqual(failed, [], `every user got in during the flood\n${logTail(t)}`);
      // Enough attempts that an unbounded log would show.
      await eventually(() => f.attempts() >= 5 * IN_FLIGHT, 120_000, "the flood's attempts");
    } finally {
      await f.stop();
    }
    ctx.diagnostic(`flood: ${f.attempts()} attempts, ${JSON.stringify(f.tally)}`);
    assert.equal(f.tally.admitted, 0, "the device with no grant never got in");
    assert.equal(f.tally["auth-timeout"], 0, "no attempt waited on the callout until nats-server gave up");
    assert.equal(f.tally["no-reason"], 0, "every refused attempt is told why, however many are in flight");
    assert.ok(f.tally["refused-early"] > 0, `some attempts refused at the device's limits: ${JSON.stringify(f.tally)}`);
    assert.ok(f.tally["no-grant"] > 0, `those within the limits told there is no grant: ${JSON.stringify(f.tally)}`);

    // The bridge refused the device: the auth callout was never asked about it.
    const bridgeDenials = linesAbout(t, FLOOD, "auth decision").filter((l) => l.by === "bridge");
    const calloutDecisions = linesAbout(t, FLOOD, "auth decision").filter((l) => l.by !== "bridge");
    assert.ok(bridgeDenials.length > 0 && bridgeDenials.every((l) => l.code === "ERR_NO_GRANT" && l.decision === "deny"));
    assert.deepEqual(calloutDecisions, [], "no callout decision (and no signature) for the device with no grant");
    const limited = linesAbout(t, FLOOD, "connection refused");
    assert.ok(
      limited.some((l) => l.code === "ERR_DEVICE_RATE" || l.code === "ERR_DEVICE_CONNECTIONS"),
      "the limit refusals are logged with their code",
    );
    // A flood does not flood the log: refusals are logged at a bounded pace.
    const lines = bridgeDenials.length + limited.length;
    ctx.diagnostic(`flood: ${lines} refusal lines in the node's log`);
    assert.ok(lines * 10 < f.attempts(), `${lines} log lines for ${f.attempts()} attempts`);
    // Every user was decided by the callout as usual.
    for (const u of USERS)
      assert.ok(
        linesAbout(t, u, "auth decision").some((l) => l.decision === "allow"),
        `${u} allowed`,
      );
  });

  test("a granted device past its connection limit is refused; the others are unaffected", async () => {
    const [heavy, other] = [USERS[0]!, USERS[1]!];
    // The first test's connections are done with; wait until the node has let go of them.
    await Promise.allSettled(open.splice(0).map((nc) => nc.close()));
    const mine: NatsConnection[] = [];
    t.onCleanup(() => Promise.allSettled(mine.map((nc) => nc.close())));
    await eventually(
      async () => {
        const nc = await natsConnect(p[heavy]!.url, { name: `${heavy}-probe`, timeout: 10_000, reconnect: false });
        await nc.close();
        return true;
      },
      60_000,
      `${heavy} can connect again`,
    );
    // Up to its limit: each connection gets in.
    await eventually(
      async () => {
        if (mine.length >= LIMITS.max_connections) return true;
        mine.push(await natsConnect(p[heavy]!.url, { name: `${heavy}-${mine.length}`, timeout: 10_000, reconnect: false }));
        return mine.length >= LIMITS.max_connections;
      },
      60_000,
      `${heavy} opens ${LIMITS.max_connections} connections`,
    );
    // One more: refused by the bridge, before nats-server sees it.
    const before = linesAbout(t, heavy, "connection refused").length;
    assert.equal(await attempt(p[heavy]!.port, `${heavy}-extra`), "refused-early");
    await assert.rejects(natsConnect(p[heavy]!.url, { name: `${heavy}-extra`, timeout: 10_000, reconnect: false }));
    await eventually(
      () => linesAbout(t, heavy, "connection refused").some((l) => l.code === "ERR_DEVICE_CONNECTIONS"),
      10_000,
      "the refusal logged with its code",
    );
    assert.ok(linesAbout(t, heavy, "connection refused").length > before);

    // Meanwhile another user connects, and the device's own connections still work.
    const nc = await natsConnect(p[other]!.url, { name: `${other}-meanwhile`, timeout: 10_000, reconnect: false });
    mine.push(nc);
    assert.ok((await nc.rtt()) >= 0);
    for (const c of mine) assert.ok((await c.rtt()) >= 0);

    // Closing one of the device's connections gives its slot back.
    await mine.shift()!.close();
    const again = await eventually(
      () => natsConnect(p[heavy]!.url, { name: `${heavy}-again`, timeout: 10_000, reconnect: false }),
      30_000,
      `${heavy} connects again after closing one`,
    );
    mine.push(again);
    assert.ok((await again.rtt()) >= 0);
  });
});
