// One nats-tsnet node: tailnet up -> nats-server -> tailnet faces, in that
// order, so that nothing is reachable before it can answer, and torn down
// in reverse (faces first, then lame duck, then the tailnet). Each stage is
// one method of NodeRuntime; startNode runs them in order.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { ChildProcess } from "node:child_process";
import type { Logger } from "pino";
import {
  identityQuota,
  natsServerConfPath,
  redactConfig,
  renderNatsServerConfig,
  resolveClusterKey,
  resolveLogin,
  type AuthPieces,
  type Config,
  type RouteSecret,
  type TlsConfig,
} from "../config/mod.ts";
import { Bridge, type BridgeOptions, type ClientTLS, type DeviceLimits, type TailnetStatus } from "../bridge-client/client.ts";
import { startNatsServer } from "./natsServer.ts";
import { StoreHealth, classifyServerLine, freeBytes, type StoreEvent } from "./store-health.ts";
import { loadOrCreateSecrets, ROUTE_USER, type NodeSecrets } from "../auth/secrets.ts";
import { Supervisor } from "../supervise/restart.ts";
import { exited, terminate } from "../supervise/spawn.ts";
import { TailnetError, type NatsTsnetError } from "../errors.ts";
import { RouteReconciler, writeStatusFile } from "../cluster/reconcile.ts";
import { routeAlias } from "../cluster/members.ts";
import type { AuthCallout } from "../auth/callout.ts";
import type { readStore } from "../auth/operator-store.ts";
import { writeFileAtomic } from "../util/fs.ts";
import { Observer } from "../observe/observer.ts";
import { Counters } from "../observe/counters.ts";
import { serveObserve } from "../observe/http.ts";
import type { Server } from "node:http";

export interface RunningNode {
  status: TailnetStatus;
  /** Resolves when the node has stopped; rejects on a fatal error (crash loop). */
  done: Promise<void>;
  stop(mode?: StopMode): Promise<void>;
}
export type StopMode = "lame-duck" | "quick";

/**
 * The code of the auth mode in use, and only that: mode tailnet's callout
 * (a NATS client, nkeys and JWTs) and mode operator's store are loaded only
 * in their modes, so that a node carries no code it cannot run.
 */
interface AuthCode {
  callout?: typeof import("../auth/callout.ts");
  policy?: typeof import("../auth/policy.ts");
  readStore?: typeof readStore;
}

async function loadAuthCode(mode: Config["auth"]["mode"]): Promise<AuthCode> {
  if (mode === "tailnet") {
    const [callout, policy] = await Promise.all([import("../auth/callout.ts"), import("../auth/policy.ts")]);
    return { callout, policy };
  }
  if (mode === "operator") return { readStore: (await import("../auth/operator-store.ts")).readStore };
  return {};
}

export async function startNode(config: Config, log: Logger): Promise<RunningNode> {
  log.info({ config: redactConfig(config) as unknown as Record<string, unknown>, sources: config.source }, "starting");
  mkdirSync(config.state_dir, { recursive: true, mode: 0o700 });
  const node = new NodeRuntime(config, log, loadOrCreateSecrets(config.state_dir), await loadAuthCode(config.auth.mode));
  await node.joinTailnet();
  await node.startNats();
  await node.openFaces();
  await node.superviseBridge();
  node.logReady();
  return { status: node.status, done: node.done, stop: (mode) => node.stop(mode) };
}

/** Free space under the store before a node that ran out of it restarts nats-server. */
const SPACE_TO_RESUME = 64 * 2 ** 20;

class NodeRuntime {
  readonly done: Promise<void>;
  status!: TailnetStatus;
  private bridge!: Bridge;
  private nats?: Supervisor;
  private bridgeSup?: Supervisor;
  private readonly routes: RouteReconciler;
  private readonly callout?: AuthCallout;
  private readonly routeSecret: RouteSecret;
  private readonly clustered: boolean;
  private fatal: (e: NatsTsnetError) => void = () => {};
  private stopped: () => void = () => {};
  private stopping?: Promise<void>;
  private storeHealth?: StoreHealth;
  private spaceWatch?: NodeJS.Timeout;
  private observer?: Observer;
  private observeHttp?: Server;
  /** The control plane's own events, for /metrics. */
  readonly counters = new Counters();

