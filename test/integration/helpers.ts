// Shared set-up for integration tests: a real local tailnet per test file,
// logs kept in a file (printed when a test fails) rather than on the console.
import { mkdtempSync, rmSync, createWriteStream, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { connect as tcpConnect } from "node:net";
import { createLogger, deepMerge } from "../../controlplane/src/mod.ts";
import { connect, type ConnectionOptions, type NatsConnection } from "@nats-io/transport-node";
import { LocalTailnet, type LabProxy } from "../../localtailnet/mod.ts";

export { testReleaseFile } from "../../localtailnet/mod.ts";

/**
 * A nats.js client for tests. Servers gossip their tailnet names to clients
 * (client_advertise); this process is not on the tailnet, so it must never
 * try them: resolving a tailnet name here would ask the host's resolver.
 */
export function natsConnect(servers: string | string[], opts: ConnectionOptions = {}): Promise<NatsConnection> {
  // 10 s, not nats.js's few: a device's first connection waits for its first
  // WireGuard handshake, which on a loaded 2-core machine (the whole suite
  // runs there) has taken over 3 s. Tests that expect a refusal get it at once.
  return connect({ timeout: 10_000, ...opts, servers, ignoreClusterUpdates: true });
}

export interface TestTailnet {
  tailnet: LocalTailnet;
  dir: string;
  logFile: string;
  cleanup(): Promise<void>;
  /** Runs before the tailnet is torn down, even when a test failed half-way. */
  onCleanup(fn: () => unknown): void;
}

export async function startTestTailnet(name: string): Promise<TestTailnet> {
  const dir = mkdtempSync(join(tmpdir(), `nt-${name}-`));
  const logFile = join(dir, "test.log");
  const log = createLogger({ level: "debug", dest: createWriteStream(logFile) });
  const tailnet = await LocalTailnet.start({ dir: join(dir, "lab"), log, verbose: true });
  const hooks: Array<() => unknown> = [];
  return {
    tailnet,
    dir,
    logFile,
    onCleanup: (fn) => hooks.push(fn),
    cleanup: async () => {
      for (const h of hooks.reverse())
        await Promise.resolve()
          .then(h)
          .catch(() => {});
      await tailnet.stop();
      if (!process.env.KEEP_TEST_DIRS) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The tail of the lab log, for assertion messages. */
export function logTail(t: TestTailnet, lines = 40): string {
  try {
    return readFileSync(t.logFile, "utf8").trim().split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}

/** Polls fn until it returns a truthy value or the time is up. */
export async function eventually<T>(fn: () => T | Promise<T>, ms = 15_000, what = "condition"): Promise<NonNullable<T>> {
  const deadline = Date.now() + ms;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (e) {
      last = e;
    }
    await sleep(200);
  }
  throw new Error(`${what} not reached within ${ms}ms${last ? `: ${(last as Error).message}` : ""}`);
}

/**
 * One SOCKS5 CONNECT (RFC 1928, no-auth) through a proxy on 127.0.0.1: the
 * server's reply code (0 = succeeded) and, when it succeeded, the first line
 * the destination sent.
 */
export function socks5Connect(proxyPort: number, host: string, port: number): Promise<{ reply: number; firstLine: string }> {
  return new Promise((resolve, reject) => {
    const s = tcpConnect(proxyPort, "127.0.0.1");
    const name = Buffer.from(host);
    let stage = 0;
    let buf = Buffer.alloc(0);
    const done = (v: { reply: number; firstLine: string }) => {
      s.destroy();
      resolve(v);
    };
    s.on("connect", () => s.write(Buffer.from([5, 1, 0])));
    s.on("data", (d) => {
      buf = Buffer.concat([buf, d]);
      if (stage === 0 && buf.length >= 2) {
        if (buf[0] !== 5 || buf[1] !== 0) return done({ reply: -1, firstLine: "" });
        buf = buf.subarray(2);
        stage = 1;
        s.write(Buffer.concat([Buffer.from([5, 1, 0, 3, name.length]), name, Buffer.from([port >> 8, port & 0xff])]));
      }
      if (stage === 1 && buf.length >= 10) {
        if (buf[1] !== 0) return done({ reply: buf[1]!, firstLine: "" });
        buf = buf.subarray(10);
        stage = 2;
      }
      if (stage === 2 && buf.includes("\r\n")) done({ reply: 0, firstLine: buf.toString().split("\r\n")[0]! });
    });
    s.on("error", reject);
    s.on("close", () => resolve({ reply: -2, firstLine: "" }));
    s.setTimeout(15_000, () => {
      s.destroy();
      reject(new Error("SOCKS5 timed out"));
    });
  });
}

/** Auth mode operator on two clustered nodes sharing the store (more config merged in), and a client device that reaches nats-2. */
export async function startOperatorPair(t: TestTailnet, store: string, more: Record<string, unknown> = {}): Promise<LabProxy> {
  const config = deepMerge({ auth: { mode: "operator", operator_dir: store } }, more);
  await Promise.all(["nats-1", "nats-2"].map((n) => t.tailnet.startNode(n, { config })));
  await t.tailnet.waitForCluster(["nats-1", "nats-2"]);
  return t.tailnet.startProxy("client-1", { to: "nats-2:4222" });
}
