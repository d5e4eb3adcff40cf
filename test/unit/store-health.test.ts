import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { StoreHealth, classifyServerLine, readStoreHealth } from "../../controlplane/src/node/store-health.ts";
import { formatPeerList } from "../../controlplane/src/cluster/peers.ts";

// Lines as nats-server v2.14 writes them (the text after its level tag).
const DAMAGED = [
  "Filestore [ORDERS] Stream state outdated, last block has additional entries, will rebuild",
  "Filestore [ORDERS] Recovering stream state from index errored: corrupt state file",
  "Filestore [ORDERS] indexCacheBuf corrupt record state in 3.blk",
  "Filestore [ORDERS] Ignoring non-write error: malformed or corrupt message in 1.blk: invalid checksum",
  "RAFT [yrzKKRBu - S-R3F-abc] Corrupt WAL, will truncate",
  "Error applying entries to 'APP > ORDERS': last sequence mismatch",
  "Resetting stream cluster state for 'APP > ORDERS'",
  "Error loading message for catchup 'APP > ORDERS': malformed or corrupt message",
];
const FULL = [
  "JetStream out of File resources, will be DISABLED",
  "JetStream out of resources, will be DISABLED",
  "Filestore [ORDERS] Critical write error: write /s/jetstream/APP/streams/ORDERS/msgs/1.blk: no space left on device",
];
const HARMLESS = [
  "Starting JetStream",
  "JetStream cluster new stream leader for 'APP > ORDERS'",
  "Catchup for stream 'APP > ORDERS' complete",
  "Detected orphaned stream 'APP > OLD', will cleanup",
  "RAFT [yrzKKRBu - S-R3F-abc] Resetting election timer",
];

describe("what nats-server says about its store", () => {
  test("damage, cut-backs and resets are ERR_STORE_DAMAGED", () => {
    for (const l of DAMAGED) assert.equal(classifyServerLine(l)?.code, "ERR_STORE_DAMAGED", l);
  });
  test("a full disk is ERR_STORE_FULL, even where the line also reports a write error", () => {
    for (const l of FULL) assert.equal(classifyServerLine(l)?.code, "ERR_STORE_FULL", l);
  });
  test("a server that applied its own removal from the meta group is ERR_NODE_REMOVED", () => {
    const l = "JetStream being DISABLED, our server was removed from the cluster";
    assert.equal(classifyServerLine(l)?.code, "ERR_NODE_REMOVED");
    assert.equal(classifyServerLine("JetStream cluster peer removed: nats-4"), undefined, "another server's removal is not ours");
  });
  test("everyday lines are left alone", () => {
    for (const l of HARMLESS) assert.equal(classifyServerLine(l), undefined, l);
  });
});

describe("the store record", () => {
  test("one entry per code, counted, kept for the next run and for peer list; one log line a minute", () => {
    const dir = mkdtempSync(join(tmpdir(), "store-health-"));
    const h = new StoreHealth(dir);
    const t0 = new Date("2026-11-23T10:00:00Z");
    assert.equal(h.note({ code: "ERR_STORE_DAMAGED", line: DAMAGED[0]! }, t0), true);
    assert.equal(h.note({ code: "ERR_STORE_DAMAGED", line: DAMAGED[1]! }, new Date(t0.getTime() + 5000)), false);
    assert.equal(h.note({ code: "ERR_STORE_FULL", line: FULL[0]! }, t0), true, "another code logs on its own");
    assert.equal(h.note({ code: "ERR_STORE_DAMAGED", line: DAMAGED[2]! }, new Date(t0.getTime() + 61_000)), true);
    const r = readStoreHealth(dir);
    assert.equal(r.ERR_STORE_DAMAGED?.count, 3);
    assert.equal(r.ERR_STORE_DAMAGED?.first, t0.toISOString());
    assert.equal(r.ERR_STORE_DAMAGED?.line, DAMAGED[2]);
    assert.equal(r.ERR_STORE_FULL?.count, 1);
    // The next run starts from the record and logs its first event again.
    const next = new StoreHealth(dir);
    assert.equal(next.note({ code: "ERR_STORE_DAMAGED", line: DAMAGED[3]! }, new Date(t0.getTime() + 62_000)), true);
    assert.equal(readStoreHealth(dir).ERR_STORE_DAMAGED?.count, 4);
  });
  test("no record reads as nothing seen", () => {
    assert.deepEqual(readStoreHealth(mkdtempSync(join(tmpdir(), "store-health-"))), {});
  });
});

describe("peer list shows what the node said", () => {
  const removed = {
    first: "2026-11-23T10:00:00.000Z",
    last: "2026-11-23T10:00:00.000Z",
    count: 1,
    line: "JetStream being DISABLED, our server was removed from the cluster",
  };
  const row = (name: string, member: boolean) => ({
    name,
    tailnet: { ips: ["100.64.0.3"], online: true, tags: ["tag:nats"] },
    route: { url: `nats-route://${name}:6222`, connected: true },
    jetstream: member ? { role: "follower" as const, current: true, offline: false } : null,
  });
  test("a removal while this node is out of the meta group, not once it is back", () => {
    const out = formatPeerList({
      self: "nats-3",
      metaLeader: "nats-1",
      rows: [row("nats-3", false)],
      store: { ERR_NODE_REMOVED: removed },
    });
    assert.match(out, /this node removed from the meta group: 1 times.*\(ERR_NODE_REMOVED\)/);
    const back = formatPeerList({
      self: "nats-3",
      metaLeader: "nats-1",
      rows: [row("nats-3", true)],
      store: { ERR_NODE_REMOVED: removed },
    });
    assert.doesNotMatch(back, /ERR_NODE_REMOVED/);
  });
  test("store damage stays shown while the node is a member", () => {
    const out = formatPeerList({
      self: "nats-3",
      metaLeader: "nats-1",
      rows: [row("nats-3", true)],
      store: { ERR_STORE_DAMAGED: { ...removed, line: "Corrupt WAL" } },
    });
    assert.match(out, /this node's store damaged: .*\(ERR_STORE_DAMAGED\): Corrupt WAL/);
  });
});
