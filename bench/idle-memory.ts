// Resident memory of one idle node, per process: the nats-tsnet node
// (Node.js), its bridge (tsnet) and nats-server. Prints a table and JSON.
// Run: node bench/idle-memory.ts [--clustered] [--cold]   (root: it builds a local tailnet)
//
// The lab runs a checkout's node as a release file runs: with its V8 flags
// and, thanks to Node's compile cache, without TypeScript (localtailnet/lab.ts).
// A node started and stopped first fills that cache. --cold measures nodes
// that run without the cache: they carry Node's TypeScript stripper, as a
// checkout's node does right after an edit.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { createLogger } from "../controlplane/src/mod.ts";
import { LocalTailnet, namespaceMemory } from "../localtailnet/mod.ts";

const dir = mkdtempSync(join(tmpdir(), "nt-mem-"));
const tailnet = await LocalTailnet.start({ dir, log: createLogger({ level: "error" }) });
try {
  const clustered = process.argv.includes("--clustered");
  const cold = process.argv.includes("--cold");
  if (!cold) {
    await tailnet.startNode("warm-up", { config: { nats: { standalone: true } } });
    await tailnet.stopNode("warm-up");
  }
  const names = clustered ? ["nats-1", "nats-2", "nats-3"] : ["nats-1"];
  const env = cold ? { NODE_DISABLE_COMPILE_CACHE: "1" } : {};
  await Promise.all(names.map((n) => tailnet.startNode(n, { config: clustered ? {} : { nats: { standalone: true } }, env })));
  if (clustered) await tailnet.waitForCluster(names);
  const idleSeconds = Number(process.env.IDLE_SECONDS ?? 20);
  await sleep(idleSeconds * 1000);
  const ns = tailnet.nodes.get("nats-1")!.host.netns;
  const mem = namespaceMemory(ns);
  const label = (c: string) => (c === "nats-tsnet" ? "nats-tsnet (Node.js)" : c === "nats-tsnet-bridge" ? "bridge (tsnet)" : c);
  const rows = ["nats-tsnet", "nats-tsnet-bridge", "nats-server"].filter((c) => c in mem).map((c) => ({ comm: c, rssKiB: mem[c]! * 1024 }));
  const total = rows.reduce((a, p) => a + p.rssKiB, 0);
  console.log(
    `idle ${idleSeconds}s, ${clustered ? "3-node cluster" : "single node"}${cold ? ", no compile cache" : ""}, resident memory of nats-1:`,
  );
  for (const p of rows) console.log(`  ${label(p.comm).padEnd(24)} ${(p.rssKiB / 1024).toFixed(1).padStart(7)} MiB`);
  console.log(`  ${"total".padEnd(24)} ${(total / 1024).toFixed(1).padStart(7)} MiB`);
  console.log(
    JSON.stringify({
      clustered,
      cold,
      idleSeconds,
      processes: rows.map((p) => ({ process: label(p.comm), rssMiB: +(p.rssKiB / 1024).toFixed(1) })),
      totalMiB: +(total / 1024).toFixed(1),
    }),
  );
} finally {
  await tailnet.stop();
  rmSync(dir, { recursive: true, force: true });
}
