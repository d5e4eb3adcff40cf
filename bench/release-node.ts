// The release file beside a checkout: one standalone node of each, in the
// same lab, started the same way. Start-up is measured from spawn to the
// node's "ready" line (tailnet login included); the release file is timed
// twice, with an empty cache (it unpacks the bridge and nats-server) and
// with a warm one. Idle memory is each process's resident set after a
// quiet spell, split into anonymous memory (the heap: what the process
// really costs) and file-backed pages (the executable's own pages, shared
// with the page cache, and counted more generously for a file that was
// just written: the kernel maps whole cached runs around each fault, so the
// release file's pages are dropped from the cache before its warm start).
import { copyFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { execFileSync } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import { namespaceProcessMemory, testReleaseFile, type LocalTailnet, type ProcessMemory } from "../localtailnet/mod.ts";

export const MEM_TAG = "tag:nats-mem";

const total = (m: Record<string, ProcessMemory>) =>
  +Object.values(m)
    .reduce((a, p) => a + p.rss, 0)
    .toFixed(1);

export interface ReleaseVsCheckout {
  start_to_ready_s: { checkout: number; release_cold_cache: number; release_warm_cache: number };
  idle_mib: { checkout: Record<string, ProcessMemory>; release: Record<string, ProcessMemory> };
  idle_total_mib: { checkout: number; release: number };
}

export async function measureReleaseVsCheckout(lab: LocalTailnet, say: (s: string) => void, idleSeconds = 20): Promise<ReleaseVsCheckout> {
  say("release file vs checkout: start-up and idle memory");
  const exe = join(lab.dir, "release", "nats-tsnet");
  mkdirSync(join(lab.dir, "release", "empty-path"), { recursive: true });
  copyFileSync(testReleaseFile(), exe);
  const config = { tailnet: { cluster_tag: MEM_TAG }, nats: { standalone: true } };
  const bareEnv = { PATH: join(lab.dir, "release", "empty-path"), HOME: join(lab.dir, "release") };
  const timed = async (f: () => Promise<unknown>) => {
    const t0 = Date.now();
    await f();
    return +((Date.now() - t0) / 1000).toFixed(2);
  };
  const checkout = await timed(() => lab.startNode("mem-checkout", { config, keyTags: [MEM_TAG] }));
  const cold = await timed(() => lab.startNode("mem-release", { config, keyTags: [MEM_TAG], exe, bareEnv }));
  await lab.stopNode("mem-release");
  // As on a host where the file was installed a while ago: drop this file's
  // pages from the page cache (dd's nocache), else the kernel maps in whole
  // cached runs of the just-written file and its RSS counts them.
  execFileSync("dd", [`if=${exe}`, "iflag=nocache", "count=0", "status=none"]);
  const warm = await timed(() => lab.startNode("mem-release", { config, keyTags: [MEM_TAG], exe, bareEnv }));
  await sleep(idleSeconds * 1000);
  const idle = {
    checkout: namespaceProcessMemory(lab.nodes.get("mem-checkout")!.host.netns),
    release: namespaceProcessMemory(lab.nodes.get("mem-release")!.host.netns),
  };
  await lab.stopNode("mem-checkout");
  await lab.stopNode("mem-release");
  return {
    start_to_ready_s: { checkout, release_cold_cache: cold, release_warm_cache: warm },
    idle_mib: idle,
    idle_total_mib: { checkout: total(idle.checkout), release: total(idle.release) },
  };
}

/** The table's rows for it. */
export function releaseLines(r: ReleaseVsCheckout): string[] {
  const fmt = (m: Record<string, ProcessMemory>) =>
    Object.entries(m)
      .map(([k, v]) => `${k} ${v.rss} (anon ${v.anon})`)
      .join(", ");
  return [
    `| start to ready, standalone node | checkout ${r.start_to_ready_s.checkout} s (first start) | release file ${r.start_to_ready_s.release_cold_cache} s (first start, empty cache), ${r.start_to_ready_s.release_warm_cache} s (restart, warm cache) | ${(r.start_to_ready_s.release_cold_cache / r.start_to_ready_s.checkout).toFixed(2)} (first starts) |`,
    `| idle memory, standalone node, MiB RSS | checkout ${r.idle_total_mib.checkout}: ${fmt(r.idle_mib.checkout)} | release file ${r.idle_total_mib.release}: ${fmt(r.idle_mib.release)} | ${(r.idle_total_mib.release / r.idle_total_mib.checkout).toFixed(2)} |`,
  ];
}

// Run alone: node bench/release-node.ts (root: it builds a local tailnet).
if (import.meta.main) {
  const { mkdtempSync, rmSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const { createLogger } = await import("../controlplane/src/mod.ts");
  const { LocalTailnet, DEV_USER } = await import("../localtailnet/mod.ts");
  const dir = mkdtempSync(join(tmpdir(), "nt-bench-release-"));
  const lab = await LocalTailnet.start({
    dir,
    log: createLogger({ level: "error" }),
    policy: { tagOwners: { [MEM_TAG]: [`${DEV_USER}@`] }, acls: [] },
  });
  try {
    const r = await measureReleaseVsCheckout(lab, (s) => process.stderr.write(`bench: ${s}\n`));
    console.log(JSON.stringify(r, null, 2));
    console.log(releaseLines(r).join("\n"));
  } finally {
    await lab.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
