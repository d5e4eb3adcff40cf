// The control plane's handle on one bridge process: it starts the bridge,
// speaks its JSON-lines protocol over stdio, and turns the bridge's fatal
// reports and error answers into errors of the closed set (errors.ts), keeping
// the bridge's own stable codes.
import { EventEmitter } from "node:events";
import type { ChildProcess, SpawnOptions } from "node:child_process";
import { statSync } from "node:fs";
import { join } from "node:path";
import type { Writable } from "node:stream";
import type { Logger } from "pino";
import { binaryPath } from "../binaries.ts";
import { BridgeError, errorFromCode, TailnetError } from "../errors.ts";
import { LOGIN_ENV_VARS, LOGIN_FIELDS, normalizeLogin, type RouteSecret, type TailnetLogin } from "../config/mod.ts";
import { eachLine, exited, spawnChild, terminate } from "../supervise/spawn.ts";

export interface Device {
  id: string;
  name: string;
  dnsName: string;
  hostName: string;
  ips: string[];
  tags: string[];
  user?: string;
  online: boolean;
  os?: string;
}

export interface TailnetStatus {
  backendState: string;
  self: Device;
  peers: Device[];
  magicDNSSuffix?: string;
  /** Public nkey the bridge signs proxied client connections with. */
  proxyKey?: string;
}

export interface WhoIs {
  device: Device;
  user?: string;
  caps?: Record<string, unknown[]>;
  /** The identity as operators see it; the bridge makes it (IdentityLabel) for connection names too. */
  label: string;
}

/** What one client connection may hold: subscriptions and the largest message; -1 is no limit. */
export interface Quota {
  subs: number;
  payload: number;
}

/** Per source device on the client face (see DeviceLimits in dataplane/bridge/limit.go); 0: no limit. */
export interface DeviceLimits {
  maxConns: number;
  rate: number;
  burst: number;
}

/** Auth mode tailnet: callers the bridge refuses before nats-server asks the callout (policy.ts grantGate). */
/** The client face's TLS; the bridge's ClientTLS, field for field. */
export interface ClientTLS {
  certFile?: string;
  keyFile?: string;
  /** The node's own certificate for its MagicDNS name, from the control server. */
  tailnet?: boolean;
  minVersion?: "1.2" | "1.3";
  /** mTLS: clients must present a certificate chaining to this bundle. */
  clientCaFile?: string;
  /** SHA-256 fingerprints or serial:<hex> of client certificates refused anyway. */
  revoked?: string[];
}

/** One bridge face's counters since it started (dataplane/bridge/metrics.go). */
export interface FaceCounters {
  accepted: number;
  refused: Record<string, number>;
  open: number;
  bytesIn: number;
  bytesOut: number;
}

/** A cumulative histogram in seconds: counts per bound, the last for +Inf. */
export interface Histogram {
  bounds: number[];
  counts: number[];
  sum: number;
  count: number;
  errors: number;
}

/** How this device reaches one peer (dataplane/bridge/observe.go). */
export interface PeerPath {
  name: string;
  ips: string[];
  online: boolean;
  path: "direct" | "peer-relay" | "derp" | "none";
  endpoint?: string;
  relay?: string;
  lastHandshake?: string;
  rxBytes: number;
  txBytes: number;
  latencyMs?: number;
  pingError?: string;
}

/** The "observe" op's answer. */
export interface Observed {
  backendState: string;
  keyExpiry?: string;
  keyExpired: boolean;
  health: string[];
  peers: PeerPath[];
  metrics: { faces: Record<string, FaceCounters>; whois: Histogram };
}

export interface GrantGate {
  capability: string;
  users: string[];
  tags: string[];
}

export interface BridgeOptions {
  mode: "node" | "client";
  hostname: string;
  dir: string;
  controlUrl?: string;
  /** For a first login: an auth key, an OAuth client secret, or workload identity federation. */
  login?: TailnetLogin;
  /** Shorthand for login.authKey. */
  authKey?: string;
  tags?: readonly string[];
  ephemeral?: boolean;
  upTimeoutMs: number;
  verbose?: boolean;
  /** client mode: local listen address or "fd:N". */
  listen?: string;
  /** client mode: tailnet host:port. */
  to?: string;
  socks5?: string;
  /** client mode: SOCKS5 destinations, ports (on cluster-tagged peers) or host:port; default the port of `to`. */
  socks5Allow?: readonly string[];
  /** client mode: the tag that makes a peer a cluster node (default tag:nats-js). */
  clusterTag?: string;
  /** client mode: SOCKS5 username; the password comes from socks5PasswordFile or NATS_TSNET_SOCKS5_PASSWORD. */
  socks5User?: string;
  socks5PasswordFile?: string;
  log: Logger;
  wrap?: string[];
  extraStdio?: SpawnOptions["stdio"];
  env?: NodeJS.ProcessEnv;
}

