// The fault tests' power-cut filesystem: lazyfs (localtailnet/lazyfs, built
// by scripts/build.sh) mounted over a backing directory holds file data that
// was not fsynced in memory, and drops it on powerCut(), as losing power
// would. Metadata (create, rename, unlink, truncate) reaches the backing
// directory at once; see the Go program's node.go for why.
import type { ChildProcess } from "node:child_process";
import { execFile } from "node:child_process";
import { accessSync, constants, mkdirSync, readFileSync } from "node:fs";
import { createConnection } from "node:net";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { MissingBinaryError, REPO_ROOT, eachLine, exited, spawnChild, terminate } from "../controlplane/src/mod.ts";

const run = promisify(execFile);

const READY_MS = 10_000;
const EXIT_MS = 15_000;
const COMMAND_MS = 30_000; // a sync writes everything held
const STDERR_LINES = 40;

export interface LazyFsOptions {
  backing: string;
  mountpoint: string;
  /** The control socket; default `<mountpoint>.lazyfs.sock`. */
  control?: string;
}

export interface LazyFsStats {
  /** Bytes in pages written and not fsynced (page granularity, up to each file's size). */
  dirty_bytes: number;
  dirty_files: number;
  /** fsync and fdatasync calls, and writes through O_SYNC or O_DSYNC handles. */
  fsyncs: number;
  writes: number;
}

export interface PowerCutResult {
  dropped_bytes: number;
  dropped_files: number;
}

export class LazyFs {
  readonly backing: string;
  readonly mountpoint: string;
  readonly control: string;
  private child?: ChildProcess;
  private stderr: string[] = [];

  private constructor(o: LazyFsOptions) {
    this.backing = resolve(o.backing);
    this.mountpoint = resolve(o.mountpoint);
    this.control = resolve(o.control ?? `${this.mountpoint}.lazyfs.sock`);
    // sun_path holds 108 bytes, the terminating NUL included.
    if (Buffer.byteLength(this.control) > 107) throw new Error(`lazyfs control socket path too long for a Unix socket: ${this.control}`);
  }

  /** Mounts a lazy filesystem at o.mountpoint over o.backing (both made if missing). */
  static async mount(o: LazyFsOptions): Promise<LazyFs> {
    const fs = new LazyFs(o);
    await fs.start();
    return fs;
  }

  stats(): Promise<LazyFsStats> {
    return this.command("stats");
  }

  /** Flushes everything held, as sync(2). */
  sync(): Promise<{ flushed_bytes: number }> {
    return this.command("sync");
  }

  /**
   * Drops everything not fsynced and unmounts (lazily while files are open:
   * what still uses them then fails). Resolves once the program has exited
   * and the mount is gone; remount() brings the filesystem back.
   */
  async powerCut(): Promise<PowerCutResult> {
    const child = this.running("power cut");
    const done = exited(child);
    const dropped = await this.command<PowerCutResult>("powercut");
    const { code, signal } = await within(done, EXIT_MS, () => this.failure(`did not exit within ${EXIT_MS}ms of the power cut`));
    this.child = undefined;
    if (code !== 0) throw this.failure(`exited with code ${code}, signal ${signal}, after the power cut`);
    if (isMounted(this.mountpoint)) throw this.failure("exited after the power cut but is still mounted");
    return dropped;
  }

  /** Mounts again over the same directories, after a power cut or unmount(). */
  async remount(): Promise<void> {
    if (this.child) throw new Error(`lazyfs on ${this.mountpoint} is still mounted`);
    await this.start();
  }

  /**
   * A clean shutdown (SIGTERM): lazyfs flushes everything held, then
   * unmounts. Throws if data could not be flushed.
   */
  async unmount(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = undefined;
    const done = exited(child);
    await terminate(child, "SIGTERM", EXIT_MS);
    const { code, signal } = await done;
    if (isMounted(this.mountpoint)) await detach(this.mountpoint); // killed: its mount is left dead
    if (code !== 0) throw this.failure(`did not shut down cleanly (code ${code}, signal ${signal})`);
  }

