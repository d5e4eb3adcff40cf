import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { decide, identityOf, type Allowed, type AuthConfig } from "../../controlplane/src/mod.ts";

const CAP = "example.com/cap/nats";
const auth = (over: Partial<AuthConfig> = {}): AuthConfig => ({
  mode: "tailnet",
  operator_dir: "",
  capability: CAP,
  accounts: ["APP", "OPS"],
  rules: [],
  ...over,
});
const alice = identityOf({
  device: { id: "1", name: "laptop", dnsName: "laptop.ts.net", hostName: "laptop", ips: [], tags: [], online: true },
  user: "alice@example.com",
});
const svc = identityOf({
  device: { id: "2", name: "svc-1", dnsName: "svc-1.ts.net", hostName: "svc-1", ips: [], tags: ["tag:svc"], online: true },
  user: "tagged-devices",
});

describe("identity", () => {
  test("a person's device is its owner's login; a tagged device is its tags", () => {
    assert.deepEqual([alice.user, alice.tags, alice.label], ["alice@example.com", [], "alice@example.com (laptop)"]);
    assert.deepEqual([svc.user, svc.tags, svc.label], ["", ["tag:svc"], "tag:svc (svc-1)"]);
  });
});

describe("decisions", () => {
  test("deny by default, with a reason naming the capability and the caller", () => {
    const d = decide(alice, undefined, auth());
    assert.deepEqual(d, { allow: false, reason: `no grant of ${CAP} for alice@example.com (laptop)` });
  });

  test("grants merge: allow and deny lists are unions", () => {
    const d = decide(
      alice,
      [{ pub: { allow: ["a.>"] } }, { pub: { allow: ["b.>"], deny: ["a.secret"] }, sub: { allow: ["_INBOX.>"] } }],
      auth(),
    ) as Allowed;
    assert.equal(d.allow, true);
    assert.deepEqual(d.pub, { allow: ["a.>", "b.>"], deny: ["a.secret"] });
    assert.deepEqual(d.sub, { allow: ["_INBOX.>"], deny: [] });
    assert.equal(d.account, "APP");
  });

  test("resp.ttl follows the config's duration rules: valid ones become nanoseconds, others refuse the grant", () => {
    const ok = decide(alice, [{ sub: { allow: ["svc.>"] }, resp: { max: 2, ttl: "1m30s" } }], auth()) as Allowed;
    assert.deepEqual(ok.resp, { max: 2, ttl: 90_000_000_000 });
    const none = decide(alice, [{ sub: { allow: ["svc.>"] }, resp: { max: 1 } }], auth()) as Allowed;
    assert.deepEqual(none.resp, { max: 1, ttl: 0 });
    for (const ttl of ["abc", "-5s", "1d", "5", " 5s"]) {
      const d = decide(alice, [{ sub: { allow: ["svc.>"] }, resp: { max: 1, ttl } }], auth());
      assert.equal(d.allow, false, ttl);
      assert.match(
        (d as { reason: string }).reason,
        /^grant 1 of example\.com\/cap\/nats for alice@example\.com \(laptop\) is malformed: resp\.ttl: /,
        ttl,
      );
    }
  });

  test("no allow list means nothing is allowed (NATS itself would read it as everything)", () => {
    const d = decide(alice, [{ sub: { allow: ["x"] } }], auth()) as Allowed;
    assert.deepEqual(d.pub, { allow: [], deny: [">"] });
  });

  test("config rules match by user or tag and merge with grants", () => {
    const rules = [{ users: [], tags: ["tag:svc"], pub: { allow: ["svc.>"], deny: [] }, account: "OPS" }] as AuthConfig["rules"];
    const d = decide(svc, [], auth({ rules })) as Allowed;
    assert.deepEqual([d.allow, d.account, d.pub.allow], [true, "OPS", ["svc.>"]]);
    assert.equal(decide(alice, [], auth({ rules })).allow, false);
  });

  test("accounts: unknown or conflicting placements are refused; SYS only when named", () => {
    assert.match(
      (decide(alice, [{ pub: { allow: [">"] }, account: "NOPE" }], auth()) as { reason: string }).reason,
      /not in auth.accounts/,
    );
    assert.match(
      (decide(alice, [{ account: "APP" }, { account: "OPS" }], auth()) as { reason: string }).reason,
      /several accounts \(APP, OPS\)/,
    );
    assert.equal((decide(alice, [{ pub: { allow: [">"] }, account: "SYS" }], auth()) as Allowed).account, "SYS");
  });

  test("a malformed grant is refused rather than half-applied", () => {
    const d = decide(alice, [{ pub: { allow: "everything" } }], auth());
    assert.equal(d.allow, false);
    assert.match((d as { reason: string }).reason, /grant 1 of .* is malformed/);
  });

  test("the decision key changes exactly when the rights change", () => {
    const a = decide(alice, [{ pub: { allow: ["a.>"] } }], auth()) as Allowed;
    const same = decide(alice, [{ pub: { allow: ["a.>"] } }], auth()) as Allowed;
    const wider = decide(alice, [{ pub: { allow: ["a.>", "b.>"] } }], auth()) as Allowed;
    assert.equal(a.key, same.key);
    assert.notEqual(a.key, wider.key);
  });

  test("limits: the widest wins, -1 is unlimited", () => {
    const d = decide(alice, [{ pub: { allow: [">"] }, limits: { subs: 10 } }, { limits: { subs: -1, payload: 1024 } }], auth()) as Allowed;
    assert.deepEqual(d.limits, { subs: -1, payload: 1024, data: -1 });
  });
});