  private readonly config: Config;
  private readonly log: Logger;
  private readonly secrets: NodeSecrets;
  private readonly auth: AuthCode;

  constructor(config: Config, log: Logger, secrets: NodeSecrets, auth: AuthCode) {
    this.config = config;
    this.log = log;
    this.secrets = secrets;
    this.auth = auth;
    this.done = new Promise<void>((resolve, reject) => {
      this.fatal = reject;
      this.stopped = resolve;
    });
    this.clustered = !config.nats.standalone;
    const clusterKey = resolveClusterKey(config);
    this.routeSecret = { user: ROUTE_USER, pass: secrets.route_password, ...(clusterKey ? { clusterKey } : {}) };
    this.routes = new RouteReconciler({
      config,
      log,
      bridge: () => this.bridge,
      routeSecret: this.routeSecret,
      counters: this.counters,
      applyRoutes: async (urls) => {
        this.writeNatsConf(urls);
        this.reloadNats();
        log.info({ routes: urls.length }, "nats-server config reloaded");
      },
    });
    if (config.auth.mode === "tailnet") {
      this.callout = new auth.callout!.AuthCallout({
        auth: config.auth,
        serverName: config.nats.server_name,
        clientPort: config.nats.loopback.client_port,
        monitorPort: config.nats.loopback.monitor_port,
        authPassword: secrets.auth_password,
        sys: { user: secrets.sys_user, password: secrets.sys_password },
        bridge: () => this.bridge,
        log: log.child({ component: "auth" }),
        counters: this.counters,
      });
    }
  }

  private bridgeOptions(): BridgeOptions {
    const { config } = this;
    return {
      mode: "node",
      hostname: config.hostname,
      dir: join(config.state_dir, "tailscale"),
      controlUrl: config.tailnet.control_url || undefined,
      // With a client secret or workload identity, exactly these tags (the cluster tag among them: resolveLogin checks).
      login: resolveLogin(config),
      tags: config.tailnet.tags,
      ephemeral: config.tailnet.ephemeral,
      upTimeoutMs: config.tailnet.up_timeout_ms,
      verbose: config.log.level === "debug" || config.log.level === "trace",
      log: this.log,
    };
  }

  /** Stage 1: on the tailnet, as a device that carries the cluster tag. */
  async joinTailnet(): Promise<void> {
    this.bridge = await Bridge.start(this.bridgeOptions());
    this.status = this.bridge.status!;
    const tag = this.config.tailnet.cluster_tag;
    const self = this.status.self;
    if (!self.tags.includes(tag)) {
      await this.bridge.stop();
      throw new TailnetError(
        "ERR_TAILNET_MISSING_TAG",
        `this device (${self.dnsName}) lacks the cluster tag ${tag} (it has: ${self.tags.join(", ") || "no tags"}); ` +
          `use an auth key that applies ${tag}, or set tailnet.tags`,
      );
    }
    this.log.info({ device: self.dnsName, ips: self.ips, tags: self.tags }, "on the tailnet");
  }

  /** Stage 2: nats-server on loopback only, with routes to the peers we know now. */
  async startNats(): Promise<void> {
    if (this.clustered) await this.routes.init(this.status);
    this.writeNatsConf(this.routes.routeUrls());
    const confPath = natsServerConfPath(this.config);
    this.nats = new Supervisor(
      "nats-server",
      () =>
        startNatsServer({
          confPath,
          monitorPort: this.config.nats.loopback.monitor_port,
          log: this.log,
          connectPorts: this.clustered ? [this.config.nats.loopback.cluster_port] : [],
          onLine: (text) => {
            const e = classifyServerLine(text);
            if (e) this.storeEvent(e);
          },
        }),
      this.log,
    );
    this.nats.on("crashloop", (e) => this.fatal(e));
    await this.nats.run();
    // The callout must answer before the first client arrives.
    await this.callout?.start();
    this.observer = new Observer({
      config: this.config,
      log: this.log,
      bridge: () => this.bridge,
      natsPid: () => this.nats?.child?.pid,
      counters: this.counters,
      onRemoved: (line) => this.storeEvent({ code: "ERR_NODE_REMOVED", line }),
    });
    await this.observer.start();
    const port = this.config.observe.loopback_port;
    if (port > 0) this.observeHttp = await serveObserve(port, this.observer, this.log);
  }

