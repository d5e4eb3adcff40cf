// Connections authorized per second (issue 15): the auth callout's answer
// path in this process with each Ed25519 implementation, and whole NATS
// connects through the tailnet, alone and while a device with no grant
// floods the client port. All of it on loopback and inside the lab.
// Part of `npm run bench`; on its own (as root, after set-up):
//   node bench/connects.ts
import { connect as tcpConnect } from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { createAccount, createServer, createUser, type KeyPair } from "@nats-io/nkeys";
import { decode, encodeAuthorizationResponse, encodeGeneric, encodeUser, type AuthorizationRequest } from "@nats-io/jwt";
import { connect } from "@nats-io/transport-node";
import { createLogger, decide, decodeVerified, identityOf, loadConfig, nativeSigner } from "../controlplane/src/mod.ts";
import { CAPABILITY, DEV_USER, LocalTailnet } from "../localtailnet/mod.ts";

/** The node measured, and a tagged device that no grant names. */
export const CONN_TAG = "tag:nats-conn";
export const FLOOD_TAG = "tag:flood";

export type Signer = "nkeys" | "native";

/**
 * Answers per second of the callout's answer path: verify nats-server's
 * request JWT, decide, sign the user JWT and the response JWT. "nkeys" is
 * the path as it was (@nats-io/jwt's decode and an nkeys KeyPair, pure
 * JavaScript); "native" is the path now (decodeVerified and nativeSigner,
 * node:crypto). Everything but the Ed25519 arithmetic is the same.
 */
export async function calloutAnswersPerSecond(signer: Signer, ms: number): Promise<number> {
  const server = createServer();
  const request = await encodeGeneric("", server, "authorization_request", {
    server_id: { id: server.getPublicKey(), name: "nats-1" },
    user_nkey: createUser().getPublicKey(),
    client_info: { host: "100.64.0.9", id: 7, kind: "Client", type: "nats" },
    connect_opts: { name: "bench", lang: "nats.js", version: "3.4.0", protocol: 1 },
  });
  const account = createAccount();
  const issuer: KeyPair = signer === "native" ? nativeSigner(account) : account;
  const verify: (jwt: string) => { nats: AuthorizationRequest } =
    signer === "native" ? (jwt) => decodeVerified(jwt) : (jwt) => decode(jwt) as unknown as { nats: AuthorizationRequest };
  const auth = loadConfig({ env: {}, overrides: { hostname: "bench" } }).auth;
  const id = identityOf({
    device: { id: "n1", name: "laptop", dnsName: "laptop.ts.net", hostName: "laptop", ips: [], tags: [], online: true },
    user: "alice@example.com",
    label: "alice@example.com (laptop)",
  });
  const grant = [{ pub: { allow: ["orders.>"] }, sub: { allow: ["orders.>"] } }];
  let n = 0;
  const end = performance.now() + ms;
  while (performance.now() < end) {
    const req = verify(request).nats;
    const d = decide(id, grant, auth);
    if (!d.allow) throw new Error(d.reason);
    const user = { pub: d.pub, sub: d.sub, proxy_required: true, tags: ["user:alice@example.com"] };
    const jwt = await encodeUser("", req.user_nkey, issuer, user as never, { aud: d.account });
    await encodeAuthorizationResponse(req.user_nkey, req.server_id.id, issuer, { jwt }, {});
    n++;
  }
  return +(n / (ms / 1000)).toFixed(1);
}

/** Microseconds per Ed25519 signature of 500 bytes, for scale. */
export function signMicros(signer: Signer, count: number): number {
  const kp = signer === "native" ? nativeSigner(createAccount()) : createAccount();
  const data = new Uint8Array(500);
  const t0 = performance.now();
  for (let i = 0; i < count; i++) kp.sign(data);
  return +(((performance.now() - t0) * 1000) / count).toFixed(1);
}

/**
 * Whole NATS connections (connect, a round trip, close) per second through
 * url, with inFlight of them at a time, for ms. Failures are counted apart.
 */
export async function connectsPerSecond(url: string, inFlight: number, ms: number): Promise<{ per_s: number; failed: number }> {
  let ok = 0;
  let failed = 0;
  const end = Date.now() + ms;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (Date.now() < end) {
        try {
          const nc = await connect({ servers: url, ignoreClusterUpdates: true, reconnect: false, timeout: 10_000 });
          await nc.flush();
          await nc.close();
          ok++;
        } catch {
          failed++;
        }
      }
    }),
  );
  return { per_s: +(ok / (ms / 1000)).toFixed(1), failed };
}

/**
 * Keeps n raw connection attempts in flight through port until stopped, as
 * a flooding client would: read the first line, answer an INFO with
 * CONNECT and PING, hang up once answered.
 */
export function flood(port: number, n: number): { stop(): Promise<number> } {
  let stopped = false;
  let attempts = 0;
  const once = () =>
    new Promise<void>((resolve) => {
      const s = tcpConnect(port, "127.0.0.1");
      let got = "";
      const done = () => {
        s.destroy();
        resolve();
      };
      s.on("data", (d) => {
        const first = got === "";
        got += d.toString();
        if (first && got.startsWith("INFO ")) s.write('CONNECT {"verbose":false,"name":"flood"}\r\nPING\r\n');
        else if (/-ERR|PONG/.test(got)) done();
      });
      s.on("error", done);
      s.on("close", done);
      s.setTimeout(30_000, done);
    });
  const loops = Array.from({ length: n }, async () => {
    while (!stopped) {
      await once();
      attempts++;
    }
  });
  return {
    stop: async () => {
      stopped = true;
      await Promise.all(loops);
      return attempts;
    },
  };
}

