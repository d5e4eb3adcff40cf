// Shared set-up for integration tests: a real local tailnet per test file,
// logs kept in a file (printed when a test fails) rather than on the console.
import { mkdtempSync, rmSync, createWriteStream, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { createLogger } from "../../controlplane/src/mod.ts";
import { connect, type ConnectionOptions, type NatsConnection } from "@nats-io/transport-node";
import { LocalTailnet } from "../../localtailnet/mod.ts";

/**
 * A nats.js client for tests. Servers gossip their tailnet names to clients
 * (client_advertise); this process is not on the tailnet, so it must never
 * try them: resolving a tailnet name here would ask the host's resolver.
 */
export function natsConnect(servers: string | string[], opts: ConnectionOptions = {}): Promise<NatsConnection> {
  return connect({ timeout: 3000, ...opts, servers, ignoreClusterUpdates: true });
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