  /** Stage 3: the tailnet faces, and what keeps them current. */
  async openFaces(): Promise<void> {
    const b = this.bridge;
    const { nats, tailnet } = this.config;
    const clientFace = {
      target: `127.0.0.1:${nats.loopback.client_port}`,
      proxyProtocol: true,
      signClients: true,
      nameClients: true,
      // Modes tailnet and none: each connection starts from the default quota; the callout sets its identity's.
      ...(this.config.auth.mode !== "operator" && { clientQuota: identityQuota(this.config.auth, undefined) }),
      // One device must not keep everyone else's connections out.
      limits: deviceLimits(nats.device_limits),
      // TLS is terminated by the bridge: proxy_sig travels inside CONNECT.
      ...(nats.tls && { tls: clientTLS(nats.tls) }),
    };
    // Mode tailnet: a caller no grant or rule admits is refused before the
    // callout is asked. Tailnet faces only: the gate asks the tailnet who calls.
    const gate = this.config.auth.mode === "tailnet" ? this.auth.policy!.grantGate(this.config.auth) : undefined;
    const tailnetFace = { ...clientFace, ...(gate && { grantGate: gate }) };
    await b.listen({ name: "client", port: nats.client_port, ...tailnetFace });
    // Local faces: the same face on addresses of this host, for callers that
    // are not tailnet devices; rules naming the face decide.
    for (const f of nats.local_faces) {
      this.log.warn(
        { face: f.name, listen: f.listen },
        `client port also served on ${f.listen} (local face ${f.name}): callers there are not tailnet devices and get in only by auth.rules naming ${f.name}, or operator credentials; remove it from nats.local_faces if that is not meant`,
      );
      await b.listen({
        name: `local:${f.name}`,
        port: Number(f.listen.split(":").pop()),
        ...clientFace,
        local: { listen: f.listen, face: f.name },
      });
    }
    // The same face for WebSocket clients: the same guard, signature, quotas and TLS.
    if (nats.websocket_port > 0) {
      await b.listen({ name: "websocket", port: nats.websocket_port, ...tailnetFace, webSocket: { origins: [...nats.websocket_origins] } });
    }
    if (nats.monitor_port > 0) {
      await b.listen({ name: "monitor", port: nats.monitor_port, target: `127.0.0.1:${nats.loopback.monitor_port}` });
    }
    if (this.clustered) {
      // Only devices carrying the cluster tag may open a route, whatever the ACL says.
      await b.listen({
        name: "cluster",
        port: nats.cluster_port,
        target: `127.0.0.1:${nats.loopback.cluster_port}`,
        allowTags: [tailnet.cluster_tag],
        routeSecret: this.routeSecret,
      });
      b.on("peers", (s: TailnetStatus) => this.routes.update(s));
    } else {
      writeStatusFile(this.config.state_dir, this.status);
      b.on("peers", (s: TailnetStatus) => writeStatusFile(this.config.state_dir, s));
    }
    // A new netmap may carry new grants: open connections meet them now.
    const callout = this.callout;
    if (callout) b.on("netmap", () => void callout.reevaluate("netmap"));
  }

