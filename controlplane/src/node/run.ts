// One nats-tsnet node: tailnet up -> nats-server -> tailnet listeners, in
// that order, so that nothing is reachable before it can answer, and torn
// down in reverse (listeners first, then lame duck, then the tailnet).
import { mkdirSync, writeFileSync, renameSync } from "node:fs";
import { join } from "node:path";
import type { ChildProcess } from "node:child_process";
import type { Logger } from "pino";
import { renderNatsServerConfig, natsServerConfPath, resolveAuthKey, redactConfig, type Config } from "../config/mod.ts";
import { q } from "../config/render.ts";
import { Bridge, type TailnetStatus } from "../bridge/client.ts";
import { startNatsServer } from "./natsServer.ts";
import { accountsBlock, loadOrCreateSecrets, ROUTE_USER } from "./secrets.ts";
import { Supervisor } from "../supervise/restart.ts";
import { exited, terminate } from "../supervise/spawn.ts";
import { TailnetError, type NatsTsnetError } from "../errors.ts";
import { RouteReconciler } from "../cluster/reconcile.ts";
import { routeAlias } from "../cluster/members.ts";
import { AuthCallout, AUTH_USER } from "../auth/callout.ts";
import { operatorBlock, readStore } from "../auth/operator.ts";

export interface RunningNode {
  status: TailnetStatus;
  /** Resolves when the node has stopped; rejects on a fatal error (crash loop). */
  done: Promise<void>;
  stop(mode?: "lame-duck" | "quick"): Promise<void>;
}

