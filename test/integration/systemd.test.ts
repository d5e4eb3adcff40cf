// The systemd unit (deploy/systemd/nats-tsnet.service) for real: systemd
// 252 boots in a podman container and starts the unit as written, with
// every hardening directive applied by systemd itself (user, seccomp
// filter, namespaces, capability bounding set, protected paths), and the
// release file inside joins the lab's headscale from a lab host's network
// namespace. The container's root file system is this machine's own root,
// seen through an overlay whose writable layer is a tmpfs of this test: no
// image, no registry, and nothing written to the machine.
//
// The container is privileged: systemd needs to make the mount, user and
// IPC namespaces of the unit's sandbox. So that it changes nothing outside
// the container, only the unit and what sysinit.target needs start; the
// units that touch the kernel (sysctl, binfmt, modules, kernel file systems,
// udev, the clock) are masked.
//
// Needs: the release file (built by testReleaseFile; or NATS_TSNET_RELEASE_FILE),
// podman with runc, systemd on this machine.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { stringify } from "yaml";
import { REPO_ROOT } from "../../controlplane/src/mod.ts";
import { CLUSTER_TAG, namespacesUnavailable, tailnetEnv, type Host } from "../../localtailnet/mod.ts";
import { eventually, natsConnect, startTestTailnet, testReleaseFile, type TestTailnet } from "./helpers.ts";

/** The release file under test (testReleaseFile, in before). */
let release = "";
const UNIT = join(REPO_ROOT, "deploy", "systemd", "nats-tsnet.service");
const SYSUSERS = join(REPO_ROOT, "deploy", "systemd", "nats-tsnet.sysusers.conf");
const SYSTEMD = "/lib/systemd/systemd";
const NAME = "nats-s";
const CONTAINER = "nats-tsnet-systemd-test";
const enc = new TextEncoder();
const dec = new TextDecoder();

/** Units that would reach past the container (kernel settings, devices, the clock) or are of no use here. */
const MASKED = [
  "systemd-binfmt.service",
  "proc-sys-fs-binfmt_misc.automount",
  "proc-sys-fs-binfmt_misc.mount",
  "systemd-sysctl.service",
  "systemd-modules-load.service",
  "sys-kernel-debug.mount",
  "sys-kernel-tracing.mount",
  "sys-kernel-config.mount",
  "sys-fs-fuse-connections.mount",
  "dev-hugepages.mount",
  "systemd-udevd.service",
  "systemd-udev-trigger.service",
  "systemd-random-seed.service",
  "systemd-remount-fs.service",
  "systemd-timesyncd.service",
  "systemd-pstore.service",
];

function onPath(cmd: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;
}

function skipReason(): string | undefined {
  if (!onPath("podman") || !onPath("runc")) return "podman and runc are not installed (scripts/setup.sh installs them)";
  if (!existsSync(SYSTEMD) || !onPath("systemd-sysusers")) return "systemd is not installed on this machine";
  return namespacesUnavailable();
}

