// What this nats-tsnet is: its own version and commit, and the versions of
// what it carries (Node, nats-server, tailscale.com). A release file has
// them baked in at build time (scripts/release.ts defines
// __NATS_TSNET_BUILD__); a checkout reads them from the same sources the
// release script reads: package.json, the Go module pins and git.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";

export interface BuildInfo {
  version: string;
  /** The git commit, with "-dirty" when the tree had changes; "unknown" outside git. */
  commit: string;
  nats_server: string;
  tailscale: string;
  /** The Go toolchain that built the bridge and nats-server. */
  go: string;
}

export interface VersionReport extends BuildInfo {
  node: string;
  platform: string;
  arch: string;
  /** true for a release file (one executable), false for a checkout. */
  release: boolean;
}

declare const __NATS_TSNET_BUILD__: BuildInfo | undefined;

/** The pinned version of a module in a go.mod file (a require line). */
export function goModVersion(goMod: string, module: string): string {
  const escaped = module.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const m = new RegExp(`^\\s*(?:require\\s+)?${escaped}\\s+(v\\S+)`, "m").exec(goMod);
  return m?.[1] ?? "unknown";
}

/** Reads the build information from a checkout at root. */
export function checkoutBuildInfo(root: string): BuildInfo {
  const read = (p: string) => readFileSync(join(root, p), "utf8");
  const git = (args: string[]) => {
    try {
      return execFileSync("git", ["-C", root, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    } catch {
      return undefined;
    }
  };
  const head = git(["rev-parse", "HEAD"]);
  const dirty = head !== undefined && git(["status", "--porcelain", "--untracked-files=no"]) !== "";
  let go = "unknown";
  try {
    go = execFileSync("go", ["env", "GOVERSION"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    // No Go on this machine: the binaries were built elsewhere.
  }
  return {
    version: (JSON.parse(read("package.json")) as { version: string }).version,
    commit: head ? head + (dirty ? "-dirty" : "") : "unknown",
    nats_server: goModVersion(read("upstream/nats-server/go.mod"), "github.com/nats-io/nats-server/v2"),
    tailscale: goModVersion(read("dataplane/go.mod"), "tailscale.com"),
    go,
  };
}

export function versionReport(repoRoot: string, release: boolean): VersionReport {
  const build = typeof __NATS_TSNET_BUILD__ !== "undefined" ? __NATS_TSNET_BUILD__ : checkoutBuildInfo(repoRoot);
  return { ...build, node: process.versions.node, platform: process.platform, arch: process.arch, release };
}

export function formatVersion(r: VersionReport): string {
  const rows: Array<[string, string]> = [
    ["commit", r.commit],
    ["node", `v${r.node}`],
    ["nats-server", r.nats_server],
    ["tailscale.com", r.tailscale],
    ["go", r.go],
    ["built as", `${r.release ? "release file" : "checkout"} (${r.platform}/${r.arch})`],
  ];
  return [`nats-tsnet ${r.version}`, ...rows.map(([k, v]) => `  ${k.padEnd(14)}${v}`)].join("\n") + "\n";
}
