// Local faces: a node serves its client port on a docker-like bridge of its
// own host too, for containers that are not tailnet devices. Each node's
// host gets a bridge docker0 (172.17.0.1/16) and a "container": a network
// namespace on that bridge (172.17.0.2). A rule naming the face admits it;
// without one it is refused; a process on the node's own host is refused.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { REPO_ROOT } from "../../controlplane/src/mod.ts";
import parsePrometheus from "parse-prometheus-text-format";
import { eventually, startTestTailnet, type TestTailnet } from "./helpers.ts";

const FACE = { name: "docker", listen: "172.17.0.1:4222" };
const INBOX = "_INBOX_local_3adocker"; // the face's own inbox prefix (policy.ts inboxPrefix)

// A nats.js client: a request-reply on ctr.echo, then a subscription outside
// its rights; prints what happened as JSON.
const APP = `
const { connect } = require("@nats-io/transport-node");
const out = {};
setTimeout(() => { out.stuck = true; console.log(JSON.stringify(out)); process.exit(0); }, 20000);
(async () => {
  try {
    const nc = await connect({ servers: process.argv[1], name: "ctr-app", timeout: 10000, maxReconnectAttempts: 0, ignoreClusterUpdates: true, inboxPrefix: process.argv[2] });
    out.connected = true;
    const sub = nc.subscribe("ctr.echo", { max: 1 });
    (async () => { for await (const m of sub) m.respond(m.data); })().catch(() => {});
    out.echo = (await nc.request("ctr.echo", "from a container", { timeout: 5000 })).string();
    const other = nc.subscribe("other.>");
    out.other = String(await Promise.race([other.closed, new Promise((r) => setTimeout(() => r("open"), 3000))]));
    await nc.close();
  } catch (e) { out.error = String(e.message); }
  console.log(JSON.stringify(out));
  process.exit(0);
})();
`;

describe("local faces", () => {
  let t: TestTailnet;
  const containers = new Map<string, string>();

  /** docker0 on a node's host, and a container namespace on it. */
  function dockerBridge(node: string): void {
    const host = t.tailnet.net.hosts.get(node) ?? t.tailnet.net.addHost(node);
    const ctr = `${host.netns}-ctr`;
    const sh = (ns: string, ...args: string[]) => execFileSync("ip", ["netns", "exec", ns, "ip", ...args]);
    execFileSync("ip", ["netns", "add", ctr]);
    containers.set(node, ctr);
    sh(host.netns, "link", "add", "docker0", "type", "bridge");
    sh(host.netns, "addr", "add", "172.17.0.1/16", "dev", "docker0");
    sh(host.netns, "link", "set", "docker0", "up");
    sh(host.netns, "link", "add", "veth-ctr", "type", "veth", "peer", "name", "eth0", "netns", ctr);
    sh(host.netns, "link", "set", "veth-ctr", "master", "docker0", "up");
    sh(ctr, "addr", "add", "172.17.0.2/16", "dev", "eth0");
    sh(ctr, "link", "set", "eth0", "up");
    sh(ctr, "link", "set", "lo", "up");
  }

  /** Runs the app in a namespace against the face; what it reports. */
  function app(ns: string): { echo?: string; other?: string; error?: string } {
    const out = execFileSync("ip", ["netns", "exec", ns, process.execPath, "-e", APP, `nats://${FACE.listen}`, INBOX], {
      encoding: "utf8",
      cwd: REPO_ROOT,
      timeout: 30_000,
    });
    return JSON.parse(out.trim().split("\n").pop()!);
  }

  before(async () => {
    t = await startTestTailnet("local-faces");
    t.onCleanup(() => {
      for (const ns of containers.values()) execFileSync("ip", ["netns", "del", ns]);
    });
    dockerBridge("nats-1");
    dockerBridge("nats-2");
    // resp: the app answers its own requests, whose reply subjects are in its inbox.
    const rule = {
      faces: ["docker"],
      sources: ["172.17.0.0/16"],
      pub: { allow: ["ctr.>"] },
      sub: { allow: ["ctr.>"] },
      resp: { max: 1, ttl: "10s" },
    };
    await Promise.all([
      t.tailnet.startNode("nats-1", { config: { nats: { standalone: true, local_faces: [FACE] }, auth: { rules: [rule] } } }),
      t.tailnet.startNode("nats-2", { config: { nats: { standalone: true, local_faces: [FACE] } } }),
    ]);
  });

  after(async () => {
    await t?.cleanup();
  });

  test("a container reaches the face and gets what the rule naming it gives, no more", async () => {
    const r = await eventually(
      () => {
        const r = app(containers.get("nats-1")!);
        return r.echo || r.error?.includes("Authorization") ? r : undefined;
      },
      20_000,
      "the container's app",
    );
    assert.equal(r.echo, "from a container", JSON.stringify(r));
    assert.match(String(r.other), /permissions violation/i, "other.> is not the rule's");
    const lines = t.tailnet.nodes.get("nats-1")!.lines;
    await eventually(
      () => lines.some((l) => l.msg === "auth decision" && l.decision === "allow" && l.who === "local:docker (172.17.0.2)"),
      10_000,
      "the callout names the face and the caller",
    );
    // Said at start, loudly: this node listens on a host address.
    assert.ok(
      lines.some((l) => Number(l.level) === 40 && l.face === "docker" && String(l.msg).includes("not tailnet devices")),
      `the start-up warning: ${JSON.stringify(lines.filter((l) => l.face))}`,
    );
  });

  test("without a rule naming the face, the container is refused and reads why", () => {
    const r = app(containers.get("nats-2")!);
    assert.match(String(r.error), /Authorization Violation/);
    assert.match(String(r.error), /no rule admits local:docker \(172\.17\.0\.2\)/);
  });

  test("a process on the node's own host is refused on the face (it is no way around loopback), and /metrics counts it", async () => {
    const refusals = async () => {
      const families = parsePrometheus(await t.tailnet.loopbackGet("nats-1", "/metrics", 18223));
      const f = families.find((x) => x.name === "nats_tsnet_bridge_connections_refused_total");
      return Number(f?.metrics.find((m) => m.labels?.face === "local:docker" && m.labels?.reason === "ERR_LOCAL_FROM_HOST")?.value ?? 0);
    };
    const before = await refusals();
    const r = app(t.tailnet.net.hosts.get("nats-1")!.netns);
    assert.ok(!r.echo, JSON.stringify(r));
    assert.match(String(r.error), /./);
    await eventually(
      () => t.tailnet.nodes.get("nats-1")!.lines.some((l) => l.code === "ERR_LOCAL_FROM_HOST"),
      10_000,
      "ERR_LOCAL_FROM_HOST logged",
    );
    // Counted whether or not the line was logged; the scrape is a real Prometheus parse.
    await eventually(async () => (await refusals()) > before, 10_000, "the refusal counted in /metrics");
  });
});
