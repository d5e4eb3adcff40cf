// What nats-server's own log says about the JetStream store under it, turned
// into something an operator cannot miss: a log line with a stable code, and
// a record in the state dir that `nats-tsnet peer list` shows.
//
// nats-server (v2.14) has no API that reports a damaged store. When it finds
// a message block or Raft log it cannot read it cuts the file at the first bad
// record, rebuilds its state, or resets the stream's cluster state and
// catches up, and says so only in its log, mostly at warning level among
// lines that are harmless. And when the disk fills it disables JetStream on
// this server until nats-server is restarted. The patterns below are those
// lines (filestore.go, raft.go, jetstream_cluster.go, jetstream.go); a line
// that matches none is left alone. One more line belongs here for the same
// reason: a server that learns it was removed from the meta group (`peer
// remove`, perhaps while it was cut off) turns JetStream off and says so only
// in its log.
import { readFileSync, statfsSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomic } from "../util/fs.ts";

export type StoreCode = "ERR_STORE_DAMAGED" | "ERR_STORE_FULL" | "ERR_NODE_REMOVED";

export interface StoreEvent {
  code: StoreCode;
  /** nats-server's own line, without its prefix. */
  line: string;
}

// "Filestore [stream] " and "RAFT [id - group] " prefixes, as nats-server writes them.
const FS = String.raw`Filestore \[[^\]]+\] `;
const RAFT = String.raw`RAFT \[\S+ - [^\]]+\] `;

/** Lines that mean a store file was found damaged, cut back, rebuilt or reset. */
const DAMAGED: RegExp[] = [
  /Recovering stream state from index errored/,
  new RegExp(
    FS +
      String.raw`Stream state (too short|checksum did not match|magic and version mismatch|bad subject|corrupt subject detected|bad block count|error decoding avl dmap|has no checksum present|block does not exist or index mismatch|encountered internal inconsistency|detected prior state, could not locate msg block)`,
  ),
  new RegExp(FS + String.raw`Stream state outdated, (last block has additional entries|found extra blocks)`),
  new RegExp(FS + String.raw`(indexCacheBuf corrupt|loadBlock error|checkMsgs: )`),
  /malformed or corrupt message/,
  /Stream metafile ".*": checksums do not match|Missing stream (metafile|checksum file)/,
  new RegExp(RAFT + String.raw`(Could not load \d+ from WAL|Misaligned WAL|Corrupt WAL|Resetting WAL state|Error truncating WAL)`),
  new RegExp(RAFT + String.raw`(Snapshot corrupt|Error reading snapshot|Snapshot with last index 0 is invalid)`),
  /Error applying entries to '.+ > .+'/,
  /(Resetting stream cluster state for|Detected bad stream state, resetting) '.+ > .+'/,
  /Error loading message for catchup '.+'/,
];

/** Lines that mean the disk under the store is full. */
const FULL: RegExp[] = [
  /JetStream out of (File )?resources, will be DISABLED/,
  /JetStream out of space, will be DISABLED/,
  /no space left on device/,
];

/** The line of a server that applied its own removal from the meta group. */
const REMOVED = /JetStream being DISABLED, our server was removed from the cluster/;

/** Classifies one nats-server log line (its text after the level tag). */
export function classifyServerLine(line: string): StoreEvent | undefined {
  if (REMOVED.test(line)) return { code: "ERR_NODE_REMOVED", line };
  if (FULL.some((r) => r.test(line))) return { code: "ERR_STORE_FULL", line };
  if (DAMAGED.some((r) => r.test(line))) return { code: "ERR_STORE_DAMAGED", line };
  return undefined;
}

export interface StoreRecord {
  /** When it was first and last seen (ISO), how often, and the latest line. */
  first: string;
  last: string;
  count: number;
  line: string;
}

export type StoreHealthFile = Partial<Record<StoreCode, StoreRecord>>;

const FILE = "store-health.json";

/** What this node has seen about its store, for `peer list` (empty if nothing). */
export function readStoreHealth(stateDir: string): StoreHealthFile {
  try {
    return JSON.parse(readFileSync(join(stateDir, FILE), "utf8")) as StoreHealthFile;
  } catch {
    return {};
  }
}

/**
 * Keeps the record: one entry per code, updated in place, kept across
 * restarts (a store that was cut back stays a fact worth knowing until the
 * operator has looked; `peer list` shows when it was last seen).
 */
export class StoreHealth {
  private readonly record: StoreHealthFile;
  private readonly logged = new Map<StoreCode, number>();

  private readonly stateDir: string;

  constructor(stateDir: string) {
    this.stateDir = stateDir;
    this.record = readStoreHealth(stateDir);
  }

  /**
   * Notes an event; true if none of its code was logged by this run in the
   * last minute (nats-server repeats itself; one line of ours is enough).
   */
  note(e: StoreEvent, now = new Date()): boolean {
    const r = this.record[e.code];
    const fresh = now.getTime() - (this.logged.get(e.code) ?? -Infinity) > 60_000;
    if (fresh) this.logged.set(e.code, now.getTime());
    this.record[e.code] = { first: r?.first ?? now.toISOString(), last: now.toISOString(), count: (r?.count ?? 0) + 1, line: e.line };
    writeFileAtomic(join(this.stateDir, FILE), JSON.stringify(this.record, null, 2));
    return fresh;
  }
}

/** Free bytes on the filesystem holding `dir`, for an unprivileged writer. */
export function freeBytes(dir: string): number {
  const s = statfsSync(dir);
  return Number(s.bavail) * Number(s.bsize);
}
