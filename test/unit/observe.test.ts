import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { MetaMembership, metaVerdict } from "../../controlplane/src/observe/meta-watch.ts";

describe("meta membership, as the meta leader sees it", () => {
  const view = { leader: "nats-1", cluster_size: 3, replicas: [{ name: "nats-2", current: true }] };

  test("listed as leader or replica is a member; unlisted under a leader is out", () => {
    assert.equal(metaVerdict("nats-1", view), "member");
    assert.equal(metaVerdict("nats-2", view), "member");
    assert.equal(metaVerdict("nats-3", view), "out");
  });

  test("no leader or no answer is unknown: a server cut off must not conclude it was removed", () => {
    assert.equal(metaVerdict("nats-3", undefined), "unknown");
    assert.equal(metaVerdict("nats-3", {}), "unknown");
    assert.equal(metaVerdict("nats-3", { leader: "", replicas: [] }), "unknown");
  });

  test("out counts only after unbroken patience; a member answer clears it, unknown neither clears nor confirms", () => {
    const m = new MetaMembership(30_000);
    assert.equal(m.observe("out", 0), false);
    assert.equal(m.out, true);
    assert.equal(m.observe("unknown", 20_000), false);
    assert.equal(m.observe("out", 30_000), true, "30 s of out answers, an unknown between them");
    assert.equal(m.observe("member", 40_000), false);
    assert.equal(m.out, false);
    assert.equal(m.observe("out", 50_000), false, "patience starts again after a member answer");
    assert.equal(m.observe("out", 79_999), false);
    assert.equal(m.observe("out", 80_000), true);
  });
});
