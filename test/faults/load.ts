// The fault suite's client: publishes with acks to one stream until stopped,
// the way a careful producer does, and remembers everything it was told.
import { setTimeout as sleep } from "node:timers/promises";
import type { NatsConnection } from "@nats-io/transport-node";
import { jetstream } from "@nats-io/jetstream";

export class Load {
  /** stream sequence -> message ID, for every acknowledged publish. */
  readonly acked = new Map<number, string>();
  /** Every message ID ever sent, acknowledged or not. */
  readonly attempted = new Set<string>();
  /** IDs with at least one attempt that got no acknowledgement. */
  readonly unackedIds = new Set<string>();
  /**
   * Acknowledgements flagged as duplicates: an earlier attempt of that ID,
   * never acknowledged to us, had been stored after all.
   */
  duplicateAcks = 0;
  /** Publish attempts that failed (timeout, no responders, an API error). */
  failures = 0;
  /** Distinct error texts the client saw, with counts: what an application would see. */
  readonly errors = new Map<string, number>();
  /** Client reconnect gaps, ms. */
  readonly reconnects: number[] = [];
  private stopped = false;
  private loop?: Promise<void>;
  private disconnectedAt = 0;

  readonly nc: NatsConnection;
  readonly stream: string;

  constructor(nc: NatsConnection, stream: string) {
    this.nc = nc;
    this.stream = stream;
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === "disconnect") this.disconnectedAt = Date.now();
        if (s.type === "reconnect" && this.disconnectedAt) this.reconnects.push(Date.now() - this.disconnectedAt);
      }
    })();
  }

  start(): void {
    const js = jetstream(this.nc, { timeout: 5000 });
    let i = 0;
    this.loop = (async () => {
      let id = "";
      while (!this.stopped) {
        // A message that was not acknowledged is retried under the same ID;
        // the stream's duplicate window must keep it from being stored twice.
        if (!id) id = `${this.stream}-${++i}`;
        this.attempted.add(id);
        try {
          const a = await js.publish(`${this.stream}.x`, new TextEncoder().encode(id), { msgID: id });
          if (a.duplicate) this.duplicateAcks++;
          this.acked.set(a.seq, id);
          id = "";
        } catch (e) {
          this.failures++;
          this.unackedIds.add(id);
          const what = String((e as Error).message).slice(0, 80);
          this.errors.set(what, (this.errors.get(what) ?? 0) + 1);
          await sleep(200);
        }
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}
