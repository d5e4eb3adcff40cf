// Resident memory of one idle node, per process: the nats-tsnet node
// (Node.js), its bridge (tsnet) and nats-server. Prints a table and JSON.
// Run: node bench/idle-memory.ts   (root: it builds a local tailnet)
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { createLogger } from "../controlplane/src/log.ts";
import { LocalTailnet } from "../localtailnet/mod.ts";

function rssOf(pid: string): { comm: string; rssKiB: number } {
  // Node names its main thread, so tell processes apart by what they run.
  const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
  const comm = cmd.some((a) => a.endsWith("nats-tsnet.ts")) ? "node" : cmd[0]!.split("/").pop()!;
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return { comm, rssKiB: m ? Number(m[1]) : 0 };
}

const dir = mkdtempSync(join(tmpdir(), "nt-mem-"));
const tailnet = await LocalTailnet.start({ dir, log: createLogger({ level: "error" }) });
try {
  const clustered = process.argv.includes("--clustered");
  const names = clustered ? ["nats-1", "nats-2", "nats-3"] : ["nats-1"];
  await Promise.all(names.map((n) => tailnet.startNode(n, { config: clustered ? {} : { nats: { standalone: true } } })));
  if (clustered) await tailnet.waitForCluster(names);
  const idleSeconds = Number(process.env.IDLE_SECONDS ?? 20);
  await sleep(idleSeconds * 1000);
  const ns = tailnet.nodes.get("nats-1")!.host.netns;
  const procs = execFileSync("ip", ["netns", "pids", ns], { encoding: "utf8" }).split("\n").filter(Boolean).map(rssOf);
  const label = (c: string) => (c === "node" ? "nats-tsnet (Node.js)" : c === "nats-tsnet-bridge" ? "bridge (tsnet)" : c);
  const rows = procs.filter((p) => ["node", "nats-tsnet-bridge", "nats-server"].includes(p.comm));
  const total = rows.reduce((a, p) => a + p.rssKiB, 0);
  console.log(`idle ${idleSeconds}s, ${clustered ? "3-node cluster" : "single node"}, resident memory of nats-1:`);
  for (const p of rows) console.log(`  ${label(p.comm).padEnd(24)} ${(p.rssKiB / 1024).toFixed(1).padStart(7)} MiB`);
  console.log(`  ${"total".padEnd(24)} ${(total / 1024).toFixed(1).padStart(7)} MiB`);
  console.log(JSON.stringify({ clustered, idleSeconds, processes: rows.map((p) => ({ process: label(p.comm), rssMiB: +(p.rssKiB / 1024).toFixed(1) })), totalMiB: +(total / 1024).toFixed(1) }));
} finally {
  await tailnet.stop();
  rmSync(dir, { recursive: true, force: true });
}
