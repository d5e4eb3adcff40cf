// The container image of deploy/container/Containerfile, built around the
// release file and run for real with podman inside a lab host's network
// namespace, where it joins the lab's headscale and clusters with a node
// of the lab. No registry is reachable, so the base image is made from this
// machine's own files (the release file's shared libraries, found with
// ldd, plus a shell and setpriv), and nothing is ever pulled (--pull=never).
// podman keeps its images and containers in this test's own directory.
//
// Needs: the release file (built by testReleaseFile; or NATS_TSNET_RELEASE_FILE),
// podman, and runc where crun cannot run containers (cgroup v1/hybrid).
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { chownSync, copyFileSync, existsSync, linkSync, mkdirSync, readFileSync, readdirSync, statSync, symlinkSync } from "node:fs";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { eachLine, exited, REPO_ROOT } from "../../controlplane/src/mod.ts";
import { CLUSTER_TAG, namespacesUnavailable, tailnetEnv, withTimeout, type Host, type LabProxy } from "../../localtailnet/mod.ts";
import { eventually, logTail, natsConnect, startTestTailnet, testReleaseFile, type TestTailnet } from "./helpers.ts";

const ARCH = process.arch === "arm64" ? "arm64" : "amd64";
/** The release file under test (testReleaseFile, in before). */
let release = "";
const CONTAINERFILE = join(REPO_ROOT, "deploy", "container", "Containerfile");
const UID = 65532;
const NAME = "nats-c"; // the container node's device name and lab host
const enc = new TextEncoder();
const dec = new TextDecoder();

function onPath(cmd: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;
}

function skipReason(): string | undefined {
  if (!onPath("podman")) return "podman is not installed (scripts/setup.sh installs it with runc)";
  return namespacesUnavailable();
}

/** podman with its storage in dir, never pulling, on a runtime that works here. */
function podmanGlobals(dir: string): string[] {
  // crun 1.8 refuses cgroup v1 hosts whose cgroup2 hierarchy has controllers
  // ("hybrid mode"); runc runs on v1, hybrid and v2 alike.
  const runtime = onPath("runc") ? ["--runtime", "runc"] : [];
  return [
    "--root",
    join(dir, "storage"),
    "--runroot",
    join(dir, "run"),
    "--cgroup-manager",
    "cgroupfs",
    "--events-backend",
    "file",
    ...runtime,
  ];
}

/**
 * Each container gets these resource limits. podman's defaults (nofile
 * 1048576) are above the hard limits of a sandbox without CAP_SYS_RESOURCE,
 * where raising a hard limit fails ("error setting rlimits"), even to the
 * limit this process has (the runtime's own may be lower); these are below
 * both and plenty for one node.
 */
function ulimits(): string[] {
  const limits = readFileSync("/proc/self/limits", "utf8");
  const hard = (row: string) => Number(new RegExp(`^${row}\\s+\\S+\\s+(\\d+)`, "m").exec(limits)?.[1] ?? Infinity);
  const nofile = Math.min(hard("Max open files"), 16_384);
  const nproc = Math.min(hard("Max processes"), 4_096);
  return ["--ulimit", `nofile=${nofile}:${nofile}`, "--ulimit", `nproc=${nproc}:${nproc}`];
}

/**
 * A base image from this machine's files: what the release file links
 * against, and what the Containerfile's RUN and the node need (sh, mkdir,
 * chown, chmod), CA certificates, and a root user. Returns the
 * tar stream's source directory.
 */
