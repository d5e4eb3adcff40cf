import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  ACCOUNT_DEFAULTS,
  IDENTITY_DEFAULTS,
  decide,
  decideLocal,
  grantGate,
  identityOf,
  inboxPrefix,
  jetstreamSubjects,
  type Allowed,
  type AuthConfig,
} from "../../controlplane/src/mod.ts";

const CAP = "example.com/cap/nats";
const auth = (over: Partial<AuthConfig> = {}): AuthConfig => ({
  mode: "tailnet",
  operator_dir: "",
  capability: CAP,
  accounts: ["APP", "OPS"],
  rules: [],
  limits: { ...IDENTITY_DEFAULTS },
  account_limits: { ...ACCOUNT_DEFAULTS },
  account_overrides: {},
  ...over,
});
const alice = identityOf({
  device: { id: "1", name: "laptop", dnsName: "laptop.ts.net", hostName: "laptop", ips: [], tags: [], online: true },
  user: "alice@example.com",
  label: "alice@example.com (laptop)",
});
const svc = identityOf({
  device: { id: "2", name: "svc-1", dnsName: "svc-1.ts.net", hostName: "svc-1", ips: [], tags: ["tag:svc"], online: true },
  user: "tagged-devices",
  label: "tag:svc (svc-1)",
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
    assert.deepEqual(d.sub, { allow: ["_INBOX.>", "_INBOX_alice_40example_2ecom.>"], deny: [] });
    assert.equal(d.account, "APP");
  });

  test("every identity may subscribe to its own inbox prefix, and only its own", () => {
    assert.equal(inboxPrefix(alice), "_INBOX_alice_40example_2ecom");
    assert.equal(inboxPrefix(svc), "_INBOX_tag_3asvc");
    // Injective: names that differ only in characters outside [A-Za-z0-9-] never share a prefix.
    const a = inboxPrefix({ user: "a.b@x", tags: [] });
    const b = inboxPrefix({ user: "a_b@x", tags: [] });
    assert.notEqual(a, b);
    assert.match(a, /^_INBOX_[A-Za-z0-9_-]+$/);
    const d = decide(alice, [{ pub: { allow: ["orders.>"] } }], auth()) as Allowed;
    assert.deepEqual(d.sub.allow, ["_INBOX_alice_40example_2ecom.>"]);
  });

  test("a jetstream grant names streams and opens only their API subjects", () => {
    const d = decide(alice, [{ pub: { allow: ["orders.>"] }, jetstream: { streams: ["ORDERS"] } }], auth()) as Allowed;
    assert.ok(d.pub.allow.includes("$JS.API.STREAM.INFO.ORDERS"));
    assert.ok(d.pub.allow.includes("$JS.API.CONSUMER.CREATE.ORDERS.>"));
    assert.ok(d.pub.allow.includes("$JS.ACK.ORDERS.>"));
    assert.ok(!d.pub.allow.some((s) => s === "$JS.API.>" || s.startsWith("$JS.API.STREAM.CREATE")), "no manage without manage");
    // Every API subject names the stream, except account info.
    for (const s of d.pub.allow.filter((x) => x.startsWith("$JS."))) assert.ok(s === "$JS.API.INFO" || s.includes(".ORDERS"), s);
    assert.ok(jetstreamSubjects(["ORDERS"], true).includes("$JS.API.STREAM.CREATE.ORDERS"));
    const bad = decide(alice, [{ jetstream: { streams: ["ORD.*"] } }], auth());
    assert.equal(bad.allow, false);
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
    const rules = [
      { users: [], tags: ["tag:svc"], certs: [], faces: [], sources: [], pub: { allow: ["svc.>"], deny: [] }, account: "OPS" },
    ] as AuthConfig["rules"];
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

  test("a grant without an account is in the default account: it never merges into another grant's SYS", () => {
    const narrowSys = { pub: { allow: ["$SYS.REQ.SERVER.PING"] }, account: "SYS" };
    const general = { pub: { allow: [">"] }, sub: { allow: [">"] } };
    const d = decide(alice, [narrowSys, general], auth());
    assert.equal(d.allow, false);
    assert.match((d as { reason: string }).reason, /several accounts \(APP, SYS\)/);
    // Naming the default account explicitly is the same grant.
    assert.equal((decide(alice, [general, { ...general, account: "APP" }], auth()) as Allowed).account, "APP");
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

  test("limits: auth.limits by default; a grant raises them, up to the account's ceilings", () => {
    const plain = decide(alice, [{ pub: { allow: [">"] } }], auth()) as Allowed;
    assert.deepEqual(plain.limits, { subs: 1000, payload: 2 ** 20 });
    const raised = decide(alice, [{ pub: { allow: [">"] } }, { limits: { subs: 50_000, payload: "8MB" } }], auth()) as Allowed;
    assert.deepEqual(raised.limits, { subs: 50_000, payload: 8 * 2 ** 20 });
    assert.notEqual(raised.key, plain.key, "a change of limits is a change of rights: the connection is re-authorized");
    // Several grants: the largest wins, -1 (no limit of the bridge's own) most of all.
    const merged = decide(
      alice,
      [{ limits: { subs: 10 } }, { pub: { allow: ["a"] }, limits: { subs: 20, payload: 100 } }],
      auth(),
    ) as Allowed;
    assert.deepEqual(merged.limits, { subs: 20, payload: 100 });
    const unlimited = decide(alice, [{ limits: { subs: -1, payload: -1 } }, { limits: { subs: 5 } }], auth()) as Allowed;
    // -1 subscriptions is the account's max_subscriptions: the bridge must refuse before nats-server.
    assert.deepEqual(unlimited.limits, { subs: ACCOUNT_DEFAULTS.max_subscriptions, payload: -1 });
    // A grant can lower them too.
    assert.deepEqual((decide(alice, [{ limits: { subs: 3, payload: 64 } }], auth()) as Allowed).limits, { subs: 3, payload: 64 });
  });

  test("limits stay under the account's ceilings; SYS has none", () => {
    const a = auth({
      account_overrides: { OPS: { max_subscriptions: 500, max_payload: "64KB" } },
      limits: { subs: 2000, payload: "1MB" },
    });
    const ops = decide(alice, [{ pub: { allow: [">"] }, account: "OPS", limits: { subs: 100_000, payload: "8MB" } }], a) as Allowed;
    assert.deepEqual(ops.limits, { subs: 500, payload: 64 * 1024 });
    const app = decide(alice, [{ pub: { allow: [">"] } }], a) as Allowed;
    assert.deepEqual(app.limits, { subs: 2000, payload: 2 ** 20 });
    const sys = decide(alice, [{ pub: { allow: [">"] }, account: "SYS", limits: { subs: -1 } }], a) as Allowed;
    assert.deepEqual(sys.limits, { subs: -1, payload: 2 ** 20 });
  });

  test("malformed limits refuse the grant; data is not a limit nats-server enforces", () => {
    for (const limits of [{ subs: -2 }, { subs: 1.5 }, { payload: "lots" }, { data: 10 }]) {
      const d = decide(alice, [{ pub: { allow: [">"] }, limits }], auth());
      assert.equal(d.allow, false, JSON.stringify(limits));
      assert.match((d as { reason: string }).reason, /malformed: limits/, JSON.stringify(limits));
    }
  });
});

describe("client certificates (mTLS) and the rules that name them", () => {
  const billing = { cn: "billing", dns: ["billing.example"], sha256: "ab".repeat(32) };
  const rule = (r: Partial<AuthConfig["rules"][number]>) =>
    ({ users: [], tags: [], certs: [], faces: [], sources: [], ...r }) as AuthConfig["rules"][number];
  const rules = [
    // The service on a shared tagged host, by its certificate and only from that host's tag.
    rule({ tags: ["tag:svc"], certs: ["CN=billing"], pub: { allow: ["billing.>"], deny: [] } }),
    // The host's own rights, by its tag.
    rule({ tags: ["tag:svc"], pub: { allow: ["svc.>"], deny: [] } }),
    // A certificate that admits from any device.
    rule({ certs: ["DNS=reports.example"], pub: { allow: ["reports.>"], deny: [] } }),
  ];

  test("a certificate a rule names decides alone, from a device that rule admits", () => {
    const d = decide(svc, [], auth({ rules }), billing) as Allowed;
    assert.deepEqual([d.allow, d.pub.allow], [true, ["billing.>"]], "the certificate's rule, not the tag's too");
    const other = decide(alice, [], auth({ rules }), billing);
    assert.equal(other.allow, false, "the billing certificate from a device its rule does not name");
  });

  test("a certificate no rule names leaves the device's own grants; a cert rule never matches without its certificate", () => {
    const stranger = { cn: "stranger", sha256: "cd".repeat(32) };
    assert.deepEqual((decide(svc, [], auth({ rules }), stranger) as Allowed).pub.allow, ["svc.>"]);
    assert.deepEqual((decide(svc, [], auth({ rules })) as Allowed).pub.allow, ["svc.>"], "no certificate: the tag's rule only");
    const refused = decide(alice, [], auth({ rules }), stranger);
    assert.equal(refused.allow, false);
    assert.match((refused as { reason: string }).reason, /its certificate CN=stranger is named by no rule/);
  });

  test("a rule naming a certificate and no device admits it from any device; names by SAN and fingerprint", () => {
    const reports = { cn: "r", dns: ["reports.example"], sha256: "ef".repeat(32) };
    assert.deepEqual((decide(alice, [], auth({ rules }), reports) as Allowed).pub.allow, ["reports.>"]);
    const byPrint = [rule({ certs: [`SHA256=${"ef".repeat(32)}`], pub: { allow: ["p.>"], deny: [] } })];
    assert.equal(decide(alice, [], auth({ rules: byPrint }), reports).allow, true);
  });

  test("the bridge's gate lets every device through when a certificate rule names none (the callout decides after TLS)", () => {
    assert.equal(grantGate(auth({ rules })), undefined);
    const gate = grantGate(auth({ rules: rules.slice(0, 2) }))!;
    assert.deepEqual(gate.tags, ["tag:svc"]);
  });
});

describe("local faces: callers that are not tailnet devices", () => {
  const rules = [
    { users: [], tags: [], certs: [], faces: ["docker"], sources: ["172.17.0.0/24"], pub: { allow: ["ctr.>"], deny: [] } },
  ] as AuthConfig["rules"];
  test("only rules naming the face admit, within their sources; the face is the identity", () => {
    const ok = decideLocal("docker", "172.17.0.2", auth({ rules }));
    assert.equal(ok.decision.allow, true);
    assert.deepEqual((ok.decision as Allowed).pub.allow, ["ctr.>"]);
    assert.equal(ok.id.label, "local:docker (172.17.0.2)");
    assert.match((ok.decision as Allowed).sub.allow.join(" "), /_INBOX_local_3adocker\.>/);
    const outside = decideLocal("docker", "172.17.1.9", auth({ rules }));
    assert.equal(outside.decision.allow, false);
    const other = decideLocal("podman", "172.17.0.2", auth({ rules }));
    assert.match((other.decision as { reason: string }).reason, /no rule admits local:podman \(172\.17\.0\.2\)/);
  });
  test("a rule for a local face never admits a tailnet device", () => {
    assert.equal(decide(alice, [], auth({ rules })).allow, false);
  });
});
