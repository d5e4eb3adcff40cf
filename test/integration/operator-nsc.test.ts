// Auth mode operator with an operator made by the real nsc the way the NATS
// documentation recommends it: operator and account signing keys, strict
// signing-key usage, a role (scoped key). Imported with `auth import-nsc`,
// then used through the tailnet: the SYS admin (push, peer list), users of
// nsc and of nats-tsnet, a role's template, revocation cutting a live
// connection on another node, expiry, and a signing-key rotation.
//
// nsc never touches the network here: it runs in an empty network namespace
// (unshare -n), with its config, data and key directories in the test's
// temp dir, and is never asked to push or pull. (Built from source, nsc is
// version 0.0.0-dev and skips its update check; only `nsc update`,
// push/pull and the pub/sub tools would reach out.)
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { decode } from "@nats-io/jwt";
import { AuthorizationError, UserAuthenticationExpiredError, credsAuthenticator, type NatsConnection } from "@nats-io/transport-node";
import { accountView, binaryPath } from "../../controlplane/src/mod.ts";
import { CLI, type LabProxy } from "../../localtailnet/mod.ts";
import { type TestTailnet, eventually, logTail, natsConnect, startOperatorPair, startTestTailnet } from "./helpers.ts";

const enc = new TextEncoder();

/** nsc, with every directory it uses under dir and no network at all. */
function nscRunner(dir: string): (...args: string[]) => string {
  const env = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: join(dir, "home"),
    NSC_HOME: join(dir, "config"),
    NKEYS_PATH: join(dir, "nkeys"),
    XDG_CONFIG_HOME: join(dir, "xdg-config"),
    XDG_DATA_HOME: join(dir, "xdg-data"),
    NSC_NO_GIT_IGNORE: "1",
  };
  mkdirSync(env.HOME, { recursive: true });
  const nsc = binaryPath("nsc");
  return (...args) => {
    const r = spawnSync("unshare", ["-n", nsc, ...args, "--data-dir", join(dir, "stores")], { encoding: "utf8", env });
    assert.equal(r.status, 0, `nsc ${args.join(" ")}: ${r.stderr}${r.stdout}`);
    return r.stdout + r.stderr;
  };
}

const newKey = (out: string) => /"(A[A-Z2-7]{55})"/.exec(out)![1]!;