export interface Connections {
  callout_answers_per_s: { nkeys_js: number; node_crypto: number; ratio: number };
  ed25519_sign: { nkeys_js_us: number; node_crypto_us: number; ratio: number };
  tailnet_connects_per_s: {
    in_flight: number;
    alone: { per_s: number; failed: number };
    during_flood: { per_s: number; failed: number };
    flood_attempts_per_s: number;
  };
}

/**
 * Every measure of this file. The lab's policy must let CONN_TAG exist with
 * a grant for members, and FLOOD_TAG exist and reach CONN_TAG:4222 without
 * one (connectionPolicy).
 */
export async function measureConnections(lab: LocalTailnet, say: (s: string) => void): Promise<Connections> {
  say("connections authorized per second: the callout's answer path with nkeys (pure JS) and with node:crypto");
  const before = await calloutAnswersPerSecond("nkeys", 5000);
  const after = await calloutAnswersPerSecond("native", 5000);
  const sign = { nkeys_js_us: signMicros("nkeys", 50), node_crypto_us: signMicros("native", 5000) };
  say("connections through the tailnet: alone, then while a device with no grant keeps 80 attempts in flight");
  // Device limits off, so that the figure is the whole path's, not the limiter's.
  const config = { tailnet: { cluster_tag: CONN_TAG }, nats: { standalone: true, device_limits: { max_connections: 0, connect_rate: 0 } } };
  await lab.startNode("conn-1", { config, keyTags: [CONN_TAG] });
  const pc = await lab.startProxy("conn-device", { to: "conn-1:4222" });
  const pf = await lab.startProxy("flood-device", { to: "conn-1:4222", tags: [FLOOD_TAG] });
  const inFlight = 8;
  const alone = await connectsPerSecond(pc.url, inFlight, 10_000);
  const t0 = Date.now();
  const f = flood(pf.port, 80);
  await sleep(1000);
  const duringFlood = await connectsPerSecond(pc.url, inFlight, 10_000);
  const attempts = await f.stop();
  return {
    callout_answers_per_s: { nkeys_js: before, node_crypto: after, ratio: +(after / before).toFixed(1) },
    ed25519_sign: { ...sign, ratio: +(sign.nkeys_js_us / sign.node_crypto_us).toFixed(0) },
    tailnet_connects_per_s: {
      in_flight: inFlight,
      alone,
      during_flood: duringFlood,
      flood_attempts_per_s: +(attempts / ((Date.now() - t0) / 1000)).toFixed(1),
    },
  };
}

/** The figures as printed by the benchmark. */
export function connectionLines(cx: Connections): string[] {
  const t = cx.tailnet_connects_per_s;
  return [
    "Connections authorized per second (auth mode tailnet):",
    "| measure | before: nkeys (pure JS) | after: node:crypto | ratio |",
    "|---|---|---|---|",
    `| callout answer path in one process (verify, decide, sign 2 JWTs) | ${cx.callout_answers_per_s.nkeys_js} /s | ${cx.callout_answers_per_s.node_crypto} /s | ${cx.callout_answers_per_s.ratio}× |`,
    `| one Ed25519 signature | ${cx.ed25519_sign.nkeys_js_us} µs | ${cx.ed25519_sign.node_crypto_us} µs | ${cx.ed25519_sign.ratio}× |`,
    `Whole connects through the tailnet (connect, round trip, close; ${t.in_flight} in flight from one device, device limits off):`,
    `  alone: ${t.alone.per_s} /s (${t.alone.failed} failed)`,
    `  while a device with no grant keeps 80 attempts in flight (${t.flood_attempts_per_s} attempts/s, each refused by the bridge): ` +
      `${t.during_flood.per_s} /s (${t.during_flood.failed} failed)`,
  ];
}

/** A policy with just what measureConnections needs. */
export function connectionPolicy(): Record<string, unknown> {
  return {
    tagOwners: { [CONN_TAG]: [`${DEV_USER}@`], [FLOOD_TAG]: [`${DEV_USER}@`] },
    acls: [{ action: "accept", src: ["autogroup:member", FLOOD_TAG], dst: [`${CONN_TAG}:4222`] }],
    grants: [{ src: ["autogroup:member"], dst: [CONN_TAG], app: { [CAPABILITY]: [{ pub: { allow: [">"] }, sub: { allow: [">"] } }] } }],
  };
}

if (import.meta.main) {
  const dir = mkdtempSync(join(tmpdir(), "nt-bench-conn-"));
  const lab = await LocalTailnet.start({ dir, log: createLogger({ level: "error" }), policy: connectionPolicy() });
  try {
    const cx = await measureConnections(lab, (s) => process.stderr.write(`bench: ${s}\n`));
    console.log(JSON.stringify(cx));
    console.log(connectionLines(cx).join("\n"));
  } finally {
    await lab.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
