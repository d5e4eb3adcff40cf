// The binaries a release file carries. A release file is a Node
// single-executable application (scripts/release.ts): the bridge and
// nats-server ride inside it as assets, listed with their sha256 in an
// embedded manifest. The kernel can only run a file, so each is written out
// once into a cache directory keyed by its hash, and checked against that
// hash before every start: a copy that was changed or cut short is never run,
// it is replaced from the embedded original. Nothing is ever fetched.
import { createHash } from "node:crypto";
import { closeSync, fsyncSync, lstatSync, mkdirSync, openSync, readSync, renameSync, rmSync, writeSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import * as sea from "node:sea";
import { MissingBinaryError } from "./errors.ts";

export interface Manifest {
  assets: Record<string, { sha256: string; size: number }>;
}

export function isReleaseFile(): boolean {
  return sea.isSea();
}

let manifest: Manifest | undefined;
function embeddedManifest(): Manifest {
  manifest ??= JSON.parse(sea.getAsset("manifest.json", "utf8")) as Manifest;
  return manifest;
}

/**
 * Where unpacked binaries live: NATS_TSNET_CACHE_DIR, else systemd's
 * CacheDirectory= ($CACHE_DIRECTORY), else the XDG cache directory.
 */
export function cacheRoot(env: NodeJS.ProcessEnv): string {
  if (env.NATS_TSNET_CACHE_DIR) return env.NATS_TSNET_CACHE_DIR;
  // systemd joins several CacheDirectory= entries with ':'; ours is the first.
  if (env.CACHE_DIRECTORY) return env.CACHE_DIRECTORY.split(":")[0]!;
  const xdg = env.XDG_CACHE_HOME || join(env.HOME || homedir(), ".cache");
  return join(xdg, "nats-tsnet");
}

function fail(message: string, cause?: unknown): never {
  throw new MissingBinaryError(message, { code: "ERR_EMBEDDED_BINARY", cause });
}

/**
 * A directory only we may write: ours, and no group or other bits. A
 * directory someone else can write to could swap a binary between our
 * check and the kernel's exec.
 */
function ownDir(path: string): void {
  try {
    mkdirSync(path, { recursive: true, mode: 0o700 });
  } catch (e) {
    fail(`cannot create the cache directory ${path} (set NATS_TSNET_CACHE_DIR to a writable directory)`, e);
  }
  const st = lstatSync(path);
  const uid = process.getuid?.();
  if (!st.isDirectory()) fail(`${path} is not a directory`);
  if (uid !== undefined && st.uid !== uid) fail(`the cache directory ${path} belongs to uid ${st.uid}, not to this user (${uid})`);
  if (st.mode & 0o022)
    fail(`the cache directory ${path} is writable by group or others (mode ${(st.mode & 0o777).toString(8)}): chmod 700 it`);
}

/** sha256 of a file, read in chunks (the binaries are tens of MB). */
function sha256File(path: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch {
    return undefined;
  }
  try {
    const h = createHash("sha256");
    const buf = Buffer.allocUnsafe(1 << 20);
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0;) h.update(buf.subarray(0, n));
    return h.digest("hex");
  } finally {
    closeSync(fd);
  }
}

/** Writes bytes to path atomically (temp file, fsync, rename), owner read+execute only. */
function writeExecutable(path: string, bytes: Uint8Array): void {
  const tmp = `${path}.${process.pid}.tmp`;
  const fd = openSync(tmp, "wx", 0o500);
  try {
    for (let off = 0; off < bytes.length;) off += writeSync(fd, bytes, off, bytes.length - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

/**
 * The path of an embedded binary, unpacked and verified. Throws
 * ERR_EMBEDDED_BINARY when the file cannot be made right.
 */
export function embeddedBinary(file: string, env: NodeJS.ProcessEnv = process.env): string {
  const entry = embeddedManifest().assets[file];
  if (!entry) throw new MissingBinaryError(`${file} is not carried by this release file`);
  const root = cacheRoot(env);
  const dir = join(root, "bin", entry.sha256.slice(0, 32));
  for (const d of [root, join(root, "bin"), dir]) ownDir(d);
  const path = join(dir, file);
  if (sha256File(path) === entry.sha256) return path;
  // Missing, or not what we carry: (re)write it from the embedded original.
  rmSync(path, { force: true });
  try {
    writeExecutable(path, new Uint8Array(sea.getRawAsset(file) as ArrayBuffer));
  } catch (e) {
    fail(`cannot unpack ${file} into ${dir}: ${(e as Error).message}`, e);
  }
  const got = sha256File(path);
  if (got !== entry.sha256) fail(`${path} does not match its sha256 after unpacking (got ${got}, want ${entry.sha256})`);
  return path;
}