describe("auth mode operator: a strict operator made by nsc", () => {
  let t: TestTailnet;
  let store: string;
  let nkeys: string;
  let toNats2: LabProxy;

  /** nats-tsnet run as a user of nats-1's host would, for commands that reach its loopback. */
  const onNode1 = (args: string[]) => {
    const n = t.tailnet.nodes.get("nats-1")!;
    const r = spawnSync("ip", ["netns", "exec", n.host.netns, process.execPath, CLI, ...args, "--config", n.configPath], {
      encoding: "utf8",
    });
    assert.equal(r.status, 0, `nats-tsnet ${args.join(" ")}: ${r.stderr}\n${logTail(t)}`);
    return r.stdout;
  };
  const cli = (...args: string[]) => {
    const r = spawnSync(process.execPath, [CLI, ...args, "--dir", store], { encoding: "utf8" });
    assert.equal(r.status, 0, `nats-tsnet ${args.join(" ")}: ${r.stderr}`);
    return r.stdout.trim();
  };
  const connectAs = (credsPath: string, name: string) =>
    natsConnect(toNats2.url, { authenticator: credsAuthenticator(readFileSync(credsPath)), name, reconnect: false });
  const keep = (nc: NatsConnection) => {
    t.onCleanup(() => nc.close());
    return nc;
  };
  const userCreds = (user: string) => join(store, "accounts", "APPX", "users", `${user}.creds`);

  before(async () => {
    t = await startTestTailnet("operator-nsc");
    const nscDir = join(t.dir, "nsc");
    nkeys = join(nscDir, "nkeys");
    const nsc = nscRunner(nscDir);
    // As the NATS documentation recommends it.
    nsc("add", "operator", "--generate-signing-key", "--sys", "--name", "ACME");
    nsc("edit", "operator", "--require-signing-keys");
    nsc("add", "account", "APPX");
    nsc("edit", "account", "APPX", "--sk", "generate");
    nsc("add", "user", "--account", "APPX", "nscuser");
    // A role made by nsc: a scoped signing key with a template.
    const scoped = newKey(nsc("edit", "account", "APPX", "--sk", "generate"));
    nsc(
      "edit",
      "signing-key",
      "--account",
      "APPX",
      "--sk",
      scoped,
      "--role",
      "nscrole",
      "--allow-pub",
      "nsc.{{name()}}.>",
      "--allow-sub",
      "_INBOX.>",
    );

    store = join(t.dir, "auth");
    const out = cli("auth", "import-nsc", "--operator-dir", join(nscDir, "stores", "ACME"), "--nkeys-dir", nkeys);
    assert.doesNotMatch(out, /note: no seed/);
    toNats2 = await startOperatorPair(t, store);
  });

  after(async () => {
    await t?.cleanup();
  });

  test("the imported store's SYS admin pushes accounts and lists peers", () => {
    const op = decode<{ strict_signing_key_usage: boolean }>(readFileSync(join(store, "operator.jwt"), "utf8").trim());
    assert.equal(op.nats.strict_signing_key_usage, true);
    assert.match(onNode1(["auth", "push"]), /APPX: /);
    const peers = onNode1(["peer", "list"]);
    assert.match(peers, /nats-1/);
    assert.match(peers, /nats-2/);
  });

  test("users made by nsc and by nats-tsnet both work through the tailnet", async () => {
    const alice = cli("auth", "user", "add", "alice", "--account", "APPX", "--pub-allow", "orders.>", "--sub-allow", "orders.>,_INBOX.>");
    const viaNsc = keep(await eventually(() => connectAs(join(nkeys, "creds", "ACME", "APPX", "nscuser.creds"), "nscuser"), 20_000));
    const a = keep(await connectAs(alice, "alice"));
    const sub = a.subscribe("orders.>", { max: 1 });
    await a.flush();
    viaNsc.publish("orders.1", enc.encode("one"));
    for await (const m of sub) assert.equal(m.subject, "orders.1");
  });

  test("a role's users are limited by its template, nats-tsnet's role and nsc's", async () => {
    cli("auth", "role", "add", "worker", "--account", "APPX", "--pub-allow", "jobs.{{name()}}.>", "--sub-allow", "_INBOX.>");
    onNode1(["auth", "push", "--account", "APPX"]);
    const w1 = keep(await connectAs(cli("auth", "user", "add", "w1", "--account", "APPX", "--role", "worker"), "w1"));
    const n1 = keep(await connectAs(cli("auth", "user", "add", "n1", "--account", "APPX", "--role", "nscrole"), "n1"));
    const watcher = keep(await connectAs(join(nkeys, "creds", "ACME", "APPX", "nscuser.creds"), "watcher"));
    const seen: string[] = [];
    const record = (_e: Error | null, m: { subject: string }) => void seen.push(m.subject);
    watcher.subscribe("jobs.>", { callback: record });
    watcher.subscribe("nsc.>", { callback: record });
    await watcher.flush();
    const violations: string[] = [];
    for (const nc of [w1, n1])
      void (async () => {
        for await (const s of nc.status()) if (s.type === "error") violations.push(String((s as { error: Error }).error?.name));
      })();
    for (const [nc, subject] of [
      [w1, "jobs.w1.a"],
      [w1, "jobs.n1.a"],
      [n1, "nsc.n1.a"],
      [n1, "nsc.w1.a"],
    ] as const)
      nc.publish(subject, enc.encode("x"));
    await eventually(() => violations.length >= 2, 5000, "two publish violations");
    await Promise.all([w1.flush(), n1.flush()]);
    await sleep(300);
    assert.deepEqual(seen.sort(), ["jobs.w1.a", "nsc.n1.a"]);
    assert.deepEqual(violations, ["PermissionViolationError", "PermissionViolationError"]);
  });

  test("a revoked user is cut off on another node within seconds, and its creds stop working", async () => {
    const bob = cli("auth", "user", "add", "bob", "--account", "APPX", "--pub-allow", "orders.>");
    const nc = keep(await connectAs(bob, "bob"));
    const closed = nc.closed();
    const t0 = Date.now();
    assert.match(onNode1(["auth", "user", "revoke", "bob", "--account", "APPX"]), /APPX: /);
    await Promise.race([closed, sleep(5000).then(() => assert.fail("bob still connected through nats-2 5 s after the revocation"))]);
    assert.ok(Date.now() - t0 < 5000);
    await assert.rejects(connectAs(bob, "bob again"), AuthorizationError);
    assert.match(cli("auth", "user", "list", "--account", "APPX"), /^bob\tU\w+\trevoked/m);
  });

  test("an expired user is disconnected and then refused, told why", async () => {
    const eve = cli("auth", "user", "add", "eve", "--account", "APPX", "--pub-allow", "orders.>", "--expiry", "4s");
    const nc = await connectAs(eve, "eve");
    const errors: Error[] = [];
    void (async () => {
      for await (const s of nc.status()) if (s.type === "error") errors.push((s as { error: Error }).error);
    })();
    await Promise.race([nc.closed(), sleep(10_000)]);
    assert.ok(nc.isClosed(), "eve still connected after her credentials expired");
    assert.ok(
      errors.some((e) => e instanceof UserAuthenticationExpiredError),
      `errors: ${errors.map((e) => e.name)}`,
    );
    // Once the expiry second has passed (nats-server's connect check has one-second
    // resolution) a new connection is refused. nats-server tells a live connection
    // "User Authentication Expired", but a new one only "Authorization Violation";
    // `auth user list` names the state.
    await sleep(1500);
    await assert.rejects(
      connectAs(eve, "eve again"),
      (e: Error) => e instanceof UserAuthenticationExpiredError || /Authorization Violation/i.test(e.message),
    );
    assert.match(cli("auth", "user", "list", "--account", "APPX"), /^eve\tU\w+\texpired/m);
  });

  test("rotating the account signing key: re-issued creds work, creds signed by the removed key do not", async () => {
    const acc = accountView(decode(readFileSync(join(store, "accounts", "APPX", "account.jwt"), "utf8").trim()));
    assert.equal(acc.signingKeys.length, 1);
    const old = acc.signingKeys[0]!;
    const oldAlice = join(t.dir, "alice-old.creds");
    copyFileSync(userCreds("alice"), oldAlice);
    // The documented sequence: add, push, re-issue (hand out the new creds), remove, push.
    const added = cli("auth", "key", "add", "--account", "APPX");
    onNode1(["auth", "push", "--account", "APPX"]);
    assert.match(cli("auth", "user", "reissue", "--account", "APPX"), new RegExp(`alice\\.creds\\t${added}`));
    cli("auth", "key", "remove", old, "--account", "APPX");
    onNode1(["auth", "push", "--account", "APPX"]);
    await eventually(
      () =>
        connectAs(oldAlice, "old alice").then(
          (nc) => nc.close().then(() => false),
          (e) => e instanceof AuthorizationError,
        ),
      10_000,
      "old creds refused",
    );
    await assert.rejects(connectAs(join(nkeys, "creds", "ACME", "APPX", "nscuser.creds"), "nsc's copy"), AuthorizationError);
    for (const u of ["alice", "nscuser", "w1", "n1"]) await (await connectAs(userCreds(u), u)).close();
  });
});