describe("the systemd unit, run by systemd in a container on the local tailnet", { skip: skipReason() }, () => {
  let t: TestTailnet;
  let host: Host;
  let root: string; // the container's root: this machine's, through an overlay
  let sd: string;
  let podman: (args: string[], timeoutMs?: number) => string;
  let uid: number;

  const journal = () =>
    podman(["exec", CONTAINER, "journalctl", "-u", "nats-tsnet", "--no-pager", "-o", "cat"])
      .split("\n")
      .flatMap((l) => {
        try {
          return [JSON.parse(l) as Record<string, unknown>];
        } catch {
          return l ? [{ systemd: l }] : [];
        }
      });
  const tail = () =>
    journal()
      .slice(-15)
      .map((l) => JSON.stringify(l))
      .join("\n");
  const show = (props: string[]) =>
    Object.fromEntries(
      podman(["exec", CONTAINER, "systemctl", "show", "nats-tsnet", ...props.map((p) => `--property=${p}`)])
        .trim()
        .split("\n")
        .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
    );

  before(async () => {
    release = testReleaseFile();
    t = await startTestTailnet("systemd");
    const globals = [
      "--root",
      join(t.dir, "storage"),
      "--runroot",
      join(t.dir, "run"),
      "--runtime",
      "runc",
      "--cgroup-manager",
      "cgroupfs",
    ];
    podman = (args, timeoutMs = 30_000) =>
      execFileSync("podman", [...globals, ...args], { encoding: "utf8", timeout: timeoutMs, stdio: ["ignore", "pipe", "pipe"] });

    // The root file system: an overlay of / (this machine's root mount, without
    // the mounts under it) with its writable layer on a tmpfs of our own.
    sd = join(t.dir, "sd");
    root = join(sd, "root");
    mkdirSync(sd);
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=1g,mode=0700", "tmpfs", sd]);
    t.onCleanup(() => spawnSync("umount", ["-l", sd]));
    for (const d of ["upper", "work", "root"]) mkdirSync(join(sd, d));
    execFileSync("mount", ["-t", "overlay", "overlay", "-o", `lowerdir=/,upperdir=${sd}/upper,workdir=${sd}/work`, root]);
    t.onCleanup(() => spawnSync("umount", ["-l", root]));
    // (cleanup hooks run last first: the container goes before its root)
    t.onCleanup(() => spawnSync("podman", [...globals, "rm", "-f", "-t", "0", CONTAINER], { stdio: "ignore" }));

    // Installed as the README's Install section says.
    copyFileSync(release, join(root, "usr/local/bin/nats-tsnet"));
    chmodSync(join(root, "usr/local/bin/nats-tsnet"), 0o755);
    mkdirSync(join(root, "etc/sysusers.d"), { recursive: true });
    copyFileSync(SYSUSERS, join(root, "etc/sysusers.d/nats-tsnet.conf"));
    execFileSync("systemd-sysusers", [`--root=${root}`, join(root, "etc/sysusers.d/nats-tsnet.conf")], { stdio: "ignore" });
    const passwd = readFileSync(join(root, "etc/passwd"), "utf8")
      .split("\n")
      .find((l) => l.startsWith("nats-tsnet:"))!;
    uid = Number(passwd.split(":")[2]);
    copyFileSync(UNIT, join(root, "etc/systemd/system/nats-tsnet.service"));
    mkdirSync(join(root, "etc/nats-tsnet"), { recursive: true });
    writeFileSync(join(root, "etc/nats-tsnet/config.yaml"), stringify({ state_dir: "/var/lib/nats-tsnet", log: { format: "json" } }));
    host = t.tailnet.net.addHost(NAME);
    const env = {
      ...tailnetEnv(),
      TS_AUTHKEY: await t.tailnet.headscale.authKey({ tags: [CLUSTER_TAG] }),
      TS_CONTROL_URL: t.tailnet.headscale.url,
      NATS_TSNET_HOSTNAME: NAME,
    };
    writeFileSync(
      join(root, "etc/nats-tsnet/env"),
      Object.entries(env)
        .map(([k, v]) => `${k}=${v}\n`)
        .join(""),
      { mode: 0o600 },
    );
    const units = join(root, "etc/systemd/system");
    const siteWants = join(units, "sysinit.target.wants");
    const masked = [...MASKED, ...(existsSync(siteWants) ? readdirSync(siteWants) : [])];
    for (const u of new Set(masked)) {
      spawnSync("rm", ["-f", join(units, u)]);
      symlinkSync("/dev/null", join(units, u));
    }

    const tmpfs = (path: string, mode: string) => ["--tmpfs", `${path}:rw,notmpcopyup,mode=${mode}`];
    podman([
      "run",
      "-d",
      "--name",
      CONTAINER,
      "--systemd=always",
      "--privileged",
      // Empty, not copies of this machine's.
      ...tmpfs("/run", "755"),
      ...tmpfs("/tmp", "1777"),
      ...tmpfs("/var/tmp", "1777"),
      ...tmpfs("/var/log/journal", "755"),
      "--network",
      `ns:/run/netns/${host.netns}`,
      "--dns",
      "none",
      "--no-hosts",
      // See container.test.ts: no raising of hard limits here.
      "--ulimit",
      "nofile=16384:16384",
      "--ulimit",
      "nproc=8192:8192",
      "--rootfs",
      root,
      SYSTEMD,
      "--unit=nats-tsnet.service",
    ]);
  });

  after(async () => {
    await t?.cleanup();
  });

  test("systemd starts the unit, and the node logs ready", async () => {
    await eventually(() => journal().some((l) => l.msg === "ready"), 45_000, "ready in the unit's journal").catch((e) => {
      throw new Error(`${(e as Error).message}\n${tail()}`);
    });
    assert.deepEqual(show(["ActiveState", "User"]), { ActiveState: "active", User: "nats-tsnet" });
  });

  test("the node, the bridge and nats-server run sandboxed: its user, no capabilities, seccomp, Landlock", () => {
    const pids = execFileSync("ip", ["netns", "pids", host.netns], { encoding: "utf8" }).split("\n").filter(Boolean);
    const ours = pids.filter((p) =>
      ["MainThread", "nats-tsnet-brid", "nats-server"].includes(readFileSync(`/proc/${p}/comm`, "utf8").trim()),
    );
    assert.equal(ours.length, 3, `the node, the bridge and nats-server: ${ours}`);
    for (const p of ours) {
      const status = readFileSync(`/proc/${p}/status`, "utf8");
      const field = (k: string) => new RegExp(`^${k}:\\s+(.*)$`, "m").exec(status)![1]!.trim().split(/\s+/);
      assert.deepEqual(field("Uid"), [`${uid}`, `${uid}`, `${uid}`, `${uid}`], `uids of ${p}`);
      assert.equal(field("CapEff")[0], "0000000000000000");
      assert.equal(field("CapBnd")[0], "0000000000000000", "CapabilityBoundingSet= (empty)");
      assert.equal(field("NoNewPrivs")[0], "1");
      assert.equal(field("Seccomp")[0], "2", "SystemCallFilter= is a seccomp filter");
    }
    assert.ok(
      journal().some((l) => typeof l.msg === "string" && l.msg.startsWith("outbound connections confined to TCP ports")),
      `nats-server runs under Landlock (its syscalls pass the filter): ${tail()}`,
    );
    // What systemd made for the unit, owned by its user.
    for (const d of ["var/lib/nats-tsnet/tailscale", "var/lib/nats-tsnet/jetstream", "var/cache/nats-tsnet/bin"]) {
      assert.equal(statSync(join(root, d)).uid, uid, d);
    }
  });

  test("clients on the tailnet reach it", async () => {
    const client = await t.tailnet.startProxy("client-1", { to: `${NAME}:4222` });
    const nc = await eventually(() => natsConnect(client.url, { name: "systemd-test", timeout: 3000 }), 30_000, "NATS through the tailnet");
    const sub = nc.subscribe("hello.>", { max: 1 });
    nc.publish("hello.systemd", enc.encode("hi"));
    for await (const m of sub) assert.equal(dec.decode(m.data), "hi");
    await nc.close();
    await client.stop();
  });

  test("systemctl stop: lame duck, exit code 0, well within TimeoutStopSec", () => {
    const t0 = Date.now();
    podman(["exec", CONTAINER, "systemctl", "stop", "nats-tsnet"], 120_000);
    const secs = (Date.now() - t0) / 1000;
    console.log(`# systemctl stop took ${secs.toFixed(1)}s`);
    assert.deepEqual(show(["Result", "ExecMainStatus", "ActiveState"]), {
      Result: "success",
      ExecMainStatus: "0",
      ActiveState: "inactive",
    });
    const msgs = journal().map((l) => l.msg);
    for (const m of ["stopping", "lame duck", "stopped"]) assert.ok(msgs.includes(m), `logged ${m}: ${tail()}`);
    assert.ok(secs < 60);
  });
});
