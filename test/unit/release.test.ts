// Pure parts of the release file: where carried binaries are unpacked, and
// how build information is read from a checkout.
import assert from "node:assert/strict";
import { test } from "node:test";
import { cacheRoot } from "../../controlplane/src/embedded.ts";
import { checkoutBuildInfo, formatVersion, goModVersion, versionReport } from "../../controlplane/src/version.ts";
import { REPO_ROOT } from "../../controlplane/src/mod.ts";

test("the cache directory: NATS_TSNET_CACHE_DIR, then systemd's, then XDG, then HOME", () => {
  const all = { NATS_TSNET_CACHE_DIR: "/a", CACHE_DIRECTORY: "/b:/c", XDG_CACHE_HOME: "/x", HOME: "/h" };
  assert.equal(cacheRoot(all), "/a");
  assert.equal(cacheRoot({ ...all, NATS_TSNET_CACHE_DIR: "" }), "/b");
  assert.equal(cacheRoot({ XDG_CACHE_HOME: "/x", HOME: "/h" }), "/x/nats-tsnet");
  assert.equal(cacheRoot({ HOME: "/h" }), "/h/.cache/nats-tsnet");
});

test("go.mod pins are read from require lines, single or in a block", () => {
  const mod = "module m\n\nrequire tailscale.com v1.98.10\n\nrequire (\n\tgithub.com/nats-io/nats-server/v2 v2.14.9 // indirect\n)\n";
  assert.equal(goModVersion(mod, "tailscale.com"), "v1.98.10");
  assert.equal(goModVersion(mod, "github.com/nats-io/nats-server/v2"), "v2.14.9");
  assert.equal(goModVersion(mod, "github.com/nats-io/nats-server"), "unknown", "a prefix is not the module");
});

test("a checkout reports its pins, and --version lists what is inside", () => {
  const b = checkoutBuildInfo(REPO_ROOT);
  assert.match(b.version, /^\d+\.\d+\.\d+/);
  assert.match(b.nats_server, /^v2\./);
  assert.match(b.tailscale, /^v1\./);
  assert.match(b.commit, /^([0-9a-f]{40}(-dirty)?|unknown)$/);
  const r = versionReport(REPO_ROOT, false);
  assert.equal(r.node, process.versions.node);
  assert.equal(r.release, false);
  const text = formatVersion(r);
  for (const v of [r.version, r.nats_server, r.tailscale, `v${r.node}`]) assert.ok(text.includes(v), v);
});
