// Spawning children that cannot outlive us. setpriv(1) sets the Linux
// parent-death signal before exec'ing the real program, so that even a
// SIGKILLed nats-tsnet leaves no orphaned bridge or nats-server behind
// (upstream nats-server cannot be taught to watch its parent itself).
import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
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
}

export function spawnChild(spec: SpawnSpec): ChildProcess {
  const argv = [...(spec.wrap ?? []), "setpriv", `--pdeathsig=${spec.deathSignal ?? "SIGTERM"}`, "--", spec.cmd, ...spec.args];
  const extra = Array.isArray(spec.extraStdio) ? spec.extraStdio : [];
  return spawn(argv[0]!, argv.slice(1), {
    env: spec.env ?? process.env,
    cwd: spec.cwd,
    stdio: ["pipe", "pipe", "pipe", ...extra],
  });
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