  /** Stage 4: the bridge is the face; if it dies, bring it back and reopen everything. */
  async superviseBridge(): Promise<void> {
    this.bridgeSup = new Supervisor(
      "bridge",
      async () => {
        const alive = this.bridge.child.exitCode === null && this.bridge.child.signalCode === null;
        if (alive) return this.bridge.child;
        this.bridge = await Bridge.start(this.bridgeOptions());
        // A new bridge has a new signing key: trust it before opening the face.
        this.writeNatsConf(this.routes.routeUrls());
        this.reloadNats();
        await this.routes.reopen();
        await this.openFaces();
        return this.bridge.child;
      },
      this.log,
    );
    this.bridgeSup.on("crashloop", (e) => this.fatal(e));
    await this.bridgeSup.run();
  }

  logReady(): void {
    const { config, status } = this;
    const tls = config.nats.tls;
    // tls:// with client certificates says "mtls" too: who may connect is then narrower than the ACL.
    const faces = [`${tls ? "tls" : "nats"}://${status.self.name}:${config.nats.client_port}${tls?.client_ca_file ? " (mtls)" : ""}`];
    if (config.nats.websocket_port > 0) faces.push(`${tls ? "wss" : "ws"}://${status.self.name}:${config.nats.websocket_port}`);
    if (config.nats.monitor_port > 0) faces.push(`http://${status.self.name}:${config.nats.monitor_port}`);
    if (config.auth.mode === "none") {
      this.log.warn(
        { account: "APP" },
        "auth mode none: every device the tailnet ACL lets reach the client port may publish and subscribe to anything in account APP; local processes are still refused",
      );
    }
    this.log.info({ server_name: config.nats.server_name, faces, peers: this.routes.routes.size, clustered: this.clustered }, "ready");
  }

  /** The whole nats-server config, from the one renderer. */
  private writeNatsConf(routes: string[]): void {
    const { config, status } = this;
    const text = renderNatsServerConfig(config, {
      routes,
      routeSecret: this.routeSecret,
      // Our own route alias: the address every peer's forwarder to us listens on.
      clusterAdvertise: this.clustered ? `${routeAlias(status.self)}:${config.nats.loopback.cluster_port}` : undefined,
      // Clients learn each node by its tailnet name, never a loopback URL.
      clientAdvertise: this.clustered && status.self.dnsName ? `${status.self.dnsName}:${config.nats.client_port}` : undefined,
      auth: this.authPieces(),
    });
    writeFileAtomic(natsServerConfPath(config), text);
  }

  private authPieces(): AuthPieces {
    const { config, secrets } = this;
    const proxyKey = this.bridge.status!.proxyKey!;
    const sys = { user: secrets.sys_user, password: secrets.sys_password };
    if (config.auth.mode === "operator") {
      const store = this.auth.readStore!(config.auth.operator_dir);
      return {
        mode: "operator",
        proxyKey,
        operatorJwtPath: store.operator.jwtPath,
        systemAccount: store.systemAccount,
        resolverDir: join(config.state_dir, "jwt"),
      };
    }
    if (this.callout) {
      return {
        mode: "tailnet",
        proxyKey,
        sys,
        callout: { user: this.auth.callout!.AUTH_USER, password: secrets.auth_password, issuer: this.callout.issuerPublicKey() },
      };
    }
    return { mode: "none", proxyKey, sys, appPassword: secrets.app_password };
  }