function baseRootfs(dir: string): string {
  const root = join(dir, "rootfs");
  // merged /usr, as Debian has it: /bin/sh is found whichever path ldd or PATH gives.
  mkdirSync(join(root, "usr", "lib64"), { recursive: true });
  for (const d of ["bin", "sbin", "lib", "lib64"]) {
    mkdirSync(join(root, "usr", d), { recursive: true });
    symlinkSync(join("usr", d), join(root, d));
  }
  const put = (file: string) => {
    const to = join(root, file);
    mkdirSync(dirname(to), { recursive: true });
    if (!existsSync(to)) copyFileSync(file, to); // follows symlinks: the library itself
  };
  const withLibs = (file: string) => {
    const from = file.startsWith("/") ? file : execFileSync("sh", ["-c", `command -v ${file}`], { encoding: "utf8" }).trim();
    const ldd = execFileSync("ldd", [from], { encoding: "utf8" });
    for (const lib of ldd.match(/\/\S+/g) ?? []) put(lib);
    return from;
  };
  for (const cmd of ["sh", "mkdir", "chown", "chmod"]) {
    const path = withLibs(cmd);
    put(path);
  }
  withLibs(release);
  for (const certs of ["/etc/ssl/certs/ca-certificates.crt"]) if (existsSync(certs)) put(certs);
  mkdirSync(join(root, "etc"), { recursive: true });
  execFileSync(
    "sh",
    ["-c", `printf 'root:x:0:0:root:/root:/bin/sh\\n' > etc/passwd; printf 'root:x:0:\\n' > etc/group; mkdir -p -m 1777 tmp`],
    {
      cwd: root,
    },
  );
  return root;
}

