// A whole local tailnet: namespaces, headscale, nats-tsnet nodes and
// client-mode devices, each on its own "host". The dev command and every
// integration test use this, so what the tests prove is what dev runs.
import { createServer, type Server } from "node:net";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { execFile, type ChildProcess } from "node:child_process";
import { promisify } from "node:util";
import type { Logger } from "pino";
import { stringify } from "yaml";
import { REPO_ROOT, V8_FLAGS, Bridge, deepMerge, eachLine, exited, spawnChild, terminate } from "../controlplane/src/mod.ts";
import { NetLab, type Host } from "./netns.ts";
import { CLUSTER_TAG, Headscale, defaultPolicy, tailnetEnv } from "./headscale.ts";

const execFileP = promisify(execFile);

export const CLI = join(REPO_ROOT, "controlplane", "bin", "nats-tsnet.ts");
/**
 * Node's compile cache for a checkout's nodes: with every module in it, a
 * node does not load Node's TypeScript stripper (some 20 MiB that stay
 * resident), which a release file (plain JavaScript) never carries.
 */
export const COMPILE_CACHE = join(REPO_ROOT, ".cache", "node-compile-cache");

export interface LabNode {
  name: string;
  host: Host;
  dir: string;
  configPath: string;
  child: ChildProcess;
  /** Log lines (parsed JSON) the node wrote, for assertions. */
  lines: Array<Record<string, unknown>>;
}

export interface LabProxy {
  name: string;
  host: Host;
  port: number;
  url: string;
  socks5Port?: number;
  bridge: Bridge;
  stop(): Promise<void>;
}

export interface NodeOptions {
  authKey?: string;
  /** Tags of the pre-auth key minted when no authKey is given (default: the cluster tag). */
  keyTags?: string[];
  /** Extra config.yaml content merged over the defaults. */
  config?: Record<string, unknown>;
  /** Wait for the node to log "ready" (default true). */
  wait?: boolean;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  /** Run this executable (a release file) instead of the checkout's CLI. */
  exe?: string;
  /** The node's whole environment besides TS_AUTHKEY (default: ours, plus env). */
  bareEnv?: NodeJS.ProcessEnv;
}

export class LocalTailnet {
  readonly net: NetLab;
  readonly headscale: Headscale;
  readonly dir: string;
  readonly nodes = new Map<string, LabNode>();
  readonly proxies = new Map<string, LabProxy>();
  private readonly log: Logger;
  private readonly verbose: boolean;

  private constructor(dir: string, log: Logger, verbose: boolean, policy: Record<string, unknown>) {
    this.dir = dir;
    this.log = log;
    this.verbose = verbose;
    this.net = new NetLab();
    const host = this.net.addHost("control");
    this.headscale = new Headscale(host, join(dir, "headscale"), log, policy);
  }

  static async start(o: { dir: string; log: Logger; verbose?: boolean; policy?: Record<string, unknown> }): Promise<LocalTailnet> {
    mkdirSync(o.dir, { recursive: true, mode: 0o700 });
    const t = new LocalTailnet(o.dir, o.log, o.verbose ?? false, o.policy ?? defaultPolicy());
    try {
      await t.headscale.start();
    } catch (e) {
      await t.stop();
      throw e;
    }
    return t;
  }

  /** Writes a node's config.yaml and starts `nats-tsnet run` on a host of its own. */
  async startNode(name: string, o: NodeOptions = {}): Promise<LabNode> {
    const host = this.net.hosts.get(name) ?? this.net.addHost(name);
    const dir = join(this.dir, "nodes", name);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const configPath = join(dir, "config.yaml");
    const base = {
      hostname: name,
      state_dir: "./state",
      tailnet: { control_url: this.headscale.url, up_timeout: "30s" },
      log: { format: "json", level: this.verbose ? "debug" : "info" },
    };
    writeFileSync(configPath, stringify(deepMerge(base, o.config ?? {})));
    const authKey = o.authKey ?? (await this.headscale.authKey({ tags: o.keyTags ?? [CLUSTER_TAG] }));
    const child = spawnChild({
      cmd: o.exe ?? process.execPath,
      // A checkout's node runs with the V8 flags a release file has baked in.
      args: [...(o.exe ? [] : [...V8_FLAGS, CLI]), "run", "--config", configPath],
      env: {
        ...(o.bareEnv ?? process.env),
        ...(o.exe ? {} : { NODE_COMPILE_CACHE: COMPILE_CACHE }),
        ...tailnetEnv(),
        TS_AUTHKEY: authKey,
        ...o.env,
      },
      wrap: host.wrap,
    });
    const node: LabNode = { name, host, dir, configPath, child, lines: [] };
    this.nodes.set(name, node);
    const log = this.log.child({ node: name });
    const ready = new Promise<void>((resolve, reject) => {
      const onLine = (line: string) => {
        let o: Record<string, unknown>;
        try {
          o = JSON.parse(line);
        } catch {
          log.info(line);
          return;
        }
        node.lines.push(o);
        const lvl = Number(o.level);
        if (this.verbose || lvl >= 40) {
          const { level: _l, time: _t, msg, component, ...rest } = o;
          log[lvl >= 50 ? "error" : lvl >= 40 ? "warn" : "info"]({ from: component, ...rest }, String(msg));
        }
        if (o.msg === "ready") resolve();
      };
      eachLine(child.stderr, onLine);
      eachLine(child.stdout, onLine);
      void exited(child).then(({ code, signal }) => {
        const last = node.lines
          .filter((l) => Number(l.level) >= 50)
          .map((l) => l.msg)
          .join("; ");
        reject(new Error(`node ${name} exited (code ${code}, signal ${signal}) before it was ready${last ? ": " + last : ""}`));
      });
    });
    if (o.wait === false) {
      ready.catch(() => {});
      return node;
    }
    await withTimeout(ready, o.timeoutMs ?? 90_000, `node ${name} not ready`);
    return node;
  }

