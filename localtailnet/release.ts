// The release file for tests and benchmarks (lab tooling, never shipped).
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "../controlplane/src/mod.ts";

/**
 * The amd64 release file built from this tree, the fast form of `npm run
 * release` (no archives). It is built once per state of its inputs and
 * shared by the test files that need it, under .cache/test-release/<hash>;
 * NATS_TSNET_RELEASE_FILE points at another file instead. A broken release
 * build fails every test that calls this.
 */
export function testReleaseFile(): string {
  if (process.env.NATS_TSNET_RELEASE_FILE) return process.env.NATS_TSNET_RELEASE_FILE;
  const files = execFileSync(
    "git",
    ["-C", REPO_ROOT, "ls-files", "-co", "--exclude-standard", "controlplane", "dataplane", "upstream/nats-server", "scripts"],
    {
      encoding: "utf8",
    },
  )
    .split("\n")
    .filter(Boolean)
    .concat("package-lock.json");
  const h = createHash("sha256");
  for (const f of files.sort()) if (existsSync(join(REPO_ROOT, f))) h.update(f).update(readFileSync(join(REPO_ROOT, f)));
  const out = join(REPO_ROOT, ".cache", "test-release", h.digest("hex").slice(0, 16));
  const exe = join(out, "nats-tsnet-linux-amd64");
  if (!existsSync(exe)) {
    rmSync(join(REPO_ROOT, ".cache", "test-release"), { recursive: true, force: true });
    execFileSync(process.execPath, [join(REPO_ROOT, "scripts", "release.ts"), "--arch", "amd64", "--out", out + ".tmp", "--no-archives"], {
      stdio: ["ignore", "ignore", "pipe"],
      timeout: 600_000,
    });
    renameSync(out + ".tmp", out);
  }
  return exe;
}