export async function startNode(config: Config, log: Logger): Promise<RunningNode> {
  log.info({ config: redactConfig(config) as unknown as Record<string, unknown>, sources: config.source }, "starting");
  mkdirSync(config.state_dir, { recursive: true, mode: 0o700 });
  const secrets = loadOrCreateSecrets(config.state_dir);

  let fatal: (e: NatsTsnetError) => void = () => {};
  let stopped: () => void = () => {};
  const done = new Promise<void>((resolve, reject) => { fatal = reject; stopped = resolve; });

  const bridgeOpts = {
    mode: "node" as const,
    hostname: config.hostname,
    dir: join(config.state_dir, "tailscale"),
    controlUrl: config.tailnet.control_url || undefined,
    authKey: resolveAuthKey(config),
    tags: config.tailnet.tags,
    ephemeral: config.tailnet.ephemeral,
    upTimeoutMs: config.tailnet.up_timeout_ms,
    verbose: config.log.level === "debug" || config.log.level === "trace",
    log,
  };

  // 1. The tailnet.
  let bridge = await Bridge.start(bridgeOpts);
  const status = bridge.status!;
  const tag = config.tailnet.cluster_tag;
  if (!status.self.tags.includes(tag)) {
    await bridge.stop();
    throw new TailnetError(
      "ERR_TAILNET_MISSING_TAG",
      `this device (${status.self.dnsName}) lacks the cluster tag ${tag} (it has: ${status.self.tags.join(", ") || "no tags"}); ` +
        `use an auth key that applies ${tag}, or set tailnet.tags`,
    );
  }
  log.info({ device: status.self.dnsName, ips: status.self.ips, tags: status.self.tags }, "on the tailnet");

  // 2. nats-server, on loopback only, with routes to the peers we know now.
  const confPath = natsServerConfPath(config);
  const clustered = !config.nats.standalone;
  const routeSecret = { User: ROUTE_USER, Pass: secrets.route_password };
  // Route URLs carry this node's route secret: the loopback forwarder lets
  // through only connections that present it (our own nats-server).
  const withSecret = (u: string) => u.replace("://", `://${ROUTE_USER}:${secrets.route_password}@`);
  const selfRoute = `nats-route://127.0.0.1:${config.nats.loopback.cluster_port}`;
  const render = (routes: string[]) => {
    const text = renderNatsServerConfig(config, {
      confPath,
      routes: (routes.length ? routes : [selfRoute]).map(withSecret),
      clusterAuthorization: { user: ROUTE_USER, password: secrets.route_password },
      // Our own route alias: the address every peer's forwarder to us listens on.
      clusterAdvertise: clustered ? `${routeAlias(status.self)}:${config.nats.loopback.cluster_port}` : undefined,
      // Clients learn each node by its tailnet name, never a loopback URL.
      clientAdvertise: clustered && status.self.dnsName ? `${status.self.dnsName}:${config.nats.client_port}` : undefined,
      extraBlocks: [authBlock()],
    });
    writeFileSync(confPath + ".tmp", text, { mode: 0o600 });
    renameSync(confPath + ".tmp", confPath);
  };
  const callout = config.auth.mode === "tailnet"
    ? new AuthCallout({
        auth: config.auth,
        serverName: config.nats.server_name,
        clientPort: config.nats.loopback.client_port,
        monitorPort: config.nats.loopback.monitor_port,
        authPassword: secrets.auth_password,
        sys: { user: secrets.sys_user, password: secrets.sys_password },
        bridge: () => bridge,
        log: log.child({ component: "auth" }),
      })
    : undefined;
  // Every auth mode keeps the trusted proxy: only the bridge can vouch for a client.
  const authBlock = (): string => {
    const proxyKey = bridge.status!.proxyKey!;
    if (config.auth.mode === "operator") {
      return [`proxies { trusted: [ { key: ${q(proxyKey)} } ] }`, operatorBlock(readStore(config.auth.operator_dir), config.state_dir, q)].join("\n");
    }
    return accountsBlock(secrets, q, proxyKey, callout
      ? { mode: "tailnet", issuer: callout.issuerPublicKey(), accounts: config.auth.accounts, authUser: AUTH_USER }
      : { mode: "none" });
  };
  const routes = new RouteReconciler({
    config,
    log,
    bridge: () => bridge,
    routeSecret,
    applyRoutes: async (urls) => {
      render(urls);
      // SIGHUP: nats-server re-reads its config; route changes apply live.
      nats.child?.kill("SIGHUP");
      log.info({ routes: urls.length }, "nats-server config reloaded");
    },
  });
  if (clustered) await routes.init(status);
  render(routes.routeUrls());
  const nats = new Supervisor("nats-server", () => startNatsServer({ confPath, monitorPort: config.nats.loopback.monitor_port, log }), log);
  nats.on("crashloop", (e) => fatal(e));
  await nats.run();
  // The callout must answer before the first client arrives.
  await callout?.start();

  // 3. The tailnet faces.
  const openFaces = async (b: Bridge) => {
    await b.listen({ name: "client", port: config.nats.client_port, target: `127.0.0.1:${config.nats.loopback.client_port}`, proxyProtocol: true, signClients: true, nameClients: true });
    if (config.nats.monitor_port > 0) {
      await b.listen({ name: "monitor", port: config.nats.monitor_port, target: `127.0.0.1:${config.nats.loopback.monitor_port}` });
    }
    if (clustered) {
      // Only devices carrying the cluster tag may open a route, whatever the ACL says.
      await b.listen({ name: "cluster", port: config.nats.cluster_port, target: `127.0.0.1:${config.nats.loopback.cluster_port}`, allowTags: [tag], routeSecret });
    }
  };
  const watchPeers = (b: Bridge) => {
    if (clustered) b.on("peers", (s: TailnetStatus) => routes.update(s));
    // A new netmap may carry new grants: open connections meet them now.
    if (callout) b.on("netmap", () => void callout.reevaluate("netmap"));
  };
  await openFaces(bridge);
  watchPeers(bridge);

  // The bridge is the face; if it dies, bring it back and reopen everything.
  const bridgeSup = new Supervisor("bridge", async () => {
    if (bridge.child.exitCode === null && bridge.child.signalCode === null) return bridge.child;
    bridge = await Bridge.start(bridgeOpts);
    // A new bridge has a new signing key: trust it before opening the face.
    render(routes.routeUrls());
    nats.child?.kill("SIGHUP");
    await routes.reopen();
    await openFaces(bridge);
    watchPeers(bridge);
    return bridge.child;
  }, log);
  bridgeSup.on("crashloop", (e) => fatal(e));
  await bridgeSup.run();

  const faces = [`nats://${status.self.name}:${config.nats.client_port}`];
  if (config.nats.monitor_port > 0) faces.push(`http://${status.self.name}:${config.nats.monitor_port}`);
  if (config.auth.mode === "none") {
    log.warn(
      { account: "APP" },
      "auth mode none: every device the tailnet ACL lets reach the client port may publish and subscribe to anything in account APP; local processes are still refused",
    );
  }
  log.info({ server_name: config.nats.server_name, faces, peers: routes.routes.size, clustered }, "ready");

  let stopping: Promise<void> | undefined;
  const stop = (mode: "lame-duck" | "quick" = "lame-duck") => {
    stopping ??= (async () => {
      routes.stop();
      await callout?.stop();
      const b = bridgeSup.release();
      const n = nats.release();
      // No new tailnet connections while nats-server drains its clients.
      // Open connections stay: lame duck moves them to other nodes gradually.
      await Promise.allSettled([bridge.closeListener("client", true), bridge.closeListener("monitor", true)]);
      if (n) await stopNats(n, mode, config, log);
      if (b) await bridge.stop();
      log.info("stopped");
      stopped();
    })();
    return stopping;
  };
  return { status, done, stop };
}

async function stopNats(child: ChildProcess, mode: "lame-duck" | "quick", config: Config, log: Logger): Promise<void> {
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