/**
 * Whether tsnet already holds an identity in dir (it keeps its state in
 * tailscaled.state); then the bridge needs no auth key.
 */
export function hasTailnetState(dir: string): boolean {
  try {
    return statSync(join(dir, "tailscaled.state")).size > 0;
  } catch {
    return false;
  }
}

/**
 * Every variable tsnet would take a login from by itself (ours, and its
 * older spelling TS_AUTH_KEY); never in the bridge's environment.
 */
const LOGIN_ENV = [...Object.values(LOGIN_ENV_VARS), "TS_AUTH_KEY"];

/**
 * The login as the one line the bridge reads from --login-fd: the fields
 * set, in the Go struct's order (the "login" part of the protocol fixture).
 */
export function loginLine(l: TailnetLogin): string {
  const n = normalizeLogin(l);
  return JSON.stringify(Object.fromEntries(LOGIN_FIELDS.filter((f) => n[f]).map((f) => [f, n[f]])));
}

export class Bridge extends EventEmitter {
  readonly child: ChildProcess;
  status?: TailnetStatus;
  private nextId = 1;
  private pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  private constructor(child: ChildProcess) {
    super();
    this.child = child;
  }

  /**
   * Starts a bridge and resolves once it is on the tailnet (and, in client
   * mode, listening). The login (auth key, client secret, ...) goes along
   * only when the state directory holds no identity yet, so that a client
   * secret mints no key a known device would not use; if the control server
   * then wants a login after all (the device was deleted), the bridge is
   * started once more with it.
   */
  static async start(o: BridgeOptions): Promise<Bridge> {
    const login = normalizeLogin({ authKey: o.authKey, ...o.login });
    const given = Object.keys(login).length ? login : undefined;
    if (!given || !hasTailnetState(o.dir)) return Bridge.startOnce(o, given);
    try {
      return await Bridge.startOnce(o, undefined);
    } catch (err) {
      if (!(err instanceof TailnetError && err.code === "ERR_TAILNET_AUTH")) throw err;
      o.log.warn({ dir: o.dir }, "the tailnet wants this device to log in again; retrying with its login");
      return Bridge.startOnce(o, given);
    }
  }

  private static async startOnce(o: BridgeOptions, login: TailnetLogin | undefined): Promise<Bridge> {
    const args = [o.mode, "--hostname", o.hostname, "--dir", o.dir, "--up-timeout", `${o.upTimeoutMs}ms`];
    if (o.controlUrl) args.push("--control-url", o.controlUrl);
    if (o.tags?.length) args.push("--tags", o.tags.join(","));
    if (o.ephemeral) args.push("--ephemeral");
    if (o.verbose) args.push("--verbose");
    if (o.listen) args.push("--listen", o.listen);
    if (o.to) args.push("--to", o.to);
    if (o.socks5) args.push("--socks5", o.socks5);
    if (o.socks5Allow?.length) args.push("--socks5-allow", o.socks5Allow.join(","));
    if (o.clusterTag) args.push("--cluster-tag", o.clusterTag);
    if (o.socks5User) args.push("--socks5-user", o.socks5User);
    if (o.socks5PasswordFile) args.push("--socks5-password-file", o.socks5PasswordFile);
    // No secret goes into the bridge's environment (readable in
    // /proc/<pid>/environ for its whole life) or on its command line: the
    // login goes through a pipe the bridge reads once and closes. Nor may
    // tsnet find a login of its own there (it reads these variables).
    const env: NodeJS.ProcessEnv = { ...(o.env ?? process.env), TS_NO_LOGS_NO_SUPPORT: "true" };
    for (const name of LOGIN_ENV) delete env[name];
    const extra: NonNullable<SpawnOptions["stdio"]> = Array.isArray(o.extraStdio) ? [...o.extraStdio] : [];
    const loginFd = login ? 3 + extra.length : undefined;
    if (loginFd !== undefined) {
      extra.push("pipe");
      args.push("--login-fd", String(loginFd));
    }
    const child = spawnChild({ cmd: binaryPath("bridge"), args, env, wrap: o.wrap, extraStdio: extra, diesWithParent: true });
    if (loginFd !== undefined) {
      const loginPipe = child.stdio[loginFd] as Writable | null | undefined;
      // A bridge that dies before reading must not crash us with EPIPE.
      loginPipe?.on("error", () => {});
      loginPipe?.end(loginLine(login!) + "\n");
    }
    const b = new Bridge(child);
    const log = o.log.child({ component: "bridge" });
    eachLine(child.stderr, (line) => b.logLine(log, line));
    const ready = new Promise<void>((resolve, reject) => {
      const want = o.mode === "client" ? "ready" : "up";
      b.on("event", (ev: { event: string; data: any }) => {
        if (ev.event === "up") b.status = ev.data;
        if (ev.event === want) resolve();
        if (ev.event === "fatal") reject(errorFromCode(ev.data.code, ev.data.message));
      });
      void exited(child).then(({ code, signal }) =>
        reject(new TailnetError("ERR_BRIDGE_EXIT", `bridge exited (code ${code}, signal ${signal}) before it was ready`)),
      );
    });
    eachLine(child.stdout, (line) => b.onLine(line, log));
    void exited(child).then((x) => {
      for (const p of b.pending.values()) p.reject(new BridgeError("ERR_BRIDGE_GONE", "bridge exited"));
      b.pending.clear();
      b.emit("exit", x);
    });
    try {
      await ready;
    } catch (err) {
      await terminate(child, "SIGTERM", 2000);
      throw err;
    }
    return b;
  }

