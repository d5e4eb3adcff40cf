// Starting upstream nats-server and knowing when it is ready. Readiness is
// its own /healthz on the loopback monitoring port, not a sleep.
import type { ChildProcess } from "node:child_process";
import type { Logger } from "pino";
import { binaryPath } from "../binaries.ts";
import { OperationError } from "../errors.ts";
import { eachLine, exited, spawnChild, terminate } from "../supervise/spawn.ts";
import { localGet } from "../util/http.ts";

export interface NatsServerOptions {
  confPath: string;
  monitorPort: number;
  log: Logger;
  readyTimeoutMs?: number;
  /**
   * The only TCP ports nats-server may connect to (its routes reach the
   * loopback cluster port only). On Linux it then runs under the bridge's
   * `confine` (Landlock), which says in nats-server's log whether it holds.
   */
  connectPorts?: number[];
  /** Sees each of nats-server's log lines (the text after its level tag). */
  onLine?: (text: string) => void;
}

const NATS_LEVEL: Record<string, "info" | "warn" | "error" | "debug" | "trace"> = {
  INF: "info",
  WRN: "warn",
  ERR: "error",
  FTL: "error",
  DBG: "debug",
  TRC: "trace",
};

export async function startNatsServer(o: NatsServerOptions): Promise<ChildProcess> {
  const log = o.log.child({ component: "nats-server" });
  // nats-server needs nothing of ours from the environment, least of all the auth key.
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith("TS_") || k.startsWith("NATS_TSNET_")) delete env[k];
  const plain = { cmd: binaryPath("nats-server"), args: ["-c", o.confPath] };
  // confine execs nats-server in place: the pid, signals and output are nats-server's.
  const confined = o.connectPorts && process.platform === "linux";
  const child = spawnChild({
    ...(confined
      ? { cmd: binaryPath("bridge"), args: ["confine", "--connect-ports", o.connectPorts!.join(","), "--", plain.cmd, ...plain.args] }
      : plain),
    env,
    diesWithParent: Boolean(confined),
  });
  // nats-server logs "[pid] date time [LVL] message"; keep its level.
  const onLine = (line: string) => {
    const m = /^\[\d+\] \S+ \S+ \[(\w{3})\] (.*)$/.exec(line);
    if (m) log[NATS_LEVEL[m[1]!] ?? "info"](m[2]);
    else if (line.trim()) log.info(line);
    o.onLine?.(m ? m[2]! : line);
  };
  eachLine(child.stdout, onLine);
  eachLine(child.stderr, onLine);
  const deadline = Date.now() + (o.readyTimeoutMs ?? 30_000);
  const gone = exited(child);
  let done = false;
  void gone.then(() => {
    done = true;
  });
  while (Date.now() < deadline) {
    if (done) {
      const { code, signal } = await gone;
      throw new OperationError(
        "ERR_NATS_SERVER_EXIT",
        `nats-server exited (code ${code}, signal ${signal}) during start-up; see its log lines above`,
      );
    }
    // Listening is enough to open the faces: core NATS serves at once, and a
    // clustered JetStream becomes available when its peers are routed.
    if (await healthy(o.monitorPort, "?js-enabled-only=true")) return child;
    await new Promise((r) => setTimeout(r, 100));
  }
  await terminate(child, "SIGKILL");
  throw new OperationError(
    "ERR_NATS_SERVER_TIMEOUT",
    `nats-server not healthy on 127.0.0.1:${o.monitorPort} within ${o.readyTimeoutMs ?? 30_000}ms`,
  );
}

export async function healthy(monitorPort: number, query = ""): Promise<boolean> {
  try {
    return (await localGet(monitorPort, `/healthz${query}`, 2000)).status === 200;
  } catch {
    return false;
  }
}
