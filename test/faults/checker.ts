// The fault suite's checker. After a fault has healed it makes every replica
// of the stream leader in turn and reads the whole stream from it with an
// ordered consumer, so each replica's own copy is read, not just the one the
// current leader serves. Each copy is held against what the client was told:
// every acknowledged message present once, at its sequence, with its content;
// no gaps; nothing nobody sent; and all copies alike. Each server's own view
// of the stream (its /jsz, as `nats stream report` shows it) is kept beside.
import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { NatsConnection } from "@nats-io/transport-node";
import { jetstream, type JetStreamManager, type StreamInfo } from "@nats-io/jetstream";
import { withTimeout } from "../../localtailnet/lab.ts";
import { eventually } from "../integration/helpers.ts";
import type { Load } from "./load.ts";

/** What a copy holds against the client's record (in a Verdict: the worst copy's). */
export interface Counts {
  /** Acknowledged messages missing. */
  lost: number;
  /** Acknowledged messages present, but not at the sequence they were acknowledged with. */
  misplaced: number;
  duplicates: number;
  gaps: number;
  /** Messages no client ever sent. */
  phantom: number;
  /** Attempts the client saw fail that were stored all the same. */
  unacked_stored: number;
}

export interface ReplicaCopy extends Counts {
  messages: number;
  first_seq: number;
  last_seq: number;
  digest: string;
}

export interface Verdict extends Counts {
  acked: number;
  /** Copies that differ from the others (0 when all replicas agree). */
  divergent: number;
  /** Why nothing could be read at all ("stream not found", "no leader"), if so. */
  unavailable?: string;
  /**
   * Replicas that could not be made leader and read, and why. Such a copy
   * counts as divergent only if its server's own state (as `nats stream
   * report` shows it) differs from the copies that were read; otherwise
   * its content is unverified, and the verdict says so.
   */
  unreadable: Record<string, string>;
  lost_sample: number[];
  replicas: Record<string, ReplicaCopy>;
  /** Each server's own /jsz view of the stream: messages, first and last sequence. */
  server_state: Record<string, { messages: number; first_seq: number; last_seq: number } | null>;
}

export interface CheckerEnv {
  nc: NatsConnection;
  jsm: JetStreamManager;
  /** GET on a node's monitoring port, from its host. */
  monitor(server: string, path: string): Promise<any>;
}

export async function check(env: CheckerEnv, load: Load): Promise<Verdict> {
  const info = await settled(env.jsm, load.stream);
  if (!info) return streamGone(load, "stream not found");
  if (!info.cluster?.leader)
    return { ...streamGone(load, "no leader"), server_state: await serverStates(env, ["nats-1", "nats-2", "nats-3"], load.stream) };
  const servers = [info.cluster!.leader!, ...(info.cluster!.replicas ?? []).map((r) => r.name)].sort();
  const replicas: Record<string, ReplicaCopy> = {};
  const unreadable: Record<string, string> = {};
  let worst: { lost: number; sample: number[] } = { lost: 0, sample: [] };
  for (const server of servers) {
    const copy = await readReplica(env, load.stream, server).catch((e: Error) => {
      unreadable[server] = e.message;
      return null;
    });
    if (!copy) continue;
    const judged = judge(copy, load);
    replicas[server] = judged.copy;
    if (judged.copy.lost >= worst.lost) worst = { lost: judged.copy.lost, sample: judged.sample };
  }
  const copies = Object.values(replicas);
  const max = (f: (c: ReplicaCopy) => number) => Math.max(0, ...copies.map(f));
  const server_state = await serverStates(env, servers, load.stream);
  // An unread copy whose server reports what every read copy holds.
  const sameState = (n: string) =>
    copies.length > 0 &&
    copies.every((c) => {
      const st = server_state[n];
      return st && st.messages === c.messages && st.first_seq === c.first_seq && st.last_seq === c.last_seq;
    });
  return {
    acked: load.acked.size,
    lost: copies.length ? max((c) => c.lost) : load.acked.size,
    misplaced: max((c) => c.misplaced),
    duplicates: max((c) => c.duplicates),
    gaps: max((c) => c.gaps),
    phantom: max((c) => c.phantom),
    unacked_stored: max((c) => c.unacked_stored),
    divergent: new Set(copies.map((c) => c.digest)).size - 1 + Object.keys(unreadable).filter((n) => !sameState(n)).length,
    unreadable,
    lost_sample: worst.sample,
    replicas,
    server_state,
  };
}

/**
 * Waits until the stream has a leader and every replica says it is current:
 * reading earlier would count a replica still catching up as divergent.
 * If that never happens the stream is read as it is (the verdict shows it).
 */
async function settled(jsm: JetStreamManager, stream: string): Promise<StreamInfo | null> {
  // A node healed from a partition after its leader lost power may need
  // minutes to catch up; it is read once current, or as it is after three.
  const deadline = Date.now() + 180_000;
  let info: StreamInfo | undefined;
  let notFound = 0;
  while (Date.now() < deadline) {
    info = await jsm.streams.info(stream).catch((e: Error) => {
      if (/stream not found/i.test(e.message)) notFound++;
      return undefined;
    });
    // The meta group says the stream does not exist, again and again: gone.
    if (notFound >= 20) return null;
    if (info?.cluster?.leader && (info.cluster.replicas ?? []).every((r) => r.current)) return info;
    await sleep(500);
  }
  return info ?? null;
}