  /**
   * GET from a node's loopback monitoring port, from inside its namespace:
   * what an operator on that host would see.
   */
  async monitor<T = any>(name: string, path: string, port = 18222): Promise<T> {
    return JSON.parse(await this.loopbackGet(name, path, port)) as T;
  }

  /** GET from a loopback port on a node's host (its nats-server monitoring, its observe port), as a process there would. */
  async loopbackGet(name: string, path: string, port: number): Promise<string> {
    const n = this.nodes.get(name);
    if (!n) throw new Error(`no node ${name}`);
    const script = `fetch("http://127.0.0.1:${port}${path}").then(r=>r.ok?r.text():Promise.reject(new Error(r.status+" "+r.statusText))).then(t=>process.stdout.write(t),e=>{console.error(e.message);process.exit(1)})`;
    const { stdout } = await execFileP("ip", ["netns", "exec", n.host.netns, process.execPath, "-e", script], { timeout: 10_000 });
    return stdout;
  }

  /** Distinct servers this node has routes to, and its view of the JetStream meta group. */
  async clusterView(name: string): Promise<{ routes: string[]; metaLeader?: string; metaSize?: number }> {
    const routez = await this.monitor(name, "/routez");
    const jsz = await this.monitor(name, "/jsz").catch(() => ({}));
    const routes = [...new Set<string>((routez.routes ?? []).map((r: { remote_name: string }) => r.remote_name))].sort();
    return { routes, metaLeader: jsz.meta_cluster?.leader || undefined, metaSize: jsz.meta_cluster?.cluster_size };
  }

  /** Resolves once every running node routes to every other and a meta leader is elected. */
  async waitForCluster(names: string[], timeoutMs = 90_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let last = "";
    while (Date.now() < deadline) {
      try {
        const views = await Promise.all(names.map((n) => this.clusterView(n)));
        const routed = views.every((v, i) => names.every((o) => o === names[i] || v.routes.includes(o)));
        const leaders = new Set(views.map((v) => v.metaLeader));
        if (routed && leaders.size === 1 && views[0]!.metaLeader) return views[0]!.metaLeader;
        last = JSON.stringify(views);
      } catch (e) {
        last = (e as Error).message;
      }
      await new Promise((r) => setTimeout(r, 300));
    }
    throw new Error(`cluster of ${names.join(", ")} not ready within ${timeoutMs}ms: ${last}`);
  }

