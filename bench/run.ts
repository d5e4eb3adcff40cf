// npm run bench: every scenario side by side in one run on this machine,
// printed as a table with ratios, written as JSON (bench/results/latest.json).
// All load stays on loopback and inside the lab's own namespaces.
import { execFile, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import { createLogger, binaryPath, issueCert, REPO_ROOT } from "../controlplane/src/mod.ts";
import { CLUSTER_TAG, CAPABILITY, DEV_USER, LocalTailnet, namespaceMemory, type Host } from "../localtailnet/mod.ts";
import { CONN_TAG, FLOOD_TAG, measureConnections, connectionLines, type Connections } from "./connects.ts";
import { MEM_TAG, measureReleaseVsCheckout, releaseLines, type ReleaseVsCheckout } from "./release-node.ts";

const run = promisify(execFile);
const NATS = binaryPath("nats");
const PROBES = join(REPO_ROOT, "bench", "probes.ts");
const FAST_TAG = "tag:nats-fast";
/** Standalone nodes for the other client faces: TLS and WebSocket. */
const FACES_TAG = "tag:nats-faces";
const WS_PORT = 8080;
const SIZES = [
  { label: "16 B", size: "16B", bytes: 16, msgs: 200_000 },
  { label: "1 KiB", size: "1KiB", bytes: 1024, msgs: 100_000 },
  { label: "64 KiB", size: "64KiB", bytes: 65536, msgs: 4_000 },
  // Just under the default 1 MiB max_payload: the bridge's memory with large messages (issue 15).
  { label: "1000 KiB", size: "1000KiB", bytes: 1_024_000, msgs: 1_500 },
];

const t0 = Date.now();
const dir = mkdtempSync(join(tmpdir(), "nt-bench-"));
const log = createLogger({ level: "error" });
const policy = {
  tagOwners: {
    [CLUSTER_TAG]: [`${DEV_USER}@`],
    [FAST_TAG]: [`${DEV_USER}@`],
    [FACES_TAG]: [`${DEV_USER}@`],
    [CONN_TAG]: [`${DEV_USER}@`],
    [FLOOD_TAG]: [`${DEV_USER}@`],
    [MEM_TAG]: [`${DEV_USER}@`],
  },
  acls: [
    { action: "accept", src: [CLUSTER_TAG], dst: [`${CLUSTER_TAG}:*`] },
    { action: "accept", src: [FAST_TAG], dst: [`${FAST_TAG}:*`] },
    {
      action: "accept",
      src: ["autogroup:member"],
      dst: [
        `${CLUSTER_TAG}:4222`,
        `${FAST_TAG}:4222`,
        `${CONN_TAG}:4222`,
        `${FACES_TAG}:4222`,
        `${FACES_TAG}:${WS_PORT}`,
        "autogroup:member:9999",
      ],
    },
    { action: "accept", src: [FLOOD_TAG], dst: [`${CONN_TAG}:4222`] },
  ],
  grants: [
    {
      src: ["autogroup:member"],
      dst: [CLUSTER_TAG, FAST_TAG, CONN_TAG, FACES_TAG],
      app: { [CAPABILITY]: [{ pub: { allow: [">"] }, sub: { allow: [">"] } }] },
    },
  ],
};
const lab = await LocalTailnet.start({ dir, log, policy });
const results: Record<string, unknown> = {};
const say = (s: string) => process.stderr.write(`bench: ${s}\n`);

function inNs(h: Host, cmd: string, args: string[], timeout = 180_000, env: NodeJS.ProcessEnv = process.env) {
  return run("ip", ["netns", "exec", h.netns, cmd, ...args], { timeout, maxBuffer: 16 << 20, env });
}

/** nats bench sub on one server, pub on another; the subscriber's rate is the figure. */
async function pubsub(h: Host, pubUrl: string, subUrl: string, s: (typeof SIZES)[number], extra: string[] = []) {
  const subj = `bench.${s.size}`;
  const sub = inNs(h, NATS, ["bench", "sub", subj, "-s", subUrl, "--msgs", String(s.msgs), "--size", s.size, "--no-progress", ...extra]);
  await sleep(700); // the subscription must be in place (and propagated over the route) first
  await inNs(h, NATS, ["bench", "pub", subj, "-s", pubUrl, "--msgs", String(s.msgs), "--size", s.size, "--no-progress", ...extra]);
  const out = (await sub).stdout;
  const m = /subscriber stats: ([\d,]+) msgs\/sec ~ ([\d.]+) ([KMG]i?B)\/sec/.exec(out);
  if (!m) throw new Error(`cannot read nats bench output: ${out}`);
  const msgs = Number(m[1]!.replace(/,/g, ""));
  return { msgs_per_s: msgs, mb_per_s: +((msgs * s.bytes) / 1e6).toFixed(1) };
}

/** A throughput run that failed: zero, with the last line nats bench wrote. */
function failedRun(e: { stderr?: string; message?: string }) {
  const why = (e.stderr || e.message || "").trim().split("\n").pop() ?? "";
  return { msgs_per_s: 0, mb_per_s: 0, failed: why };
}

async function probe(h: Host, args: string[], env: NodeJS.ProcessEnv = process.env) {
  const { stdout } = await inNs(h, process.execPath, [PROBES, ...args], 180_000, env);
  return JSON.parse(stdout.trim().split("\n").pop()!);
}

/**
 * Where the bridge spends its CPU, grouped by what the code is for: the
 * userspace WireGuard and its crypto, gVisor's TCP/IP stack, the kernel
 * (syscalls on loopback and UDP), the Go runtime, and the bridge's own copy
 * and NATS-protocol code.
 */
async function attribute(profile: string): Promise<Record<string, number>> {
  const { stdout } = await run("go", ["tool", "pprof", "-top", "-nodecount=100000", profile], { maxBuffer: 64 << 20 });
  const groups: Array<[string, RegExp]> = [
    ["wireguard crypto", /chacha20|poly1305|curve25519|blake2s/],
    ["wireguard (userspace)", /wireguard|wgengine|magicsock|tstun|disco/],
    ["gVisor netstack", /gvisor\.dev/],
    ["syscalls (loopback and UDP I/O)", /syscall\.|internal\/poll|unix\.|Syscall/],
    ["bridge copy path and NATS protocol", /nats-tsnet\/dataplane|io\.Copy|bufio|encoding\/json|nkeys|proxyproto/],
    ["Go runtime (scheduler, GC, memory)", /^runtime\.|runtime\/internal|internal\/runtime/],
  ];
  const out: Record<string, number> = {};
  for (const line of stdout.split("\n")) {
    const m = /^\s*[\d.]+\w*\s+([\d.]+)%\s+[\d.]+%\s+[\d.]+\w*\s+[\d.]+%\s+(.+)$/.exec(line);
    if (!m) continue;
    const fn = m[2]!;
    const g = groups.find(([, re]) => re.test(fn))?.[0] ?? "other";
    out[g] = +((out[g] ?? 0) + Number(m[1])).toFixed(1);
  }
  return Object.fromEntries(Object.entries(out).sort((a, b) => b[1] - a[1]));
}

try {
  // ---- The NATS baseline: the same two nats-servers clustered on loopback, no tailnet.
  say("baseline: two nats-servers clustered on loopback");
  const base = lab.net.addHost("baseline");
  const conf = (i: number, other: number) => {
    const p = join(dir, `base-${i}.conf`);
    writeFileSync(
      p,
      [
        `server_name: base-${i}`,
        `listen: "127.0.0.1:${24220 + i}"`,
        `cluster { name: base, listen: "127.0.0.1:${26220 + i}", routes: ["nats-route://127.0.0.1:${26220 + other}"] }`,
      ].join("\n"),
    );
    return p;
  };
  const baseServers = [1, 2].map((i) =>
    spawn("ip", ["netns", "exec", base.netns, binaryPath("nats-server"), "-c", conf(i, 3 - i)], { stdio: "ignore" }),
  );
  await sleep(2500);

  // ---- nats-tsnet: two nodes, and client devices for the load generators.
  say("nats-tsnet: cluster A (sync_interval always, the default)");
  let tc = Date.now();
  // nats-1's bridge serves pprof on its own loopback, for the overhead attribution.
  await Promise.all(
    ["nats-1", "nats-2", "nats-3"].map((n) =>
      lab.startNode(n, n === "nats-1" ? { env: { NATS_TSNET_BRIDGE_PPROF: "127.0.0.1:6060" } } : {}),
    ),
  );
  await lab.waitForCluster(["nats-1", "nats-2", "nats-3"]);
  results.formation = { cold_start_3_nodes_s: +((Date.now() - tc) / 1000).toFixed(1) };
  const bench = "bench-clients";
  const p1 = await lab.startProxy("pub-device", { to: "nats-1:4222", host: bench, port: 14001 });
  const p2 = await lab.startProxy("sub-device", { to: "nats-2:4222", host: bench, port: 14002 });
  const bh = lab.net.hosts.get(bench)!;
  await sleep(1000);

  const mem: Record<string, unknown> = { idle: namespaceMemory(lab.nodes.get("nats-1")!.host.netns) };
  const throughput: Array<Record<string, unknown>> = [];
  for (const s of SIZES) {
    say(`core pub/sub ${s.label}`);
    // One size whose run fails (a slow consumer cut off, on a loaded machine) is reported, not fatal.
    const b = await pubsub(base, "nats://127.0.0.1:24221", "nats://127.0.0.1:24222", s).catch(failedRun);
    let peak: Record<string, number> = {};
    const sampler = setInterval(() => {
      const r = namespaceMemory(lab.nodes.get("nats-1")!.host.netns);
      for (const [k, v] of Object.entries(r)) peak[k] = Math.max(peak[k] ?? 0, v);
    }, 250);
    const t = await pubsub(bh, p1.url, p2.url, s).catch(failedRun);
    clearInterval(sampler);
    if (s.bytes === 1024) mem.under_load_1KiB_peak = peak;
    if (s.bytes === 1_024_000) {
      await sleep(5000);
      mem.large_messages = { peak, after_5s: namespaceMemory(lab.nodes.get("nats-1")!.host.netns) };
    }
    throughput.push({ size: s.label, baseline: b, tailnet: t, ratio: +(t.msgs_per_s / b.msgs_per_s).toFixed(2) });
  }
  results.throughput = throughput;

  say("profile of nats-1's bridge under 1 KiB load");
  {
    const profFile = join(dir, "bridge.pprof");
    const n1 = lab.nodes.get("nats-1")!.host;
    const grab = inNs(n1, process.execPath, [
      "-e",
      `fetch("http://127.0.0.1:6060/debug/pprof/profile?seconds=6").then(r=>r.arrayBuffer()).then(b=>require("fs").writeFileSync(${JSON.stringify(profFile)},Buffer.from(b)))`,
    ]);
    await pubsub(bh, p1.url, p2.url, { label: "1 KiB", size: "1KiB", bytes: 1024, msgs: 400_000 });
    await grab;
    results.bridge_profile = await attribute(profFile);
  }

  say("raw TCP between two tsnet devices (the medium)");
  const rawBytes = 200 * 1024 * 1024;
  await p2.bridge.listen({ name: "sink", port: 9999, target: "127.0.0.1:19999" });
  const sinkP = probe(bh, ["sink", "19999", String(rawBytes)]);
  await sleep(800);
  const fwd = await p1.bridge.forward({ name: "raw", listen: "127.0.0.1:0", targets: [`${p2.bridge.status!.self.ips[0]}:9999`] });
  await probe(bh, ["send", fwd.addr.split(":")[1]!, String(rawBytes)]).catch(() => undefined);
  results.raw_tcp_tsnet = await sinkP;

  say("request-reply latency");
  const rrBase = await probe(base, ["rr", "nats://127.0.0.1:24221", "nats://127.0.0.1:24222", "2000"]);
  const rrTail = await probe(bh, ["rr", p1.url, p2.url, "2000"]);
  results.request_reply = { baseline: rrBase, tailnet: rrTail, p50_ratio: +(rrTail.p50_ms / rrBase.p50_ms).toFixed(1) };

  say("the other client faces: TLS and WebSocket, one node each, beside plain TCP");
  {
    const ca = issueCert({ dir: join(dir, "pki"), name: "server", cn: "face", dns: ["localhost"], ips: ["127.0.0.1"] });
    const plainWs = { nats: { standalone: true, websocket_port: WS_PORT } };
    const tlsWs = { nats: { standalone: true, websocket_port: WS_PORT, tls: { cert_file: ca.cert, key_file: ca.key } } };
    await Promise.all([
      lab.startNode("face-plain", { config: { ...plainWs, tailnet: { cluster_tag: FACES_TAG } }, keyTags: [FACES_TAG] }),
      lab.startNode("face-tls", { config: { ...tlsWs, tailnet: { cluster_tag: FACES_TAG } }, keyTags: [FACES_TAG] }),
    ]);
    const faces = [
      { face: "plain TCP", to: "face-plain:4222", scheme: "nats" },
      { face: "WebSocket", to: `face-plain:${WS_PORT}`, scheme: "ws" },
      { face: "TLS", to: "face-tls:4222", scheme: "tls" },
      { face: "WebSocket over TLS", to: `face-tls:${WS_PORT}`, scheme: "wss" },
    ];
    const env = { ...process.env, BENCH_CA: ca.ca, NODE_EXTRA_CA_CERTS: ca.ca };
    const rows: Array<Record<string, unknown>> = [];
    for (const [i, f] of faces.entries()) {
      const p = await lab.startProxy(`face-device-${i}`, { to: f.to, host: bench, port: 14010 + i });
      const url = p.url.replace(/^nats:/, `${f.scheme}:`);
      await sleep(500);
      const one = { label: "1 KiB", size: "1KiB", bytes: 1024, msgs: 100_000 };
      const tp = await pubsub(bh, url, url, one, f.scheme === "tls" || f.scheme === "wss" ? ["--tlsca", ca.ca] : []);
      const rr = await probe(bh, ["rr", url, url, "2000"], env);
      rows.push({ face: f.face, pubsub_1KiB: tp, request_reply: rr });
    }
    results.faces = rows;
  }

  say("JetStream R3 publish: sync_interval always vs nats-server's default (2m)");
  const jsAlways = await probe(bh, ["jspub", p1.url, "BENCHALWAYS", "1500"]);
  tc = Date.now();
  const fast = { tailnet: { cluster_tag: FAST_TAG }, nats: { jetstream: { sync_interval: "2m" } } };
  await Promise.all(["fast-1", "fast-2", "fast-3"].map((n) => lab.startNode(n, { config: fast, keyTags: [FAST_TAG] })));
  await lab.waitForCluster(["fast-1", "fast-2", "fast-3"]);
  const pf = await lab.startProxy("fast-device", { to: "fast-1:4222", host: bench, port: 14003 });
  await sleep(1000);
  const jsDefault = await probe(bh, ["jspub", pf.url, "BENCHDEFAULT", "1500"]);
  results.jetstream_r3 = {
    sync_always: jsAlways,
    sync_2m: jsDefault,
    rate_ratio: +(jsAlways.msgs_per_s / jsDefault.msgs_per_s).toFixed(2),
  };

  say("a 4th node joining cluster A");
  tc = Date.now();
  await lab.startNode("nats-4");
  await lab.waitForCluster(["nats-1", "nats-2", "nats-3", "nats-4"]);
  (results.formation as Record<string, number>).fourth_node_join_s = +((Date.now() - tc) / 1000).toFixed(1);
  results.memory_mib = mem;

  results.connections = await measureConnections(lab, say);
  results.release_vs_checkout = await measureReleaseVsCheckout(lab, say);
  for (const s of baseServers) s.kill();
} finally {
  await lab.stop();
  rmSync(dir, { recursive: true, force: true });
}

results.machine = { cpus: cpus().length, cpu: cpus()[0]?.model, mem_gib: Math.round(totalmem() / 2 ** 30), node: process.version };
results.took_s = Math.round((Date.now() - t0) / 1000);
mkdirSync(join(REPO_ROOT, "bench", "results"), { recursive: true });
writeFileSync(join(REPO_ROOT, "bench", "results", "latest.json"), JSON.stringify(results, null, 2) + "\n");

// ---- The table.
const tp = results.throughput as Array<{
  size: string;
  baseline: { msgs_per_s: number; mb_per_s: number; failed?: string };
  tailnet: { msgs_per_s: number; mb_per_s: number; failed?: string };
  ratio: number;
}>;
const rr = results.request_reply as {
  baseline: { p50_ms: number; p99_ms: number };
  tailnet: { p50_ms: number; p99_ms: number };
  p50_ratio: number;
};
const js = results.jetstream_r3 as {
  sync_always: { msgs_per_s: number; p50_ms: number; p99_ms: number };
  sync_2m: { msgs_per_s: number; p50_ms: number; p99_ms: number };
  rate_ratio: number;
};
const lines = [
  `| scenario | NATS on loopback | nats-tsnet over the tailnet | ratio |`,
  `|---|---|---|---|`,
  ...tp.map((r) => {
    const cell = (x: { msgs_per_s: number; mb_per_s: number; failed?: string }) =>
      x.failed ? `failed: ${x.failed}` : `${x.msgs_per_s.toLocaleString("en")} msg/s (${x.mb_per_s} MB/s)`;
    return `| core pub/sub ${r.size} | ${cell(r.baseline)} | ${cell(r.tailnet)} | ${Number.isFinite(r.ratio) && r.ratio > 0 ? r.ratio : ""} |`;
  }),
  `| request-reply p50 / p99 | ${rr.baseline.p50_ms} / ${rr.baseline.p99_ms} ms | ${rr.tailnet.p50_ms} / ${rr.tailnet.p99_ms} ms | ${rr.p50_ratio}× (p50) |`,
  `| raw TCP, one tsnet hop (no NATS) | | ${(results.raw_tcp_tsnet as { mb_per_s: number }).mb_per_s} MB/s | |`,
  `| JetStream R3 publish, sync always vs 2m | ${js.sync_2m.msgs_per_s} msg/s, p50 ${js.sync_2m.p50_ms} ms, p99 ${js.sync_2m.p99_ms} ms (2m) | ${js.sync_always.msgs_per_s} msg/s, p50 ${js.sync_always.p50_ms} ms, p99 ${js.sync_always.p99_ms} ms (always) | ${js.rate_ratio} |`,
  `| cold start to a ready 3-node cluster | | ${(results.formation as { cold_start_3_nodes_s: number }).cold_start_3_nodes_s} s | |`,
  `| 4th node's start to routes everywhere | | ${(results.formation as { fourth_node_join_s: number }).fourth_node_join_s} s | |`,
  `| memory of nats-1, idle (MiB) | | ${JSON.stringify((results.memory_mib as { idle: unknown }).idle)} | |`,
  `| memory of nats-1, peak under 1 KiB load (MiB) | | ${JSON.stringify((results.memory_mib as { under_load_1KiB_peak: unknown }).under_load_1KiB_peak)} | |`,
  `| bridge memory, 1000 KiB messages: peak, then 5 s after (MiB) | | ${JSON.stringify((results.memory_mib as { large_messages?: { peak: { "nats-tsnet-bridge"?: number }; after_5s: { "nats-tsnet-bridge"?: number } } }).large_messages?.peak["nats-tsnet-bridge"])}, ${JSON.stringify((results.memory_mib as { large_messages?: { after_5s: { "nats-tsnet-bridge"?: number } } }).large_messages?.after_5s["nats-tsnet-bridge"])} | |`,
  ...faceLines(results.faces as FaceRow[]),
  ...releaseLines(results.release_vs_checkout as ReleaseVsCheckout),
  "",
  "nats-1's bridge CPU under 1 KiB pub/sub load (Go pprof, share of samples):",
  ...Object.entries(results.bridge_profile as Record<string, number>).map(([g, v]) => `  ${g.padEnd(40)} ${v.toFixed(1).padStart(5)} %`),
];
console.log(lines.join("\n"));
console.log(["", ...connectionLines(results.connections as Connections)].join("\n"));
console.log(`\nmachine: ${JSON.stringify(results.machine)}; took ${results.took_s}s; JSON: bench/results/latest.json`);

type FaceRow = { face: string; pubsub_1KiB: { msgs_per_s: number; mb_per_s: number }; request_reply: { p50_ms: number; p99_ms: number } };

/** One row per client face: one node, publisher and subscriber on the same face; ratios to plain TCP. */
function faceLines(rows: FaceRow[]): string[] {
  const plain = rows[0]!;
  return rows.map(
    (r) =>
      `| ${r.face}, one node: pub/sub 1 KiB; request-reply p50 / p99 | | ${r.pubsub_1KiB.msgs_per_s.toLocaleString("en")} msg/s (${r.pubsub_1KiB.mb_per_s} MB/s); ${r.request_reply.p50_ms} / ${r.request_reply.p99_ms} ms | ${(r.pubsub_1KiB.msgs_per_s / plain.pubsub_1KiB.msgs_per_s).toFixed(2)} of plain; ${(r.request_reply.p50_ms / plain.request_reply.p50_ms).toFixed(1)}× p50 |`,
  );
}
