// Spawning children that cannot outlive us: even a SIGKILLed nats-tsnet
// must leave no orphaned bridge or nats-server behind. The product's children
// are all our bridge binary (nats-server runs as `bridge confine -- nats-server`),
// which asks the kernel for the parent-death signal itself when it is handed
// NATS_TSNET_PARENT_PID, so an installed node needs no other program. Anything
// else (the lab's headscale, nodes and tools) is started through setpriv(1),
// which sets the signal before exec'ing the real program.
import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, isAbsolute, join } from "node:path";
import { createInterface } from "node:readline";

export interface SpawnSpec {
  cmd: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Command prefix, e.g. `ip netns exec <ns>`: the child runs inside it. */
  wrap?: string[];
  /** Extra stdio entries from fd 3 on (e.g. a listening server to hand over). */
  extraStdio?: SpawnOptions["stdio"];
  /** Signal the child receives when this process dies; default SIGTERM. */
  deathSignal?: NodeJS.Signals;
  /** The child is our bridge binary: it sets its own parent-death signal (SIGTERM). */
  diesWithParent?: boolean;
}

export function spawnChild(spec: SpawnSpec): ChildProcess {
  const env = { ...(spec.env ?? process.env) };
  let argv: string[];
  if (spec.diesWithParent && !spec.wrap) {
    env.NATS_TSNET_PARENT_PID = String(process.pid);
    argv = [spec.cmd, ...spec.args];
  } else {
    argv = [...(spec.wrap ?? []), which("setpriv"), `--pdeathsig=${spec.deathSignal ?? "SIGTERM"}`, "--", spec.cmd, ...spec.args];
  }
  const extra = Array.isArray(spec.extraStdio) ? spec.extraStdio : [];
  // argv[0] is looked up on our PATH, not the child's: a child may be given
  // an environment without one.
  return spawn(which(argv[0]!), argv.slice(1), { env, cwd: spec.cwd, stdio: ["pipe", "pipe", "pipe", ...extra] });
}

/** cmd's path on our own PATH (cmd itself when it is a path or not found). */
function which(cmd: string): string {
  if (isAbsolute(cmd) || cmd.includes("/")) return cmd;
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    const p = join(dir, cmd);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return cmd;
}

/** Calls fn for each line the stream writes. */
export function eachLine(stream: NodeJS.ReadableStream | null, fn: (line: string) => void): void {
  if (!stream) return;
  createInterface({ input: stream, crlfDelay: Infinity }).on("line", fn);
}

/** Resolves when the child exits, with its code and signal. */
export function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
}

/** Sends sig, then SIGKILL after graceMs if the child is still there. */
export async function terminate(child: ChildProcess, sig: NodeJS.Signals = "SIGTERM", graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const done = exited(child);
  child.kill(sig);
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await done;
  clearTimeout(timer);
}
