// The node's eyes on the cluster: one system-account connection on
// loopback, asked at a steady pace. What it learns goes to the places an
// operator looks (the log, and what the node keeps for its commands).
import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";
import type { Config } from "../config/mod.ts";
import { metaLeaderView, sysConnect } from "./sys.ts";
import { MetaMembership, metaVerdict } from "./meta-watch.ts";

export interface ObserverOptions {
  config: Config;
  log: Logger;
  /** The meta leader has not listed this server for a while. */
  onRemoved: (line: string) => void;
  intervalMs?: number;
  /** How long "not listed" must last before it counts (a joining server is listed within seconds). */
  patienceMs?: number;
}

export class Observer {
  private nc?: NatsConnection;
  private timer?: NodeJS.Timeout;
  private busy = false;
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

  private async tick(): Promise<void> {
    if (this.busy || !this.nc || this.nc.isClosed()) return;
    this.busy = true;
    try {
      await this.checkMembership(this.nc);
    } catch (err) {
      this.o.log.debug({ err: (err as Error).message }, "observer: a look at the cluster failed");
    } finally {
      this.busy = false;
    }
  }

  private async checkMembership(nc: NatsConnection): Promise<void> {
    const { config } = this.o;
    if (config.nats.standalone || !config.nats.jetstream.enabled) return;
    const view = await metaLeaderView(nc);
    if (this.membership.observe(metaVerdict(config.nats.server_name, view), Date.now())) {
      this.o.onRemoved(`the JetStream meta leader ${view!.leader} does not list this server among its ${view!.cluster_size ?? "?"} peers`);
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.nc?.close().catch(() => {});
  }
}
