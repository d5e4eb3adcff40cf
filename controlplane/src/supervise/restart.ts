// Restart with backoff. A child that dies is started again after a delay
// that doubles per crash; one that keeps dying inside the window is a crash
// loop, reported instead of hammered on forever.
import { EventEmitter } from "node:events";
import type { ChildProcess } from "node:child_process";
import type { Logger } from "pino";
import { exited, terminate } from "./spawn.ts";
import { CrashLoopError } from "../errors.ts";

export interface RestartPolicy {
  initialDelayMs: number;
  maxDelayMs: number;
  /** More than this many crashes within windowMs is a crash loop. */
  maxCrashes: number;
  windowMs: number;
}

export const DEFAULT_POLICY: RestartPolicy = { initialDelayMs: 500, maxDelayMs: 30_000, maxCrashes: 5, windowMs: 60_000 };

/**
 * Keeps one child running. `start` makes a ready child (it resolves only
 * once the child is usable, e.g. healthz answered); `stop` ends it for good.
 * Events: "restarted" (child), "crashloop" (CrashLoopError).
 */
export class Supervisor extends EventEmitter {
  child?: ChildProcess;
  restarts = 0;
  private stopping = false;
  private crashes: number[] = [];
  private readonly name: string;
  private readonly start: () => Promise<ChildProcess>;
  private readonly log: Logger;
  private readonly policy: RestartPolicy;

  constructor(name: string, start: () => Promise<ChildProcess>, log: Logger, policy: RestartPolicy = DEFAULT_POLICY) {
    super();
    this.name = name;
    this.start = start;
    this.log = log;
    this.policy = policy;
  }

  async run(): Promise<ChildProcess> {
    const child = await this.start();
    this.watch(child);
    return child;
  }

  private watch(child: ChildProcess): void {
    this.child = child;
    void exited(child).then(({ code, signal }) => {
      if (this.stopping || this.child !== child) return;
      this.log.warn({ process: this.name, code, signal }, "process exited unexpectedly");
      void this.restart();
    });
  }

  private async restart(): Promise<void> {
    const now = Date.now();
    this.crashes = [...this.crashes.filter((t) => now - t < this.policy.windowMs), now];
    if (this.crashes.length > this.policy.maxCrashes) {
      const err = new CrashLoopError(`${this.name} crashed ${this.crashes.length} times within ${this.policy.windowMs / 1000}s; giving up`);
      this.log.error({ process: this.name, err: err.message }, "crash loop");
      this.emit("crashloop", err);
      return;
    }
    const delay = Math.min(this.policy.initialDelayMs * 2 ** (this.crashes.length - 1), this.policy.maxDelayMs);
    this.log.info({ process: this.name, delayMs: delay, attempt: this.crashes.length }, "restarting");
    await new Promise((r) => setTimeout(r, delay));
    if (this.stopping) return;
    try {
      const child = await this.start();
      this.restarts++;
      this.watch(child);
      this.emit("restarted", child);
    } catch (err) {
      this.log.warn({ process: this.name, err: (err as Error).message }, "restart failed");
      void this.restart();
    }
  }

  /**
   * Ends the child on purpose and starts a new one: not a crash, so it
   * neither counts toward the crash budget nor logs as one.
   */
  async replace(): Promise<void> {
    const old = this.child;
    this.child = undefined; // its exit is ours, not a crash (see watch)
    if (old) await terminate(old, "SIGTERM", 60_000);
    if (this.stopping) return;
    const child = await this.start();
    this.restarts++;
    this.watch(child);
    this.emit("restarted", child);
  }

  /** Stops supervising; the caller ends the child itself. */
  release(): ChildProcess | undefined {
    this.stopping = true;
    return this.child;
  }
}