  async stopNode(name: string, sig: NodeJS.Signals = "SIGTERM"): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    const n = this.nodes.get(name);
    if (!n) throw new Error(`no node ${name}`);
    const done = exited(n.child);
    await terminate(n.child, sig, 60_000);
    this.nodes.delete(name);
    return done;
  }

  /**
   * Cuts a node's power: every process on its host is killed at once, so
   * nats-server neither flushes nor steps down. What survives on disk is
   * up to the store's filesystem (see LazyFs.powerCut).
   */
  async powerOff(name: string): Promise<void> {
    const n = this.nodes.get(name);
    if (!n) throw new Error(`no node ${name}`);
    const done = exited(n.child);
    await this.net.killAll(name);
    await done;
    this.nodes.delete(name);
  }

  /**
   * A client-mode device on a host of its own that exposes `to` (a tailnet
   * host:port) on this machine's loopback. The listening socket is made
   * here, in our namespace, and handed to the bridge, which runs inside its
   * namespace: the port is on the real loopback, the device on the lab net.
   */
  async startProxy(
    name: string,
    o: {
      to: string;
      port?: number;
      socks5?: boolean;
      /** SOCKS5 destinations and credentials, as `nats-tsnet proxy` takes them. */
      socks5Allow?: string[];
      socks5User?: string;
      socks5PasswordFile?: string;
      user?: string;
      tags?: string[];
      /** The loopback address to listen on (default 127.0.0.1); ignored with host. */
      listenHost?: string;
      /**
       * Run on this (possibly shared) lab host and listen on its own loopback
       * instead of ours: for load generators that must run inside the lab.
       */
      host?: string;
    },
  ): Promise<LabProxy> {
    const host = this.net.hosts.get(o.host ?? name) ?? this.net.addHost(o.host ?? name);
    const inside = Boolean(o.host);
    const listenHost = inside ? "127.0.0.1" : (o.listenHost ?? "127.0.0.1");
    const servers = inside ? [] : [await listenLoopback(o.port ?? 0, listenHost)];
    if (o.socks5 && !inside) servers.push(await listenLoopback(0, listenHost));
    const port = inside ? o.port! : (servers[0]!.address() as { port: number }).port;
    const socks5Port = servers[1] ? (servers[1].address() as { port: number }).port : undefined;
    const authKey = await this.headscale.authKey(o.tags?.length ? { tags: o.tags } : { user: o.user });
    const bridgeP = Bridge.start({
      mode: "client",
      hostname: name,
      dir: join(this.dir, "clients", name),
      controlUrl: this.headscale.url,
      authKey,
      upTimeoutMs: 30_000,
      listen: inside ? `127.0.0.1:${port}` : "fd:3",
      socks5: o.socks5 && !inside ? "fd:4" : undefined,
      socks5Allow: o.socks5Allow,
      socks5User: o.socks5User,
      socks5PasswordFile: o.socks5PasswordFile,
      to: o.to,
      log: this.log.child({ client: name }),
      wrap: host.wrap,
      env: { ...process.env, ...tailnetEnv() },
      // Node hands a listening socket to a child as an inherited fd through
      // the server's libuv handle (the Server object itself is refused).
      extraStdio: servers.map((s) => (s as unknown as { _handle: unknown })._handle) as never,
      verbose: this.verbose,
    });
    // The child holds its own copy now; ours must not accept anything.
    for (const s of servers) s.close();
    const bridge = await bridgeP;
    const p: LabProxy = {
      name,
      host,
      port,
      bridge,
      url: `nats://${listenHost}:${port}`,
      socks5Port,
      stop: async () => {
        await bridge.stop();
        this.proxies.delete(name);
      },
    };
    this.proxies.set(name, p);
    await this.waitMutuallySeen(p, o.to);
    return p;
  }

  /**
   * A proxy is of use once both ends know each other. Until the node has the
   * proxy's device in its netmap it drops the WireGuard handshake, so the
   * first client would wait out TCP retransmits; and the node's WhoIs would
   * not know the caller. Polls the proxy's status and the node's status.json
   * (what `peer list` reads), both updated from the same netmap as WhoIs.
   * A policy may keep the two apart on purpose: then, after the timeout,
   * the proxy is handed over as it is, for the test to see it fail.
   */
  private async waitMutuallySeen(p: LabProxy, to: string, timeoutMs = 20_000): Promise<void> {
    const target = to.slice(0, to.lastIndexOf(":")) || to;
    const node = this.nodes.get(target);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const st = await p.bridge.getStatus();
      const proxySees = !node || st.peers.some((d) => d.name === target);
      const nodeSees = !node || this.nodeSees(node, p.name);
      if (proxySees && nodeSees) return;
      if (Date.now() > deadline) {
        this.log.warn({ proxy: p.name, target, proxySees, nodeSees }, "proxy and node do not see each other; going on");
        return;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  private nodeSees(node: LabNode, device: string): boolean {
    try {
      const st = JSON.parse(readFileSync(join(node.dir, "state", "status.json"), "utf8")) as {
        peers: Array<{ name: string; online: boolean }>;
      };
      return st.peers.some((d) => d.name === device);
    } catch {
      return false; // not written yet
    }
  }

  async stop(): Promise<void> {
    await Promise.allSettled([...this.proxies.values()].map((p) => p.stop()));
    await Promise.allSettled([...this.nodes.keys()].map((n) => this.stopNode(n, "SIGTERM")));
    await this.headscale.stop().catch(() => {});
    this.net.destroy();
  }
}

function listenLoopback(port: number, host: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen({ host, port }, () => resolve(s));
  });
}

export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    t = setTimeout(() => reject(new Error(`${what} within ${ms}ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(t);
  }
}