  private logLine(log: Logger, line: string): void {
    let o: { level?: string; msg?: string; [k: string]: unknown };
    try {
      o = JSON.parse(line);
    } catch {
      log.info(line);
      return;
    }
    const { level = "INFO", msg = "", time: _t, ...rest } = o;
    const fn = ({ DEBUG: "debug", INFO: "info", WARN: "warn", ERROR: "error" } as const)[level as "INFO"] ?? "info";
    log[fn](rest, msg);
  }

  private onLine(line: string, log: Logger): void {
    let m: any;
    try {
      m = JSON.parse(line);
    } catch {
      log.warn({ line }, "unparseable line from bridge");
      return;
    }
    if (typeof m.event === "string") {
      if (m.event === "peers") this.status = m.data;
      this.emit("event", m);
      this.emit(m.event, m.data);
      return;
    }
    const p = this.pending.get(m.id);
    if (!p) return;
    this.pending.delete(m.id);
    if (m.ok) p.resolve(m.result);
    else p.reject(errorFromCode(m.error?.code ?? "", m.error?.message ?? "bridge request failed"));
  }

  request<T = unknown>(op: string, args?: unknown): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      if (!this.child.stdin?.writable) return reject(new BridgeError("ERR_BRIDGE_GONE", "bridge is not running"));
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.stdin.write(JSON.stringify({ id, op, args }) + "\n");
    });
  }

  getStatus(): Promise<TailnetStatus> {
    return this.request("status");
  }
  whois(addr: string): Promise<WhoIs> {
    return this.request("whois", { addr });
  }
  listen(a: {
    name: string;
    port: number;
    target: string;
    proxyProtocol?: boolean;
    allowTags?: string[];
    signClients?: boolean;
    nameClients?: boolean;
    routeSecret?: RouteSecret;
    /** Client face: connections and connection rate per source device. */
    limits?: DeviceLimits;
    /** Client face, auth mode tailnet: refuse callers nothing could admit. */
    grantGate?: GrantGate;
    /** Every client connection's quota until quota() sets its identity's (client face only). */
    clientQuota?: Quota;
    /** Client face: clients speak TLS, terminated by the bridge (dataplane/bridge/tlsface.go). */
    tls?: ClientTLS;
    /** Client face for WebSocket clients (dataplane/bridge/wsface.go). */
    webSocket?: { origins?: string[] };
    /** A client face on an address of this host, for callers that are not tailnet devices (dataplane/bridge/localface.go). */
    local?: { listen: string; face: string };
  }): Promise<unknown> {
    return this.request("listen", a);
  }
  forward(a: { name: string; listen?: string; targets: string[]; routeSecret?: RouteSecret }): Promise<{ name: string; addr: string }> {
    return this.request("forward", a);
  }
  /** Tells the bridge why the callout refused ip, so the client sees the reason. */
  denied(ip: string, reason: string): Promise<unknown> {
    return this.request("denied", { ip, reason });
  }
  /** Holds every open client connection from ip to the quota its identity was given. */
  /** This device's key and health, each peer's path (latency to those in ping), and the faces' counters. */
  observe(ping: string[]): Promise<Observed> {
    return this.request("observe", ping.length ? { ping } : {});
  }
  quota(ip: string, q: Quota): Promise<unknown> {
    return this.request("quota", { ip, subs: q.subs, payload: q.payload });
  }
  /** Closes a listener; with drain, its open connections are left to finish. */
  closeListener(name: string, drain = false): Promise<unknown> {
    return this.request("close", { name, drain });
  }

  /** Ends the bridge: closing stdin tells it its supervisor let go. */
  async stop(graceMs = 5000): Promise<void> {
    this.child.stdin?.end();
    await terminate(this.child, "SIGTERM", graceMs);
  }
}
