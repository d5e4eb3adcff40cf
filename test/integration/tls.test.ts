// TLS on the client face, terminated by the bridge: real clients (nats.js,
// the nats CLI) over the tailnet, with the upgrade after INFO and with TLS
// first; and client certificates (mTLS), each refusal told to the client.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { connect as tcpConnect } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { binaryPath, issueCert, type CertFiles } from "../../controlplane/src/mod.ts";
import { credsAuthenticator } from "@nats-io/transport-node";
import { CLI, type LabProxy } from "../../localtailnet/mod.ts";
import { eventually, natsConnect, startOperatorPair, startTestTailnet, type TestTailnet } from "./helpers.ts";

describe("TLS on the client face", () => {
  let t: TestTailnet;
  let server: CertFiles;
  const clients: Record<string, CertFiles> = {};
  let tlsOnly: LabProxy; // nats-1: TLS
  let mutual: LabProxy; // nats-2: TLS with client certificates

  before(async () => {
    t = await startTestTailnet("tls");
    const pki = join(t.dir, "pki");
    // Valid for the tailnet names and for the loopback URL the proxies give this host.
    server = issueCert({ dir: pki, name: "server", cn: "nats", dns: ["nats-1", "nats-2", "localhost"], ips: ["127.0.0.1"] });
    clients.billing = issueCert({ dir: pki, name: "billing", cn: "billing", client: true });
    clients.late = issueCert({ dir: pki, name: "late", cn: "late", client: true, valid: "-1h" });
    clients.gone = issueCert({ dir: pki, name: "gone", cn: "gone", client: true });
    clients.plain = issueCert({ dir: pki, name: "plain", cn: "plain", client: true });
    clients.stranger = issueCert({ dir: join(t.dir, "other-pki"), name: "stranger", cn: "stranger", client: true });
    const tls = { cert_file: server.cert, key_file: server.key };
    await Promise.all([
      t.tailnet.startNode("nats-1", { config: { nats: { standalone: true, tls } } }),
      t.tailnet.startNode("nats-2", {
        config: {
          nats: { standalone: true, tls: { ...tls, min_version: "1.3", client_ca_file: server.ca, revoked: [clients.gone!.serial] } },
          // The billing service's certificate decides its rights, from whichever device it runs on.
          auth: { rules: [{ certs: ["CN=billing"], pub: { allow: ["billing.>"] }, sub: { allow: ["billing.>", "_INBOX.>"] } }] },
        },
      }),
    ]);
    [tlsOnly, mutual] = await Promise.all([
      t.tailnet.startProxy("laptop-1", { to: "nats-1:4222" }),
      t.tailnet.startProxy("laptop-2", { to: "nats-2:4222" }),
    ]);
  });

  after(async () => {
    await t?.cleanup();
  });

  const tlsUrl = (p: LabProxy) => p.url.replace(/^nats:/, "tls:");

  /** The nats CLI on this host, with a home of its own (no contexts). */
  function natsCli(args: string[]): { status: number | null; out: string } {
    const r = spawnSync(binaryPath("nats"), args, { encoding: "utf8", timeout: 30_000, env: { ...process.env, HOME: t.dir } });
    return { status: r.status, out: `${r.stdout}${r.stderr}` };
  }

  test("nats.js over TLS: the server's certificate checked against the CA, a round trip", async () => {
    const nc = await eventually(() => natsConnect(tlsUrl(tlsOnly), { name: "js-tls", tls: { caFile: server.ca } }), 30_000, "TLS connect");
    const sub = nc.subscribe("tls.echo", { max: 1 });
    void (async () => {
      for await (const m of sub) m.respond(m.data);
    })();
    const r = await nc.request("tls.echo", "over tls", { timeout: 5000 });
    assert.equal(r.string(), "over tls");
    await nc.close();
  });

  test("nats.js with TLS first (handshakeFirst)", async () => {
    const nc = await natsConnect(tlsUrl(tlsOnly), { name: "js-tls-first", tls: { caFile: server.ca, handshakeFirst: true } });
    const sub = nc.subscribe("tls.first", { max: 1 });
    void (async () => {
      for await (const m of sub) m.respond(m.data);
    })();
    assert.equal((await nc.request("tls.first", "first", { timeout: 5000 })).string(), "first");
    await nc.close();
  });

  test("the nats CLI over TLS, with the upgrade and with --tlsfirst", () => {
    for (const first of [[], ["--tlsfirst"]]) {
      const r = natsCli(["-s", tlsUrl(tlsOnly), "--tlsca", server.ca, ...first, "pub", "tls.cli", "hello"]);
      assert.equal(r.status, 0, `nats pub ${first.join(" ")}: ${r.out}`);
    }
  });

  test("with TLS on, a local process on the node's host is still refused on nats-server's loopback port", () => {
    const host = t.tailnet.nodes.get("nats-1")!.host;
    const r = spawnSync("ip", ["netns", "exec", host.netns, binaryPath("nats"), "-s", "nats://127.0.0.1:14222", "pub", "x", "y"], {
      encoding: "utf8",
      timeout: 30_000,
      env: { ...process.env, HOME: t.dir },
    });
    assert.notEqual(r.status, 0, "a local process published over loopback");
    assert.match(`${r.stdout}${r.stderr}`, /Authorization Violation/i);
  });

  test("a client speaking plain NATS to a TLS face is told TLS is required", async () => {
    const port = Number(new URL(tlsOnly.url).port);
    const got = await new Promise<string>((resolve) => {
      let out = "";
      let sent = false;
      const s = tcpConnect(port, "127.0.0.1");
      s.on("data", (d) => {
        out += d.toString();
        // After INFO, answer as a client without TLS would.
        if (!sent && out.includes("\r\n")) {
          sent = true;
          s.write('CONNECT {"verbose":false}\r\nPING\r\n');
        }
      });
      s.on("close", () => resolve(out));
      s.on("error", () => resolve(out));
      setTimeout(() => s.destroy(), 15_000);
    });
    assert.match(got, /^INFO \{.*"tls_required":true/);
    assert.match(got, /-ERR 'Secure Connection - TLS Required'/);
  });

  test("mTLS: a client certificate from the CA is admitted", async () => {
    const c = clients.billing!;
    const nc = await eventually(
      () => natsConnect(tlsUrl(mutual), { name: "billing-app", tls: { caFile: server.ca, certFile: c.cert, keyFile: c.key } }),
      30_000,
      "mTLS connect",
    );
    await nc.flush();
    await nc.close();
    const r = natsCli([
      "-s",
      tlsUrl(mutual),
      "--tlsca",
      server.ca,
      "--tlscert",
      c.cert,
      "--tlskey",
      c.key,
      "--tlsfirst",
      "pub",
      "billing.cli",
      "x",
    ]);
    assert.equal(r.status, 0, r.out);
  });

  /** Subscribes and round-trips one request on subject; the error if the subscription is refused. */
  async function roundTrip(nc: Awaited<ReturnType<typeof natsConnect>>, subject: string): Promise<Error | undefined> {
    const sub = nc.subscribe(subject, { max: 1 });
    void (async () => {
      for await (const m of sub) m.respond(m.data);
    })().catch(() => {}); // a refused subscription ends its iterator with the error sub.closed also gives
    const refused = sub.closed.then((e) => e ?? undefined);
    const answered = nc.request(subject, "ping", { timeout: 5000 }).then(
      () => undefined,
      (e: Error) => e,
    );
    const first = await Promise.race([refused.then((e) => e && { refused: e }), answered.then((e) => ({ answered: e }))]);
    if (first && "refused" in first) return first.refused;
    return (first as { answered?: Error } | undefined)?.answered ?? (await refused);
  }

  test("mTLS: a certificate a rule names decides what the connection may do, not the device", async () => {
    const c = clients.billing!;
    const nc = await natsConnect(tlsUrl(mutual), { name: "billing", tls: { caFile: server.ca, certFile: c.cert, keyFile: c.key } });
    assert.equal(await roundTrip(nc, "billing.echo"), undefined, "billing.> is the rule's");
    const denied = await roundTrip(nc, "other.echo");
    assert.match(String(denied?.message), /permissions violation/i, "the device's own grant (everything) does not apply");
    await nc.close();
    const line = t.tailnet.nodes
      .get("nats-2")!
      .lines.find((l) => l.msg === "auth decision" && String(l.who).includes("with certificate CN=billing"));
    assert.ok(line, "the callout names the certificate");
    assert.deepEqual(line.pub, ["billing.>"]);
  });

  test("mTLS: a valid certificate no rule names leaves the device's own grants", async () => {
    const c = clients.plain!;
    const nc = await natsConnect(tlsUrl(mutual), { name: "plain", tls: { caFile: server.ca, certFile: c.cert, keyFile: c.key } });
    assert.equal(await roundTrip(nc, "other.echo"), undefined);
    await nc.close();
  });

  /** Connects to the mTLS face expecting a refusal: the error, or undefined if it connected. */
  function refusal(opts: Parameters<typeof natsConnect>[1]): Promise<Error | undefined> {
    return natsConnect(tlsUrl(mutual), { ...opts, reconnect: false }).then(
      async (nc) => {
        await nc.close();
        return undefined;
      },
      (e: Error) => e,
    );
  }

  for (const [name, cert, reason] of [
    ["no certificate", undefined, /a client certificate is required/],
    ["an expired certificate", "late", /"late" is expired/],
    ["a certificate from another CA", "stranger", /"stranger" is not signed by the configured client CA/],
    ["a certificate revoked by configuration", "gone", /"gone" is revoked by configuration/],
  ] as const) {
    test(`mTLS: ${name} is refused, and the client reads why`, async () => {
      const c = cert ? clients[cert]! : undefined;
      const err = await refusal({
        name: `refused-${cert ?? "none"}`,
        tls: { caFile: server.ca, ...(c && { certFile: c.cert, keyFile: c.key }) },
      });
      assert.ok(err, "connected");
      assert.match(String(err.message), reason);
      assert.match(String(err.message), /Authorization Violation/);
      // The node logs it with its code (the bridge's refusal log, one line
      // per caller and code every 10 s: the first refusal's reason, then a count).
      await eventually(
        () => t.tailnet.nodes.get("nats-2")!.lines.some((l) => l.code === "ERR_CLIENT_CERT" && /certificate/.test(String(l.reason))),
        10_000,
        "ERR_CLIENT_CERT logged",
      );
    });
  }

  test("mTLS with min_version 1.3: a TLS 1.2 client is refused in the handshake", async () => {
    const c = clients.billing!;
    const err = await refusal({ tls: { caFile: server.ca, certFile: c.cert, keyFile: c.key, maxVersion: "TLSv1.2" } as never });
    assert.ok(err, "a TLS 1.2 client connected to a 1.3-only face");
  });
});

describe("mTLS in auth mode operator: the certificate and the credentials", () => {
  let t: TestTailnet;
  let proxy: LabProxy;
  let ca: CertFiles;
  let client: CertFiles;
  let creds: string;

  const cli = (args: string[]) => execFileSync(process.execPath, [CLI, ...args], { encoding: "utf8" }).trim();

  before(async () => {
    t = await startTestTailnet("tls-operator");
    const store = join(t.dir, "auth");
    cli(["auth", "init", "--dir", store, "--operator", "acme-ops"]);
    cli(["auth", "account", "add", "ACME", "--dir", store]);
    creds = cli([
      "auth",
      "user",
      "add",
      "alice",
      "--account",
      "ACME",
      "--dir",
      store,
      "--pub-allow",
      "orders.>,_INBOX.>",
      "--sub-allow",
      "orders.>,_INBOX.>",
    ]);
    const pki = join(t.dir, "pki");
    ca = issueCert({ dir: pki, name: "server", cn: "nats", dns: ["localhost"], ips: ["127.0.0.1"] });
    client = issueCert({ dir: pki, name: "alice", cn: "alice", client: true });
    proxy = await startOperatorPair(t, store, { nats: { tls: { cert_file: ca.cert, key_file: ca.key, client_ca_file: ca.ca } } });
    const node1 = t.tailnet.nodes.get("nats-1")!;
    execFileSync("ip", ["netns", "exec", node1.host.netns, process.execPath, CLI, "auth", "push", "--config", node1.configPath]);
  });

  after(async () => {
    await t?.cleanup();
  });

  const url = () => proxy.url.replace(/^nats:/, "tls:");
  const attempt = (withCert: boolean, withCreds: boolean) =>
    natsConnect(url(), {
      reconnect: false,
      tls: { caFile: ca.ca, ...(withCert && { certFile: client.cert, keyFile: client.key }) },
      ...(withCreds && { authenticator: credsAuthenticator(readFileSync(creds)) }),
    });

  test("a certificate from the CA and the user's credentials: in, with the credentials' rights", async () => {
    const nc = await eventually(() => attempt(true, true), 30_000, "alice connects");
    const sub = nc.subscribe("orders.>", { max: 1 });
    nc.publish("orders.1", "one");
    for await (const m of sub) assert.equal(m.subject, "orders.1");
    await nc.close();
  });

  test("the credentials without a certificate: refused, and told why", async () => {
    const err = await attempt(false, true).then(
      async (nc) => void (await nc.close()),
      (e: Error) => e,
    );
    assert.match(String(err?.message), /a client certificate is required/);
  });

  test("a certificate without credentials: refused by the operator's rules", async () => {
    const err = await attempt(true, false).then(
      async (nc) => void (await nc.close()),
      (e: Error) => e,
    );
    assert.match(String(err?.message), /Authorization Violation/i);
  });
});
