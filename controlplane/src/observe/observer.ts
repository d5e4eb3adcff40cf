// The node's eyes on the cluster: one system-account connection on
// loopback, the bridge's "observe" op and this nats-server's monitoring
// port. A look gathers all three into the ClusterStatus that `status`, the
// page and /metrics show; a look is taken when someone asks (kept for two
// seconds, so a page and a scraper share one), and a small one every ten
// seconds for what the node must say by itself (membership, key expiry).
import { readFileSync } from "node:fs";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";
import type { Config } from "../config/mod.ts";
import type { Bridge, Observed } from "../bridge-client/client.ts";
import { membersOf } from "../cluster/members.ts";
import { localGet } from "../util/http.ts";
import { metaLeaderView, pingAll, sysConnect, type MetaView } from "./sys.ts";
import { MetaMembership, metaVerdict } from "./meta-watch.ts";
import { buildStatus, type ClusterStatus, type ConnzData, type JszData } from "./status.ts";
import { renderMetrics } from "./metrics.ts";
import { Counters } from "./counters.ts";

export interface ObserverOptions {
  config: Config;
  log: Logger;
  bridge: () => Bridge;
  /** nats-server's pid, for its memory. */
  natsPid: () => number | undefined;
  counters: Counters;
  /** The meta leader has not listed this server for a while. */
  onRemoved: (line: string) => void;
  intervalMs?: number;
  /** How long "not listed" must last before it counts (a joining server is listed within seconds). */
  patienceMs?: number;
}

interface Look {
  at: number;
  status: ClusterStatus;
  observed?: Observed;
  varz?: Record<string, number>;
  jsz?: Record<string, number>;
}

export class Observer {
  private nc?: NatsConnection;
  private timer?: NodeJS.Timeout;
  private busy = false;
  private last?: Promise<Look>;
  private keyExpiredSaid = false;
  private readonly membership: MetaMembership;
  private readonly o: ObserverOptions;

  constructor(o: ObserverOptions) {
    this.o = o;
    this.membership = new MetaMembership(o.patienceMs ?? 30_000);
  }

  async start(): Promise<void> {
    this.nc = await sysConnect(this.o.config, "nats-tsnet observer", { reconnect: true });
    this.timer = setInterval(() => void this.tick(), this.o.intervalMs ?? 10_000);
    this.timer.unref();
  }

  /** The cluster as of at most two seconds ago. */
  async status(): Promise<ClusterStatus> {
    return (await this.look()).status;
  }

  async metrics(): Promise<string> {
    const l = await this.look();
    const rss = (pid: number | undefined) => (pid ? rssOf(pid) : undefined);
    return renderMetrics({
      status: l.status,
      observed: l.observed,
      counters: this.o.counters,
      varz: l.varz,
      jsz: l.jsz,
      memory: [
        ["nats-tsnet", process.memoryUsage().rss],
        ["bridge", rss(this.o.bridge().child.pid)],
        ["nats-server", rss(this.o.natsPid())],
      ],
    });
  }

  private look(): Promise<Look> {
    const l = this.last;
    if (l) {
      return l.then((x) => (Date.now() - x.at < 2000 ? x : this.fresh())).catch(() => this.fresh());
    }
    return this.fresh();
  }

  private fresh(): Promise<Look> {
    this.last = this.gather();
    return this.last;
  }

  private async gather(): Promise<Look> {
    const { config } = this.o;
    const bridge = this.o.bridge();
    const tailnet = bridge.status!;
    const tag = config.tailnet.cluster_tag;
    const ping = membersOf(tailnet, tag)
      .filter((m) => m.online)
      .map((m) => m.ips[0]!);
    const port = config.nats.loopback.monitor_port;
    const json = async (path: string) => JSON.parse((await localGet(port, path, 3000)).body);
    const nc = this.nc;
    const [observed, routez, varz, jsz, meta, jszAll, connzAll] = await Promise.all([
      bridge.observe(ping).catch(() => undefined),
      json("/routez").catch(() => ({})),
      json("/varz").catch(() => undefined),
      json("/jsz").catch(() => undefined),
      nc ? metaLeaderView(nc) : undefined,
      nc ? pingAll<JszData>(nc, "JSZ", { accounts: true, streams: true }).catch(() => []) : [],
      nc ? pingAll<ConnzData>(nc, "CONNZ", { auth: true, limit: 4096 }).catch(() => []) : [],
    ]);
    this.noteKey(observed);
    const status = buildStatus({
      at: new Date(),
      tailnet,
      clusterTag: tag,
      serverName: config.nats.server_name,
      observed,
      routesUp: ((routez as { routes?: Array<{ remote_name: string }> }).routes ?? []).map((r) => r.remote_name),
      meta,
      removed: this.membership.out,
      jsz: jszAll,
      connz: connzAll,
    });
    return { at: Date.now(), status, observed, varz, jsz };
  }

  private async tick(): Promise<void> {
    if (this.busy || !this.nc || this.nc.isClosed()) return;
    this.busy = true;
    try {
      await this.checkMembership(this.nc);
      this.noteKey(await this.o.bridge().observe([]));
    } catch (err) {
      this.o.log.debug({ err: (err as Error).message }, "observer: a look at the cluster failed");
    } finally {
      this.busy = false;
    }
  }

  private async checkMembership(nc: NatsConnection): Promise<void> {
    const { config } = this.o;
    if (config.nats.standalone || !config.nats.jetstream.enabled) return;
    const view: MetaView | undefined = await metaLeaderView(nc);
    if (this.membership.observe(metaVerdict(config.nats.server_name, view), Date.now())) {
      this.o.onRemoved(`the JetStream meta leader ${view!.leader} does not list this server among its ${view!.cluster_size ?? "?"} peers`);
    }
  }

  /**
   * An expired node key cuts this device off the tailnet: no new
   * connections, no new routes, until the key is renewed. Said once when
   * it happens, and once when it is over.
   */
  private noteKey(o: Observed | undefined): void {
    if (!o) return;
    const expired = o.keyExpired || o.backendState === "NeedsLogin";
    if (expired && !this.keyExpiredSaid) {
      this.o.log.error(
        { code: "ERR_TAILNET_KEY_EXPIRED", key_expiry: o.keyExpiry, backend_state: o.backendState },
        "this device's tailnet key has expired: peers and clients cannot reach this node until it is renewed; " +
          "renew it on the control server (headscale: register the node again with a new auth key; Tailscale: " +
          "reauthenticate the device or disable its key expiry), and the node picks it up (README: Operating)",
      );
    } else if (!expired && this.keyExpiredSaid) {
      this.o.log.info({ key_expiry: o.keyExpiry }, "tailnet key valid again");
    }
    this.keyExpiredSaid = expired;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.nc?.close().catch(() => {});
  }
}

/** Resident memory of a process, from /proc (Linux; undefined elsewhere). */
function rssOf(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}
