// One user cannot take all of JetStream, nor all of nats-server. A node
// whose JetStream budget is small (8 MB of memory, 8 MB of files) split
// between two accounts, on a real local tailnet:
//   - a stream that asks for the server's whole budget is refused, a share
//     of it is not, and another account still gets its own share;
//   - a stream that fills up stops at its account's budget, with the client
//     told, and the other account goes on storing;
//   - each identity holds the default number of subscriptions and the
//     default largest message, enforced by the bridge, unless its grant
//     raises them.
import assert from "node:assert/strict";
import { connect as tcpConnect } from "node:net";
import { after, before, describe, test } from "node:test";
import type { NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { CAPABILITY, CLUSTER_TAG, defaultPolicy, type LabProxy } from "../../localtailnet/mod.ts";
import { inboxPrefix } from "../../controlplane/src/mod.ts";
import { eventually, natsConnect, startTestTailnet, type TestTailnet } from "./helpers.ts";

const KB = 1024;
const MB = 1024 * KB;
/** nats.jetstream: the server's whole budget, per kind of storage. */
const SERVER_BUDGET = 8 * MB;
/** Two accounts, no budget of their own: each an even share. */
const ACCOUNT_BUDGET = SERVER_BUDGET / 2;
const DEFAULT_SUBS = 10;
const DEFAULT_PAYLOAD = 2 * KB;
const RAISED = { subs: 40, payload: 64 * KB };
// JetStream API error codes (nats-server's err_code).
const JS_INSUFFICIENT_STORAGE = 10047;
const JS_INSUFFICIENT_MEMORY = 10028;
const JS_ACCOUNT_RESOURCES_EXCEEDED = 10002;
const JS_MAX_STREAMS = 10027;

function policy(): Record<string, unknown> {
  const base = defaultPolicy() as { acls: unknown[] };
  const grant = (src: string, cap: Record<string, unknown>) => ({ src: [src], dst: [CLUSTER_TAG], app: { [CAPABILITY]: [cap] } });
  return {
    tagOwners: { [CLUSTER_TAG]: ["dev@"] },
    acls: base.acls,
    grants: [
      // alice: APP, the default limits.
      grant("alice@", {
        pub: { allow: ["alice.>"] },
        sub: { allow: ["alice.>"] },
        jetstream: { streams: ["WHOLE", "SHARE", "MORE"], manage: true },
      }),
      // dave: APP, with limits raised by his grant.
      grant("dave@", {
        pub: { allow: ["dave.>"] },
        sub: { allow: ["dave.>"] },
        jetstream: { streams: ["FILL"], manage: true },
        limits: RAISED,
      }),
      // bob: all of account OPS.
      grant("bob@", { pub: { allow: [">"] }, sub: { allow: [">"] }, account: "OPS", limits: { payload: RAISED.payload } }),
    ],
  };
}

/** Collects the async errors a connection reports. */
function errorsOf(nc: NatsConnection): string[] {
  const errs: string[] = [];
  void (async () => {
    for await (const s of nc.status()) if (s.type === "error") errs.push(String((s as { error: Error }).error?.message ?? s));
  })();
  return errs;
}

/** The JetStream API error code a rejected promise carries. */
async function jsCode(p: Promise<unknown>): Promise<number | undefined> {
  try {
    await p;
    return undefined;
  } catch (e) {
    return (e as { code?: number }).code;
  }
}

describe("budgets and limits: no identity takes all of JetStream or of nats-server", () => {
  let t: TestTailnet;
  const p: Record<string, LabProxy> = {};
  const connect = async (who: "alice" | "dave" | "bob", name: string, opts = {}) => {
    const nc = await eventually(
      () => natsConnect(p[who]!.url, { name, inboxPrefix: inboxPrefix({ user: who, tags: [] }), ...opts }),
      20_000,
      `${who} connects`,
    );
    t.onCleanup(() => nc.close());
    return nc;
  };
  const manager = (nc: NatsConnection): Promise<JetStreamManager> => jetstreamManager(nc, { timeout: 10_000 });

  before(async () => {
    t = await startTestTailnet("budgets");
    for (const u of ["alice", "dave", "bob"]) await t.tailnet.headscale.ensureUser(u);
    await t.tailnet.headscale.setPolicy(policy());
    await t.tailnet.startNode("nats-1", {
      config: {
        nats: { standalone: true, jetstream: { max_memory: SERVER_BUDGET, max_file: SERVER_BUDGET } },
        auth: {
          accounts: ["APP", "OPS"],
          limits: { subs: DEFAULT_SUBS, payload: DEFAULT_PAYLOAD },
          account_overrides: { OPS: { max_streams: 3 } },
        },
      },
    });
    const to = "nats-1:4222";
    [p.alice, p.dave, p.bob] = await Promise.all([
      t.tailnet.startProxy("alice-laptop", { to, user: "alice" }),
      t.tailnet.startProxy("dave-laptop", { to, user: "dave" }),
      t.tailnet.startProxy("bob-laptop", { to, user: "bob" }),
    ]);
  });

  after(async () => {
    await t?.cleanup();
  });

  test("a stream that reserves the server's whole budget is refused; a share is not, and the other account keeps its own", async () => {
    const alice = await manager(await connect("alice", "alice-reserve"));
    const bob = await manager(await connect("bob", "bob-reserve"));
    const stream = (name: string, subject: string, max_bytes: number, storage: "file" | "memory" = "file") =>
      ({ name, subjects: [subject], max_bytes, storage }) as Parameters<JetStreamManager["streams"]["add"]>[0];

    assert.equal(await jsCode(alice.streams.add(stream("WHOLE", "alice.whole", SERVER_BUDGET))), JS_INSUFFICIENT_STORAGE);
    assert.equal(await jsCode(alice.streams.add(stream("WHOLE", "alice.whole", SERVER_BUDGET, "memory"))), JS_INSUFFICIENT_MEMORY);
    // Her account's whole share: granted, and then nothing more for APP.
    await alice.streams.add(stream("SHARE", "alice.share", ACCOUNT_BUDGET));
    assert.equal(await jsCode(alice.streams.add(stream("MORE", "alice.more", 1))), JS_INSUFFICIENT_STORAGE);
    // The other account reserves its own share all the same.
    await bob.streams.add(stream("OPS1", "ops.one", ACCOUNT_BUDGET));
    await bob.streams.delete("OPS1");
    await alice.streams.delete("SHARE");
  });

  test("a stream that fills up stops at its account's budget, the client is told, and the other account still stores", async () => {
    const daveNc = await connect("dave", "dave-fill");
    const dave = await manager(daveNc);
    await dave.streams.add({ name: "FILL", subjects: ["dave.fill"] });
    const js = jetstream(daveNc, { timeout: 10_000 });
    const chunk = new Uint8Array(32 * KB).fill(7);
    let refused: number | undefined;
    // At most what the whole server could hold, plus slack: without a budget this would fill the server.
    for (let i = 0; i < (2 * SERVER_BUDGET) / chunk.length && refused === undefined; i++) {
      refused = await jsCode(js.publish("dave.fill", chunk));
    }
    assert.equal(refused, JS_ACCOUNT_RESOURCES_EXCEEDED, "the publish over the budget is refused with the account's error");
    const stored = (await dave.streams.info("FILL")).state.bytes;
    assert.ok(stored <= ACCOUNT_BUDGET, `stored ${stored} bytes, over the account's ${ACCOUNT_BUDGET}`);
    assert.ok(stored >= ACCOUNT_BUDGET - 2 * chunk.length, `stored only ${stored} bytes: the fill stopped early`);

    // APP is full; OPS is not.
    const bobNc = await connect("bob", "bob-store");
    const bob = await manager(bobNc);
    await bob.streams.add({ name: "OPS2", subjects: ["ops.two"], max_bytes: ACCOUNT_BUDGET / 2 });
    await jetstream(bobNc, { timeout: 10_000 }).publish("ops.two", chunk);
    assert.equal((await bob.streams.info("OPS2")).state.messages, 1);
    await dave.streams.delete("FILL");
  });

  test("an account holds at most its max_streams", async () => {
    const bob = await manager(await connect("bob", "bob-streams"));
    const have = (await bob.streams.names().next()).length;
    for (let i = have; i < 3; i++) await bob.streams.add({ name: `CAP${i}`, subjects: [`ops.cap.${i}`], max_bytes: 64 * KB });
    assert.equal(await jsCode(bob.streams.add({ name: "CAPX", subjects: ["ops.cap.x"], max_bytes: 64 * KB })), JS_MAX_STREAMS);
  });

  test("an identity holds the default number of subscriptions; one more is refused and the connection stays", async () => {
    const alice = await connect("alice", "alice-subs");
    const errs = errorsOf(alice);
    const first = alice.subscribe("alice.sub.0");
    for (let i = 1; i < DEFAULT_SUBS; i++) alice.subscribe(`alice.sub.${i}`);
    await alice.flush();
    assert.deepEqual(errs, [], "the default number of subscriptions is granted");
    alice.subscribe("alice.sub.over");
    await eventually(() => errs.some((e) => /maximum subscriptions exceeded/i.test(e)), 10_000, "alice told");
    assert.ok((await alice.rtt()) >= 0, "the connection stays");
    // The refused SUB holds nothing, and an UNSUB frees a place.
    const refusals = () => errs.filter((e) => /maximum subscriptions exceeded/i.test(e)).length;
    first.unsubscribe();
    alice.subscribe("alice.sub.again");
    await alice.flush();
    assert.equal(refusals(), 1, "the freed place is taken");
    alice.subscribe("alice.sub.over.again");
    await eventually(() => refusals() === 2, 10_000, "the next one is refused again");
  });

  test("a grant raises the subscriptions of its identity", async () => {
    const dave = await connect("dave", "dave-subs");
    const errs = errorsOf(dave);
    for (let i = 0; i < RAISED.subs - 1; i++) dave.subscribe(`dave.sub.${i}`);
    await dave.flush();
    assert.ok((await dave.rtt()) >= 0);
    assert.deepEqual(errs, [], `dave holds ${RAISED.subs - 1} subscriptions, above the default ${DEFAULT_SUBS}`);
  });

  test("an identity's largest message is the default: the client is told, and a larger one ends the connection with nats-server's error", async () => {
    // nats-server tells a client its connection's max_payload in the INFO after CONNECT; the bridge lowers it to the identity's.
    const alice = await connect("alice", "alice-payload");
    await eventually(() => alice.info?.max_payload === DEFAULT_PAYLOAD, 10_000, "alice's client told her largest message");
    alice.publish("alice.small", new Uint8Array(DEFAULT_PAYLOAD));
    await alice.flush();
    assert.throws(() => alice.publish("alice.big", new Uint8Array(DEFAULT_PAYLOAD + 1)), /max_payload/);
    // A client that does not listen is stopped by the bridge, as nats-server would stop it.
    const { text, closed } = await rawPublish(p.alice!.port, "alice.big", DEFAULT_PAYLOAD + 1);
    assert.match(text, /-ERR 'Maximum Payload Violation'\r\n$/);
    assert.ok(closed, "the connection ends");
    const node = t.tailnet.nodes.get("nats-1")!;
    await eventually(
      () => node.lines.some((l) => l.msg === "client over its quota" && l.code === "ERR_QUOTA_PAYLOAD"),
      10_000,
      "the bridge logs the refusal",
    );
    // A grant raises it: dave publishes far above the default.
    const dave = await connect("dave", "dave-payload");
    const daveErrs = errorsOf(dave);
    await eventually(() => dave.info?.max_payload === RAISED.payload, 10_000, "dave's client told his largest message");
    dave.publish("dave.big", new Uint8Array(RAISED.payload));
    await dave.flush();
    assert.ok((await dave.rtt()) >= 0);
    assert.deepEqual(daveErrs, []);
  });
});

/**
 * A bare NATS client on a proxy's port: CONNECT, PING, and once PONG came
 * back one PUB of size bytes. What the server side sent, and whether it
 * closed the connection.
 */
function rawPublish(port: number, subject: string, size: number): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve) => {
    const s = tcpConnect(port, "127.0.0.1");
    let text = "";
    let stage: "info" | "pong" | "published" = "info";
    s.on("data", (d) => {
      text += d.toString();
      if (stage === "info" && text.includes("\r\n")) {
        stage = "pong";
        s.write('CONNECT {"verbose":false,"protocol":1,"name":"raw"}\r\nPING\r\n');
      } else if (stage === "pong" && text.includes("PONG\r\n")) {
        stage = "published";
        s.write(`PUB ${subject} ${size}\r\n${"x".repeat(size)}\r\nPING\r\n`);
      }
    });
    s.on("close", () => resolve({ text, closed: true }));
    s.on("error", () => {});
    s.setTimeout(20_000, () => {
      s.destroy();
      resolve({ text, closed: false });
    });
  });
}