  private async start(): Promise<void> {
    mkdirSync(this.backing, { recursive: true });
    mkdirSync(this.mountpoint, { recursive: true });
    if (isMounted(this.mountpoint)) await detach(this.mountpoint); // left dead by a killed lazyfs
    this.stderr = [];
    const child = spawnChild({ cmd: lazyfsPath(), args: ["-backing", this.backing, "-mount", this.mountpoint, "-control", this.control] });
    eachLine(child.stderr, (line) => {
      this.stderr.push(line);
      if (this.stderr.length > STDERR_LINES) this.stderr.shift();
    });
    const ready = new Promise<void>((resolve, reject) => {
      eachLine(child.stdout, (line) => {
        if (line.trim() === '{"ready":true}') resolve();
      });
      void exited(child).then(({ code, signal }) => reject(this.failure(`exited (code ${code}, signal ${signal}) before it was ready`)));
    });
    try {
      await within(ready, READY_MS, () => this.failure(`not ready within ${READY_MS}ms`));
    } catch (e) {
      await terminate(child, "SIGKILL");
      throw e;
    }
    this.child = child;
  }

  private running(what: string): ChildProcess {
    if (!this.child) throw new Error(`lazyfs on ${this.mountpoint} is not mounted: no ${what}`);
    return this.child;
  }

  /** Sends one command on the control socket and returns its answer. */
  private async command<T>(cmd: string): Promise<T> {
    this.running(cmd);
    return await new Promise<T>((resolve, reject) => {
      const sock = createConnection(this.control);
      let buf = "";
      let settled = false;
      const settle = (err: Error | undefined, answer?: T) => {
        if (settled) return;
        settled = true;
        sock.destroy();
        if (err) reject(new Error(`lazyfs ${cmd} on ${this.control}: ${err.message}`, { cause: err }));
        else resolve(answer!);
      };
      sock.setEncoding("utf8");
      sock.setTimeout(COMMAND_MS, () => settle(new Error(`no answer within ${COMMAND_MS}ms`)));
      sock.on("error", (e) => settle(e));
      sock.on("close", () => settle(new Error("connection closed without an answer")));
      sock.on("data", (chunk: string) => {
        buf += chunk;
        const nl = buf.indexOf("\n");
        if (nl < 0) return;
        const answer = JSON.parse(buf.slice(0, nl)) as T & { error?: string };
        settle(answer.error === undefined ? undefined : new Error(answer.error), answer);
      });
      sock.write(cmd + "\n");
    });
  }

  /** An error about this mount that ends with what lazyfs last logged. */
  private failure(what: string): Error {
    const log = this.stderr.length ? `; stderr:\n${this.stderr.join("\n")}` : " (nothing on stderr)";
    return new Error(`lazyfs on ${this.mountpoint} ${what}${log}`);
  }
}

function lazyfsPath(): string {
  const path = process.env.LAZYFS_BIN || join(REPO_ROOT, ".cache", "bin", "lazyfs");
  try {
    accessSync(path, constants.X_OK);
  } catch (cause) {
    throw new MissingBinaryError(`lazyfs not found at ${path}: run scripts/build.sh (or set LAZYFS_BIN)`, { cause });
  }
  return path;
}

/** The mount points listed in a mountinfo file (proc(5)), unescaped. */
export function mountPoints(mountinfo: string): string[] {
  return mountinfo
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => line.split(" ")[4]!.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8))));
}

function isMounted(path: string): boolean {
  return mountPoints(readFileSync("/proc/self/mountinfo", "utf8")).includes(path);
}

/** Lazily unmounts path (a dead FUSE mount cannot be unmounted otherwise). */
async function detach(path: string): Promise<void> {
  await run("umount", ["-l", path], { timeout: EXIT_MS });
}

/** p, or the error onTimeout makes if p has not settled within ms. */
async function within<T>(p: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
