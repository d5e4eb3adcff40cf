// Issue 15: the client face's guard, as the control plane configures it:
// nats.device_limits (config) and the grant gate handed to the bridge in
// auth mode tailnet. The bridge's own side is tested in Go
// (dataplane/bridge/limit_test.go).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ConfigError, decide, grantGate, identityOf, loadConfig, type ConfigInput } from "../../controlplane/src/mod.ts";

const load = (overrides: ConfigInput) => loadConfig({ env: {}, overrides: { hostname: "nats-1", ...overrides } });

function configCode(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e.code;
  }
  return "";
}

describe("nats.device_limits", () => {
  test("defaults: 256 open, 20 a second after a burst of 100", () => {
    assert.deepEqual(load({}).nats.device_limits, { max_connections: 256, connect_rate: 20, connect_burst: 100 });
  });

  test("0 turns a limit off; a fractional rate is a rate", () => {
    const l = load({ nats: { device_limits: { max_connections: 0, connect_rate: 0.5 } } }).nats.device_limits;
    assert.deepEqual(l, { max_connections: 0, connect_rate: 0.5, connect_burst: 100 });
  });

  test("refuses what cannot be meant", () => {
    for (const device_limits of [
      { max_connections: -1 },
      { max_connections: 1.5 },
      { connect_rate: -1 },
      { connect_burst: 0 }, // a bucket that holds nothing: no connection would ever pass
      { connect_burst: 2.5 },
      { max_conns: 5 }, // a typo is not silently ignored
    ]) {
      assert.equal(
        configCode(() => load({ nats: { device_limits } as ConfigInput["nats"] })),
        "ERR_CONFIG_INVALID",
        JSON.stringify(device_limits),
      );
    }
  });
});

describe("grantGate: what the bridge refuses before the callout is asked", () => {
  const rules = [
    { users: ["bob@example.com"], tags: [], pub: { allow: ["bob.>"] } },
    { users: ["alice@example.com", "bob@example.com"], tags: ["tag:billing"], pub: { allow: ["x.>"] } },
    { users: [], tags: ["tag:svc"] },
  ];
  const auth = load({ auth: { capability: "example.com/cap/nats", rules } }).auth;

  test("the capability, and every login and tag a rule names, once each", () => {
    assert.deepEqual(grantGate(auth), {
      capability: "example.com/cap/nats",
      users: ["alice@example.com", "bob@example.com"],
      tags: ["tag:billing", "tag:svc"],
    });
    assert.deepEqual(grantGate(load({}).auth), { capability: "nats-tsnet.dev/cap/nats", users: [], tags: [] });
  });

  test("an identity the gate does not list, without grants, is one decide refuses with 'no grant'", () => {
    const gate = grantGate(auth)!;
    const who = (user: string, tags: string[] = []) =>
      identityOf({
        device: { id: "1", name: "d", dnsName: "d.ts.net", hostName: "d", ips: [], tags, online: true },
        user: user || undefined,
        label: `${tags.join(",") || user} (d)`,
      });
    // The bridge's rule (GrantGate.admits): a tagged device is its tags, any other its login.
    const listed = (id: ReturnType<typeof who>) =>
      id.tags.length ? id.tags.some((t) => gate.tags.includes(t)) : gate.users.includes(id.user);
    for (const id of [who("alice@example.com"), who("bob@example.com"), who("", ["tag:svc"]), who("", ["tag:x", "tag:billing"])]) {
      assert.ok(listed(id), `${id.label} is named by a rule`);
      const d = decide(id, undefined, auth);
      assert.ok(d.allow || !/^no grant/.test(d.reason), `${id.label}: decide does not say "no grant"`);
    }
    for (const id of [who("carol@example.com"), who("", ["tag:other"])]) {
      assert.ok(!listed(id), `${id.label} is named by no rule`);
      const d = decide(id, undefined, auth);
      assert.ok(!d.allow && /^no grant of example\.com\/cap\/nats for /.test(d.reason), `${id.label}: decide says "no grant"`);
    }
  });
});