describe("the container image, run with podman on the local tailnet", { skip: skipReason() }, () => {
  let t: TestTailnet;
  let dir: string;
  let podman: (args: string[], timeoutMs?: number) => string;
  let globals: string[];
  let host: Host;
  let run: ChildProcess;
  let client: LabProxy;
  let nc: NatsConnection | undefined;
  const lines: Array<Record<string, unknown>> = [];
  let ready: Promise<void>;

  before(async () => {
    release = testReleaseFile();
    t = await startTestTailnet("container");
    dir = t.dir;
    globals = podmanGlobals(dir);
    podman = (args, timeoutMs = 60_000) =>
      execFileSync("podman", [...globals, ...args], { encoding: "utf8", timeout: timeoutMs, stdio: ["ignore", "pipe", "pipe"] });
    const t0 = Date.now();

    // The base and the image. The build context holds only what the
    // Containerfile copies (the repository's would be gigabytes).
    const rootfs = baseRootfs(dir);
    execFileSync(
      "sh",
      ["-c", `r=$1; shift; tar -C "$r" -c . | podman "$@" import - localhost/nats-tsnet-test-base`, "sh", rootfs, ...globals],
      {
        stdio: ["ignore", "ignore", "pipe"],
      },
    );
    const ctx = join(dir, "context");
    mkdirSync(join(ctx, "dist"), { recursive: true });
    mkdirSync(join(ctx, "deploy", "container"), { recursive: true });
    try {
      linkSync(release, join(ctx, "dist", `nats-tsnet-linux-${ARCH}`));
    } catch {
      copyFileSync(release, join(ctx, "dist", `nats-tsnet-linux-${ARCH}`));
    }
    copyFileSync(join(REPO_ROOT, "deploy", "container", "config.yaml"), join(ctx, "deploy", "container", "config.yaml"));
    // chroot isolation: RUN needs no OCI runtime, cgroups or rlimits.
    podman(
      [
        "build",
        "--pull=never",
        "--isolation=chroot",
        "--build-arg",
        "BASE=localhost/nats-tsnet-test-base",
        "-f",
        CONTAINERFILE,
        "-t",
        "localhost/nats-tsnet-test",
        ctx,
      ],
      120_000,
    );
    console.log(`# base and image built in ${((Date.now() - t0) / 1000).toFixed(1)}s`);

    // A node of the lab to cluster with, and the container on a host of its own.
    await t.tailnet.startNode("nats-1");
    host = t.tailnet.net.addHost(NAME);
    const state = join(dir, "state");
    mkdirSync(state, { mode: 0o700 });
    chownSync(state, UID, UID);
    const authKey = await t.tailnet.headscale.authKey({ tags: [CLUSTER_TAG] });
    const env = { ...tailnetEnv(), TS_AUTHKEY: authKey, TS_CONTROL_URL: t.tailnet.headscale.url, NATS_TSNET_HOSTNAME: NAME };
    run = spawn(
      "podman",
      [
        ...globals,
        "run",
        "--pull=never",
        "--name",
        NAME,
        "--hostname",
        NAME,
        // The lab host's network namespace, and nothing of the machine's: no
        // resolv.conf (the lab has no DNS), no /etc/hosts entries.
        "--network",
        `ns:/run/netns/${host.netns}`,
        "--dns",
        "none",
        "--no-hosts",
        // What the StatefulSet asks for: read-only root, no capabilities, no
        // privilege escalation; the state volume is the only writable place.
        "--read-only",
        "--read-only-tmpfs=false",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "-v",
        `${state}:/var/lib/nats-tsnet`,
        ...ulimits(),
        ...Object.entries(env).flatMap(([k, v]) => ["-e", `${k}=${v}`]),
        "localhost/nats-tsnet-test",
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    ready = new Promise<void>((resolve, reject) => {
      const onLine = (line: string) => {
        try {
          const o = JSON.parse(line) as Record<string, unknown>;
          lines.push(o);
          if (o.msg === "ready") resolve();
        } catch {
          lines.push({ raw: line });
        }
      };
      eachLine(run.stdout, onLine);
      eachLine(run.stderr, onLine);
      void exited(run).then(({ code }) => reject(new Error(`podman run exited (code ${code}) before the node was ready: ${tail()}`)));
    });
    ready.catch(() => {});
  });

  const tail = () =>
    lines
      .slice(-15)
      .map((l) => JSON.stringify(l))
      .join("\n");

  after(async () => {
    await nc?.close().catch(() => {});
    if (globals) {
      spawnSync("podman", [...globals, "rm", "-f", "-t", "0", NAME], { stdio: "ignore" });
      spawnSync("podman", [...globals, "rmi", "-f", "localhost/nats-tsnet-test", "localhost/nats-tsnet-test-base"], { stdio: "ignore" });
    }
    await t?.cleanup();
  });

  test("the node in the container joins the tailnet and logs ready", async () => {
    await withTimeout(ready, 60_000, `the container node logs ready: ${tail()}`);
    const start = lines.find((l) => l.msg === "starting") as { config?: { state_dir?: string; hostname?: string } } | undefined;
    assert.equal(start?.config?.hostname, NAME);
    assert.equal(start?.config?.state_dir, "/var/lib/nats-tsnet");
  });

  test("every process of the container runs as uid 65532 with no capabilities", async () => {
    await ready; // fails at once when the container never came up
    const pid = podman(["inspect", "-f", "{{.State.Pid}}", NAME]).trim();
    const pids = execFileSync("ip", ["netns", "pids", host.netns], { encoding: "utf8" }).split("\n").filter(Boolean);
    assert.ok(pids.includes(pid), `the container's pid ${pid} is in the lab host's namespace (${pids})`);
    const comms = pids.map((p) => readFileSync(`/proc/${p}/comm`, "utf8").trim()).sort();
    // comm is cut to 15 characters: "nats-tsnet-brid".
    for (const name of ["nats-server", "nats-tsnet-brid"]) assert.ok(comms.includes(name), `${name} runs: ${comms}`);
    for (const p of pids) {
      const status = readFileSync(`/proc/${p}/status`, "utf8");
      const field = (k: string) => new RegExp(`^${k}:\\s+(.*)$`, "m").exec(status)?.[1]?.trim().split(/\s+/);
      assert.deepEqual(field("Uid"), [`${UID}`, `${UID}`, `${UID}`, `${UID}`], `uids of ${p}`);
      assert.deepEqual(field("Gid"), [`${UID}`, `${UID}`, `${UID}`, `${UID}`], `gids of ${p}`);
      assert.equal(field("CapEff")![0], "0000000000000000", `effective capabilities of ${p}`);
      assert.equal(field("NoNewPrivs")![0], "1", `no_new_privs of ${p}`);
    }
  });

  test("the state and the unpacked binaries are on the volume, owned by the node", async () => {
    await ready; // fails at once when the container never came up
    const state = join(dir, "state");
    for (const d of ["tailscale", "jetstream", join("cache", "bin")]) {
      const st = statSync(join(state, d));
      assert.ok(st.isDirectory() && st.uid === UID, `${d} is the node's directory (uid ${st.uid})`);
    }
    const unpacked = readdirSync(join(state, "cache", "bin")).flatMap((h) => readdirSync(join(state, "cache", "bin", h)));
    assert.deepEqual(unpacked.sort(), ["nats-server", "nats-tsnet-bridge"]);
  });

  test("it is a cluster member: routes both ways, one JetStream meta group", async () => {
    await ready; // fails at once when the container never came up
    const view = async () => {
      const script = `Promise.all(["/routez","/jsz"].map(p=>fetch("http://127.0.0.1:18222"+p).then(r=>r.json()))).then(v=>process.stdout.write(JSON.stringify(v)),()=>process.exit(1))`;
      const out = execFileSync("ip", ["netns", "exec", host.netns, process.execPath, "-e", script], { encoding: "utf8", timeout: 10_000 });
      const [routez, jsz] = JSON.parse(out);
      return { routes: (routez.routes ?? []).map((r: { remote_name: string }) => r.remote_name), leader: jsz.meta_cluster?.leader };
    };
    const both = await eventually(
      async () => {
        const [c, n] = [await view(), await t.tailnet.clusterView("nats-1")];
        return c.routes.includes("nats-1") && n.routes.includes(NAME) && c.leader && c.leader === n.metaLeader ? { c, n } : undefined;
      },
      30_000,
      "routes between the container node and nats-1, and one meta leader",
    );
    assert.ok([NAME, "nats-1"].includes(both.c.leader));
    // What a readiness probe runs (deploy/container/statefulset.yaml).
    const peers = JSON.parse(
      podman(["exec", NAME, "/usr/local/bin/nats-tsnet", "peer", "list", "--config", "/etc/nats-tsnet/config.yaml", "--json"]),
    );
    assert.equal(peers.self, NAME);
    const row = peers.rows.find((r: { name: string }) => r.name === "nats-1");
    assert.equal(row?.route?.connected, true, JSON.stringify(peers));
    assert.ok(row?.jetstream, `nats-1 is in the meta group: ${JSON.stringify(peers)}`);
  });

  test("a nats.js client on the tailnet: publish/subscribe and a replicated stream", async () => {
    await ready; // fails at once when the container never came up
    client = await t.tailnet.startProxy("client-1", { to: `${NAME}:4222` });
    nc = await eventually(() => natsConnect(client.url, { name: "container-test", timeout: 3000 }), 30_000, "NATS through the tailnet");
    const sub = nc.subscribe("hello.>", { max: 1 });
    nc.publish("hello.container", enc.encode("hi"));
    for await (const m of sub) assert.equal(dec.decode(m.data), "hi");
    const jsm = await jetstreamManager(nc);
    // The meta leader may not yet have heard the other member's JetStream ("peer offline"): retry.
    await eventually(() => jsm.streams.add({ name: "BOX", subjects: ["box.>"], num_replicas: 2 }), 30_000, "BOX placed on both nodes");
    const ack = await jetstream(nc).publish("box.1", enc.encode("one"));
    assert.equal(ack.seq, 1);
    const info = await jsm.streams.info("BOX");
    assert.deepEqual([info.cluster?.leader, ...(info.cluster?.replicas ?? []).map((r) => r.name)].sort(), [NAME, "nats-1"].sort());
    await nc.close();
    nc = undefined;
    await client.stop();
  });

  test("podman stop (SIGTERM) ends it through lame duck, exit code 0", async () => {
    await ready; // fails at once when the container never came up
    const t0 = Date.now();
    const done = exited(run);
    podman(["stop", "-t", "60", NAME], 70_000);
    const { code } = await withTimeout(done, 10_000, "podman run returns");
    const secs = (Date.now() - t0) / 1000;
    console.log(`# podman stop took ${secs.toFixed(1)}s`);
    assert.equal(code, 0, tail());
    assert.equal(podman(["inspect", "-f", "{{.State.ExitCode}}", NAME]).trim(), "0");
    for (const msg of ["stopping", "lame duck", "stopped"])
      assert.ok(
        lines.some((l) => l.msg === msg),
        `logged ${msg}: ${tail()}`,
      );
    assert.ok(secs < 60, "stopped before podman's SIGKILL");
  });

  test("the lab log has no errors from nats-1", () => {
    const errors = (t.tailnet.nodes.get("nats-1")?.lines ?? []).filter((l) => Number(l.level) >= 50);
    assert.deepEqual(errors, [], logTail(t));
  });
});
