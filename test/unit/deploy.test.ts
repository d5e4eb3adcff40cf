// The deployment files in deploy/: the systemd unit (checked by systemd's
// own tools, and read directive by directive), the sysusers entry, the
// Containerfile, the container's config and the Kubernetes StatefulSet.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { parseAllDocuments } from "yaml";
import { loadConfig, REPO_ROOT } from "../../controlplane/src/mod.ts";

const DEPLOY = join(REPO_ROOT, "deploy");
const UNIT = join(DEPLOY, "systemd", "nats-tsnet.service");
const SYSUSERS = join(DEPLOY, "systemd", "nats-tsnet.sysusers.conf");
const CONTAINERFILE = join(DEPLOY, "container", "Containerfile");
const STATEFULSET = join(DEPLOY, "container", "statefulset.yaml");
const CONTAINER_CONFIG = join(DEPLOY, "container", "config.yaml");
/** The node's default lame_duck_duration, and what a stop needs on top of it. */
const LAME_DUCK_S = loadConfig({ env: {} }).nats.lame_duck_duration_ms / 1000;
const STOP_MARGIN_S = 30;
/** Highest acceptable `systemd-analyze security` exposure (0 best, 10 worst). */
const MAX_EXPOSURE = 2.0;

type Unit = Map<string, Map<string, string[]>>;

/**
 * A unit file as systemd reads it: sections of keys, each with every value
 * assigned in order (an empty assignment resets the list, as in systemd),
 * comments and line continuations handled.
 */
function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section: Map<string, string[]> | undefined;
  const joined = text.replace(/\\\n/g, " ");
  for (const raw of joined.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#") || line.startsWith(";")) continue;
    const head = /^\[(.+)\]$/.exec(line);
    if (head) {
      section = new Map();
      unit.set(head[1]!, section);
      continue;
    }
    const eq = line.indexOf("=");
    assert.ok(section && eq > 0, `not a key=value line in a section: ${line}`);
    const key = line.slice(0, eq).trim();
    const value = line.slice(eq + 1).trim();
    section.set(key, [...(section.get(key) ?? []), value]);
  }
  return unit;
}

/** systemd time spans as used here: "90s", "2min", "1min 30s". */
function seconds(span: string): number {
  let total = 0;
  for (const [, n, u] of span.matchAll(/(\d+)\s*(ms|s|sec|min|m|h)?/g)) {
    total += Number(n) * ({ ms: 0.001, s: 1, sec: 1, min: 60, m: 60, h: 3600 }[u ?? "s"] ?? 1);
  }
  return total;
}

function has(cmd: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;
}