/** Nothing can be read: every acknowledged message counts as lost, and why is said. */
function streamGone(load: Load, why: string): Verdict {
  return {
    unavailable: why,
    acked: load.acked.size,
    lost: load.acked.size,
    misplaced: 0,
    duplicates: 0,
    gaps: 0,
    phantom: 0,
    unacked_stored: 0,
    divergent: 0,
    unreadable: {},
    lost_sample: [...load.acked.keys()].slice(0, 10),
    replicas: {},
    server_state: {},
  };
}

/** Makes `server` the stream's leader and reads the whole stream from it. */
async function readReplica(env: CheckerEnv, stream: string, server: string): Promise<Array<[number, string]>> {
  let last = "";
  await eventually(
    async () => {
      const info = await env.jsm.streams.info(stream);
      if (info.cluster?.leader === server) return info;
      const replica = info.cluster?.replicas?.find((r) => r.name === server);
      last = `leader ${info.cluster?.leader ?? "none"} sees ${server} ${replica?.current ? "current" : `behind (lag ${replica?.lag ?? "?"}, active ${replica?.active ?? "?"} ns)`}`;
      // Ask only once the leader sees that replica current: a stepdown to a
      // replica that is not goes to any other, and leadership moving again
      // and again would keep a late replica from catching up.
      if (!replica?.current) return undefined;
      // A preferred leader: nats-server hands leadership to that replica.
      const r = await env.nc
        .request(`$JS.API.STREAM.LEADER.STEPDOWN.${stream}`, JSON.stringify({ placement: { preferred: server } }), { timeout: 5000 })
        .then((m) => m.json<{ error?: { description?: string } }>().error?.description)
        .catch((e: Error) => e.message);
      if (r) last += `; stepdown refused: ${r}`;
      await sleep(1000);
      return undefined;
    },
    // Leadership goes only to a current replica: give a late one time.
    180_000,
    `${server} leads stream ${stream}`,
  ).catch((e: Error) => {
    throw new Error(`${e.message} (${last})`);
  });
  const info = await env.jsm.streams.info(stream);
  return withTimeout(readAll(env.nc, stream, info.state.last_seq), 120_000, `stream ${stream} read from ${server}`);
}

async function readAll(nc: NatsConnection, stream: string, lastSeq: number): Promise<Array<[number, string]>> {
  const out: Array<[number, string]> = [];
  if (lastSeq === 0) return out;
  const consumer = await jetstream(nc).consumers.get(stream); // ordered, ephemeral
  const messages = await consumer.consume({ max_messages: 2000 });
  const dec = new TextDecoder();
  for await (const m of messages) {
    out.push([m.seq, dec.decode(m.data)]);
    if (m.seq >= lastSeq) break;
  }
  await messages.close();
  return out;
}

/** Holds one replica's copy against what the client was told. */
export function judge(copy: Array<[number, string]>, load: Load): { copy: ReplicaCopy; sample: number[] } {
  const idAt = new Map(copy);
  const count = new Map<string, number>();
  for (const [, id] of copy) count.set(id, (count.get(id) ?? 0) + 1);
  let lost = 0;
  let misplaced = 0;
  const sample: number[] = [];
  for (const [seq, id] of load.acked) {
    if (idAt.get(seq) === id) continue;
    if (count.has(id)) misplaced++;
    else {
      lost++;
      if (sample.length < 10) sample.push(seq);
    }
  }
  const ackedIds = new Set(load.acked.values());
  let duplicates = 0;
  let phantom = 0;
  let neverAcked = 0;
  for (const [id, n] of count) {
    duplicates += n - 1;
    if (!load.attempted.has(id)) phantom++;
    else if (!ackedIds.has(id)) neverAcked++;
  }
  const first = copy[0]?.[0] ?? 0;
  const last = copy.at(-1)?.[0] ?? 0;
  return {
    copy: {
      messages: copy.length,
      first_seq: first,
      last_seq: last,
      lost,
      misplaced,
      duplicates,
      gaps: copy.length ? last - first + 1 - idAt.size : 0,
      phantom,
      unacked_stored: neverAcked + load.duplicateAcks,
      digest: createHash("sha256").update(JSON.stringify(copy)).digest("hex").slice(0, 16),
    },
    sample,
  };
}

async function serverStates(env: CheckerEnv, servers: string[], stream: string): Promise<Verdict["server_state"]> {
  const out: Verdict["server_state"] = {};
  for (const s of servers) out[s] = await serverView(env, s, stream).catch(() => null);
  return out;
}

async function serverView(env: CheckerEnv, server: string, stream: string) {
  const jsz = await env.monitor(server, "/jsz?accounts=true&streams=true");
  for (const a of jsz.account_details ?? [])
    for (const s of a.stream_detail ?? [])
      if (s.name === stream) return { messages: s.state.messages, first_seq: s.state.first_seq, last_seq: s.state.last_seq };
  return null;
}
