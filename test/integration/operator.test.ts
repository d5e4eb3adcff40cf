// Auth mode operator: NATS decentralized JWT auth. Credentials written by
// `nats-tsnet auth` (strict signing keys, operator identity key moved away),
// an account pushed through one node and used through another (full
// resolver), denied subjects denied, proxy_required honoured.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, renameSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { credsAuthenticator } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { CLI, type LabProxy } from "../../localtailnet/mod.ts";
import { type TestTailnet, eventually, natsConnect, startOperatorPair, startTestTailnet } from "./helpers.ts";

const enc = new TextEncoder();

function cli(args: string[]): string {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8" });
  assert.equal(r.status, 0, `nats-tsnet ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

describe("auth mode operator", () => {
  let t: TestTailnet;
  let store: string;
  let toNats2: LabProxy;

  before(async () => {
    t = await startTestTailnet("operator");
    store = join(t.dir, "auth");
    cli(["auth", "init", "--dir", store, "--operator", "acme-ops"]);
    // Strict signing keys (the default): the operator's identity key is not needed on the host.
    mkdirSync(join(t.dir, "offline"));
    renameSync(join(store, "operator.nk"), join(t.dir, "offline", "operator.nk"));
    cli(["auth", "account", "add", "ACME", "--dir", store, "--max-conns", "50", "--js-disk", String(64 * 1024 * 1024)]);
    toNats2 = await startOperatorPair(t, store);
  });

  after(async () => {
    await t?.cleanup();
  });

  test("creds written by nats-tsnet auth work through another node after a push through nats-1", async () => {
    const credsPath = cli([
      "auth",
      "user",
      "add",
      "alice",
      "--account",
      "ACME",
      "--dir",
      store,
      "--pub-allow",
      "orders.>,_INBOX.>,$JS.API.>",
      "--sub-allow",
      "orders.>,_INBOX.>,secret.>",
      "--sub-deny",
      "secret.>",
    ]).trim();
    assert.match(readFileSync(credsPath, "utf8"), /BEGIN NATS USER JWT[\s\S]*BEGIN USER NKEY SEED/);
    // Before the push nobody knows ACME.
    await assert.rejects(natsConnect(toNats2.url, { authenticator: credsAuthenticator(readFileSync(credsPath)), reconnect: false }));
    const node1 = t.tailnet.nodes.get("nats-1")!;
    const out = execFileSync(
      "ip",
      ["netns", "exec", node1.host.netns, process.execPath, CLI, "auth", "push", "--config", node1.configPath],
      { encoding: "utf8" },
    );
    assert.match(out, /ACME: /);
    const alice = await eventually(
      () => natsConnect(toNats2.url, { authenticator: credsAuthenticator(readFileSync(credsPath)), name: "alice" }),
      20_000,
      "alice connects through nats-2",
    );
    t.onCleanup(() => alice.close());
    const sub = alice.subscribe("orders.>", { max: 1 });
    alice.publish("orders.1", enc.encode("one"));
    for await (const m of sub) assert.equal(m.subject, "orders.1");
    // Account limits from the JWT apply (JetStream storage granted to ACME).
    const info = await (await jetstreamManager(alice)).getAccountInfo();
    assert.equal(info.limits.max_storage, 64 * 1024 * 1024);
    // The denied subject is denied.
    const errs: string[] = [];
    void (async () => {
      for await (const s of alice.status()) if (s.type === "error") errs.push(String((s as { error: Error }).error?.message));
    })();
    alice.subscribe("secret.plans");
    await eventually(
      () => errs.some((e) => /Permissions Violation for Subscription to "secret\.plans"/i.test(e)),
      5000,
      "subscription refused",
    );
  });

  test("creds alone are not enough on loopback: proxy_required", () => {
    const credsPath = join(store, "accounts", "ACME", "users", "alice.creds");
    const node1 = t.tailnet.nodes.get("nats-1")!;
    const script = `import("@nats-io/transport-node").then(async ({connect, credsAuthenticator}) => {
      try { await connect({ servers: "127.0.0.1:14222", authenticator: credsAuthenticator(require("fs").readFileSync(${JSON.stringify(credsPath)})), reconnect: false }); console.log("CONNECTED"); }
      catch (e) { console.log("REFUSED " + e.message); }
    })`;
    const out = execFileSync("ip", ["netns", "exec", node1.host.netns, process.execPath, "-e", script], {
      encoding: "utf8",
      cwd: process.cwd(),
    });
    assert.match(out, /^REFUSED /);
  });
});