const tmp = mkdtempSync(join(tmpdir(), "nt-deploy-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** The unit with its ExecStart pointing at an executable that exists here (verify checks it). */
function runnableCopy(): string {
  const dir = join(tmp, "units");
  mkdirSync(dir, { recursive: true });
  const path = join(dir, "nats-tsnet.service");
  writeFileSync(path, readFileSync(UNIT, "utf8").replaceAll("/usr/local/bin/nats-tsnet", process.execPath));
  return path;
}

describe("systemd unit", () => {
  const unit = parseUnit(readFileSync(UNIT, "utf8"));
  const svc = unit.get("Service")!;
  const one = (key: string) => {
    const v = svc.get(key);
    assert.ok(v, `[Service] sets ${key}`);
    return v.at(-1)!;
  };

  test("runs the release file as `run --config` under its own unprivileged user", () => {
    assert.deepEqual(one("ExecStart").split(/\s+/), ["/usr/local/bin/nats-tsnet", "run", "--config", "/etc/nats-tsnet/config.yaml"]);
    assert.equal(one("User"), "nats-tsnet");
    assert.equal(one("Group"), "nats-tsnet");
    assert.equal(svc.get("DynamicUser"), undefined, "a dedicated user, not DynamicUser= (see the unit's comment)");
    assert.deepEqual(unit.get("Install")?.get("WantedBy"), ["multi-user.target"]);
  });

  test("state, cache and configuration directories; state_dir is the StateDirectory", () => {
    assert.equal(one("StateDirectory"), "nats-tsnet");
    assert.equal(one("CacheDirectory"), "nats-tsnet");
    assert.equal(one("ConfigurationDirectory"), "nats-tsnet");
    assert.equal(one("StateDirectoryMode"), "0700");
    assert.ok(svc.get("Environment")!.includes("NATS_TSNET_STATE_DIR=/var/lib/nats-tsnet"));
    // The auth key comes from a root-only file, optional after the first login.
    assert.equal(one("EnvironmentFile"), "-/etc/nats-tsnet/env");
  });

  test("stops through lame duck: SIGTERM to the node alone, time enough, restart on failure", () => {
    assert.equal(one("KillSignal"), "SIGTERM");
    assert.equal(one("KillMode"), "mixed", "SIGTERM must reach the node only, not nats-server and the bridge at once");
    assert.ok(seconds(one("TimeoutStopSec")) >= LAME_DUCK_S + STOP_MARGIN_S, `TimeoutStopSec=${one("TimeoutStopSec")}`);
    assert.equal(one("Restart"), "on-failure");
  });

  test("hardening directives", () => {
    const yes = [
      "NoNewPrivileges",
      "ProtectHome",
      "PrivateTmp",
      "PrivateDevices",
      "PrivateUsers",
      "ProtectKernelTunables",
      "ProtectKernelModules",
      "ProtectKernelLogs",
      "ProtectControlGroups",
      "ProtectClock",
      "ProtectHostname",
      "RestrictNamespaces",
      "RestrictRealtime",
      "RestrictSUIDSGID",
      "LockPersonality",
      "RemoveIPC",
    ];
    for (const key of yes) assert.equal(one(key), "yes", key);
    assert.equal(one("ProtectSystem"), "strict");
    assert.equal(one("CapabilityBoundingSet"), "", "no capabilities at all");
    assert.equal(one("AmbientCapabilities"), "");
    assert.equal(one("SystemCallArchitectures"), "native");
    assert.deepEqual(new Set(one("RestrictAddressFamilies").split(/\s+/)), new Set(["AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK"]));
    const filter = svc.get("SystemCallFilter")!;
    assert.ok(filter.includes("@system-service"));
    assert.ok(
      filter.some((f) => f.split(/\s+/).includes("landlock_restrict_self")),
      "nats-server's Landlock confinement needs the landlock calls",
    );
    // V8's JIT needs writable+executable memory.
    assert.ok(!svc.has("MemoryDenyWriteExecute") || one("MemoryDenyWriteExecute") === "no", "MemoryDenyWriteExecute would kill Node.js");
    assert.ok(!svc.has("ProcSubset"), "the node reads /proc/meminfo");
  });

  test("systemd-analyze verify passes without a warning", { skip: !has("systemd-analyze") && "systemd-analyze is not installed" }, () => {
    const r = spawnSync("systemd-analyze", ["verify", runnableCopy()], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr.trim(), "", "no warnings (unknown keys, bad values)");
  });

  test(
    `systemd-analyze security rates the exposure at most ${MAX_EXPOSURE}`,
    { skip: !has("systemd-analyze") && "systemd-analyze is not installed" },
    (t) => {
      const r = spawnSync(
        "systemd-analyze",
        ["security", "--offline=yes", `--threshold=${Math.round(MAX_EXPOSURE * 10)}`, "--no-pager", runnableCopy()],
        { encoding: "utf8" },
      );
      const score = Number(/Overall exposure level for nats-tsnet\.service: ([\d.]+)/.exec(r.stdout)?.[1]);
      assert.ok(Number.isFinite(score), r.stdout + r.stderr);
      t.diagnostic(`exposure ${score}`);
      assert.ok(score <= MAX_EXPOSURE, `exposure ${score}:\n${r.stdout}`);
      assert.equal(r.status, 0, r.stderr);
    },
  );

  test("sysusers entry makes the unit's user", { skip: !has("systemd-sysusers") && "systemd-sysusers is not installed" }, () => {
    const root = join(tmp, "sysroot");
    mkdirSync(join(root, "etc"), { recursive: true });
    const r = spawnSync("systemd-sysusers", [`--root=${root}`, SYSUSERS], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    const passwd = readFileSync(join(root, "etc", "passwd"), "utf8")
      .split("\n")
      .find((l) => l.startsWith("nats-tsnet:"));
    const [, , uid, , , home, shell] = passwd!.split(":");
    assert.ok(Number(uid) > 0 && Number(uid) < 1000, `a system uid: ${uid}`);
    assert.equal(home, "/var/lib/nats-tsnet");
    assert.equal(shell, "/usr/sbin/nologin");
  });
});

/** Containerfile instructions (continuations joined), as [instruction, arguments]. */
function instructions(text: string): Array<[string, string]> {
  return text
    .replace(/\\\n/g, " ")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"))
    .map((l) => {
      const m = /^(\S+)\s+(.*)$/.exec(l)!;
      return [m[1]!.toUpperCase(), m[2]!.trim()];
    });
}

describe("container image and Kubernetes example", () => {
  const steps = instructions(readFileSync(CONTAINERFILE, "utf8"));
  const all = (i: string) => steps.filter(([k]) => k === i).map(([, v]) => v);
  const env = new Map(all("ENV").flatMap((v) => [...v.matchAll(/(\w+)=(\S+)/g)].map((m) => [m[1]!, m[2]!] as const)));

  test("Containerfile: a Debian slim base by short name, the release file as the entrypoint, a non-root uid", () => {
    const base = all("ARG").find((a) => a.startsWith("BASE="));
    assert.match(base!, /^BASE=debian:[\w.-]+-slim$/, "a short image name: no registry host in the file");
    assert.deepEqual(all("FROM"), ["${BASE}"]);
    assert.ok(
      all("COPY").some((c) => /\$\{RELEASE_FILE\} \/usr\/local\/bin\/nats-tsnet$/.test(c)),
      "the release file goes to /usr/local/bin/nats-tsnet",
    );
    assert.ok(all("ARG").includes("RELEASE_FILE=dist/nats-tsnet-linux-${TARGETARCH}"));
    assert.deepEqual(all("USER"), ["65532:65532"]);
    assert.deepEqual(all("STOPSIGNAL"), ["SIGTERM"]);
    assert.deepEqual(JSON.parse(all("ENTRYPOINT")[0]!), ["/usr/local/bin/nats-tsnet"]);
    assert.deepEqual(JSON.parse(all("CMD")[0]!), ["run", "--config", "/etc/nats-tsnet/config.yaml"]);
  });

  test("Containerfile: state on a volume, the binary cache on it too (works with a read-only root)", () => {
    assert.deepEqual(all("VOLUME"), ["/var/lib/nats-tsnet"]);
    assert.equal(env.get("NATS_TSNET_STATE_DIR"), "/var/lib/nats-tsnet");
    assert.ok(env.get("NATS_TSNET_CACHE_DIR")!.startsWith("/var/lib/nats-tsnet/"));
    assert.ok(!env.has("TS_AUTHKEY"), "no auth key baked into the image");
  });

  test("the container's config.yaml is valid and puts state on the volume", () => {
    const c = loadConfig({ file: CONTAINER_CONFIG, env: {} });
    assert.equal(c.state_dir, "/var/lib/nats-tsnet");
    assert.equal(c.log.format, "json");
  });

  test("StatefulSet: three pods, a volume each, the key from a Secret, locked down, time for lame duck", () => {
    const docs = parseAllDocuments(readFileSync(STATEFULSET, "utf8")).map((d) => d.toJS());
    assert.deepEqual(
      docs.map((d) => d.kind),
      ["StatefulSet"],
      "only the StatefulSet: no Service, clients come over the tailnet",
    );
    const s = docs[0].spec;
    assert.equal(s.replicas, 3);
    const pod = s.template.spec;
    assert.ok(pod.terminationGracePeriodSeconds >= LAME_DUCK_S + STOP_MARGIN_S);
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.equal(pod.securityContext.runAsUser, 65532);
    const [c] = pod.containers;
    assert.equal(c.securityContext.readOnlyRootFilesystem, true);
    assert.equal(c.securityContext.allowPrivilegeEscalation, false);
    assert.deepEqual(c.securityContext.capabilities.drop, ["ALL"]);
    const envOf = (n: string) => c.env.find((e: { name: string }) => e.name === n);
    assert.equal(envOf("NATS_TSNET_HOSTNAME").valueFrom.fieldRef.fieldPath, "metadata.name");
    assert.ok(envOf("TS_AUTHKEY").valueFrom.secretKeyRef.name);
    const [claim] = s.volumeClaimTemplates;
    const mount = c.volumeMounts.find((m: { name: string }) => m.name === claim.metadata.name);
    assert.equal(mount.mountPath, env.get("NATS_TSNET_STATE_DIR"), "the claim is mounted where the image keeps its state");
    assert.deepEqual(c.readinessProbe.exec.command.slice(0, 3), ["/usr/local/bin/nats-tsnet", "peer", "list"]);
  });
});
