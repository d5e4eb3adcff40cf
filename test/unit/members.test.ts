import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { diffMembers, dialTargets, membersOf, routeAlias, type Device, type TailnetStatus } from "../../controlplane/src/mod.ts";

const dev = (id: string, name: string, tags: string[], ips = [`100.64.0.${id}`, `fd7a:115c:a1e0::${id}`], online = true): Device => ({
  id,
  name,
  dnsName: `${name}.ts.net`,
  hostName: name,
  ips,
  tags,
  online,
});
const status = (peers: Device[]): TailnetStatus => ({ backendState: "Running", self: dev("1", "self", ["tag:nats-js"]), peers });

describe("membership", () => {
  test("only peers with the cluster tag are members, offline ones included", () => {
    const m = membersOf(
      status([
        dev("2", "b", ["tag:nats-js"]),
        dev("3", "c", ["tag:web"]),
        dev("4", "d", ["tag:nats-js"], undefined, false),
        dev("5", "e", []),
      ]),
      "tag:nats-js",
    );
    assert.deepEqual(
      m.map((x) => [x.name, x.online]),
      [
        ["b", true],
        ["d", false],
      ],
    );
  });

  test("a peer without addresses is not a member (it cannot be routed to)", () => {
    assert.deepEqual(membersOf(status([dev("2", "b", ["tag:nats-js"], [])]), "tag:nats-js"), []);
  });

  test("diff: added, removed, and a device whose addresses changed", () => {
    const a = membersOf(status([dev("2", "b", ["tag:nats-js"]), dev("3", "c", ["tag:nats-js"])]), "tag:nats-js");
    const b = membersOf(status([dev("3", "c", ["tag:nats-js"], ["100.64.0.9"]), dev("4", "d", ["tag:nats-js"])]), "tag:nats-js");
    const d = diffMembers(a, b);
    assert.deepEqual([d.added.map((x) => x.name), d.removed.map((x) => x.name), d.changed.map((x) => x.name)], [["d"], ["b"], ["c"]]);
  });

  test("flapping online state is no change at all", () => {
    const a = membersOf(status([dev("2", "b", ["tag:nats-js"])]), "tag:nats-js");
    const b = membersOf(status([dev("2", "b", ["tag:nats-js"], undefined, false)]), "tag:nats-js");
    const d = diffMembers(a, b);
    assert.equal(d.added.length + d.removed.length + d.changed.length, 0);
  });
});

describe("route aliases", () => {
  test("derived from the tailnet IPv4: same on every node, never 127.0.0.1", () => {
    assert.equal(routeAlias({ ips: ["100.64.0.7", "fd7a::7"] }), "127.64.0.7");
    assert.equal(routeAlias({ ips: ["fd7a::7", "100.101.2.3"] }), "127.101.2.3");
  });

  test("IPv6-only devices get a stable loopback alias outside the IPv4-derived range", () => {
    const a = routeAlias({ ips: ["fd7a:115c:a1e0::42"] });
    assert.equal(a, routeAlias({ ips: ["fd7a:115c:a1e0::42"] }));
    assert.match(a, /^127\.(1[2-9]\d|2[0-5]\d)\.\d+\.\d+$/);
    assert.notEqual(a, routeAlias({ ips: ["fd7a:115c:a1e0::43"] }));
  });

  test("the bridge computes the same aliases (dataplane/bridge/testdata/route-alias.json, checked by Go too)", () => {
    const cases = JSON.parse(readFileSync(new URL("../../dataplane/bridge/testdata/route-alias.json", import.meta.url), "utf8"));
    assert.ok(cases.length >= 4);
    for (const c of cases as Array<{ ips: string[]; alias: string }>) assert.equal(routeAlias({ ips: c.ips }), c.alias, c.ips.join(" "));
  });

  test("dial targets: every address, IPv4 first, IPv6 bracketed", () => {
    assert.deepEqual(dialTargets(["fd7a::3", "100.64.0.3"], 6222), ["100.64.0.3:6222", "[fd7a::3]:6222"]);
  });
});