  /**
   * nats-server said something about its store (see store-health.ts): tell
   * the operator once, keep it for `peer list`, and when the disk was full,
   * wait for space and restart nats-server, the only way it turns JetStream
   * back on.
   */
  private storeEvent(e: StoreEvent): void {
    const store = this.config.nats.jetstream.store_dir;
    this.storeHealth ??= new StoreHealth(this.config.state_dir);
    if (this.storeHealth.note(e)) {
      if (e.code === "ERR_STORE_DAMAGED")
        this.log.error(
          { code: e.code, store, line: e.line },
          "JetStream store damaged: nats-server cut back, rebuilt or reset part of its store; " +
            "check every replicated stream with `nats stream report`, and if this node's copy stays short, " +
            "stop it, empty its store and start it to copy the streams back from its peers (README: Reliability)",
        );
      else if (e.code === "ERR_NODE_REMOVED")
        this.log.error(
          { code: e.code, line: e.line },
          "this server is not in the JetStream meta group any more (peer remove): its streams get no new copies here; " +
            "to keep it out, stop it and delete its device; to bring it back, stop it, empty its store and start it: " +
            "the meta leader takes it back five minutes after the removal (README: Reliability)",
        );
      else
        this.log.error(
          { code: e.code, store, line: e.line, free_mib: Math.floor(freeBytes(store) / 2 ** 20), need_mib: SPACE_TO_RESUME / 2 ** 20 },
          `disk under the JetStream store is full: nats-server turned JetStream off on this node; free space on ${store}, ` +
            "and nats-tsnet restarts nats-server once there is room again",
        );
    }
    if (e.code === "ERR_STORE_FULL") this.awaitSpace(store);
  }

  private awaitSpace(store: string): void {
    if (this.spaceWatch) return;
    this.spaceWatch = setInterval(() => {
      let free = 0;
      try {
        free = freeBytes(store);
      } catch {
        return; // unmounted for a moment: look again
      }
      if (free < SPACE_TO_RESUME || this.stopping) return;
      clearInterval(this.spaceWatch);
      this.spaceWatch = undefined;
      this.log.info({ store, free_mib: Math.floor(free / 2 ** 20) }, "space under the JetStream store again: restarting nats-server");
      this.nats?.replace().catch((err: Error) => this.log.error({ err: err.message }, "nats-server did not come back"));
    }, 2000);
    this.spaceWatch.unref();
  }

  /** SIGHUP: nats-server re-reads its config; route and key changes apply live. */
  private reloadNats(): void {
    this.nats?.child?.kill("SIGHUP");
  }

  stop(mode: StopMode = "lame-duck"): Promise<void> {
    this.stopping ??= (async () => {
      clearInterval(this.spaceWatch);
      this.routes.stop();
      this.observeHttp?.close();
      this.observeHttp?.closeAllConnections();
      await this.observer?.stop();
      await this.callout?.stop();
      const b = this.bridgeSup?.release();
      const n = this.nats?.release();
      // No new tailnet connections while nats-server drains its clients.
      // Open connections stay: lame duck moves them to other nodes gradually.
      await Promise.allSettled([this.bridge.closeListener("client", true), this.bridge.closeListener("monitor", true)]);
      if (n) await stopNats(n, mode, this.config, this.log);
      if (b) await this.bridge.stop();
      this.log.info("stopped");
      this.stopped();
    })();
    return this.stopping;
  }
}

/** The config's per-device limits in the bridge's terms. */
function deviceLimits(l: Config["nats"]["device_limits"]): DeviceLimits {
  return { maxConns: l.max_connections, rate: l.connect_rate, burst: l.connect_burst };
}

async function stopNats(child: ChildProcess, mode: StopMode, config: Config, log: Logger): Promise<void> {
  if (mode === "lame-duck") {
    // SIGUSR2 is nats-server's lame duck: stop accepting, move clients
    // elsewhere gradually, then exit by itself.
    log.info({ durationMs: config.nats.lame_duck_duration_ms }, "lame duck");
    child.kill("SIGUSR2");
    const t = setTimeout(() => child.kill("SIGTERM"), config.nats.lame_duck_duration_ms + 5_000);
    await exited(child);
    clearTimeout(t);
    return;
  }
  await terminate(child, "SIGTERM", 15_000);
}

/** nats.tls as the bridge's listen takes it (empty fields left out). */
function clientTLS(t: TlsConfig): ClientTLS {
  return {
    ...(t.tailnet_cert ? { tailnet: true } : { certFile: t.cert_file, keyFile: t.key_file }),
    minVersion: t.min_version,
    ...(t.client_ca_file && { clientCaFile: t.client_ca_file }),
    ...(t.revoked.length > 0 && { revoked: [...t.revoked] }),
  };
}
