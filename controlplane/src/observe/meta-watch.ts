// Whether this server is still in the JetStream meta group, as the meta
// leader sees it.
//
// A server removed with `peer remove` while it was cut off does not always
// learn it: if it catches up on its own removal nats-server turns JetStream
// off and says so in its log (store-health.ts), but if the leader sends it a
// snapshot, or refuses it for the five minutes after the removal, it keeps
// running as if it were a member and says nothing. Only the leader knows, so
// ask the leader, and say so once the answer has stayed "not listed" long
// enough that a server joining for the first time would have been added.
import type { MetaView } from "./sys.ts";

export type MetaVerdict = "member" | "out" | "unknown";

/**
 * What the leader's view says about `self`. No leader, or no answer, is
 * unknown: a server cut off from the others cannot tell, and must not
 * conclude it was removed.
 */
export function metaVerdict(self: string, view: MetaView | undefined): MetaVerdict {
  if (!view?.leader) return "unknown";
  if (view.leader === self) return "member";
  return (view.replicas ?? []).some((r) => r.name === self) ? "member" : "out";
}

/**
 * Turns verdicts into one decision: "out" only after `patience` ms of
 * unbroken "out" answers (a new server is added within seconds of its
 * first route; a removed one stays out). Unknown answers neither confirm
 * nor clear it.
 */
export class MetaMembership {
  private outSince?: number;
  private readonly patienceMs: number;

  constructor(patienceMs: number) {
    this.patienceMs = patienceMs;
  }

  /** True when this answer makes the node out for long enough. */
  observe(v: MetaVerdict, now: number): boolean {
    if (v === "member") this.outSince = undefined;
    if (v !== "out") return false;
    this.outSince ??= now;
    return now - this.outSince >= this.patienceMs;
  }

  /** Whether the last known answer was "out" (for status and metrics). */
  get out(): boolean {
    return this.outSince !== undefined;
  }
}
