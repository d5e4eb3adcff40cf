// Live membership: turns the tailnet's peer list into nats-server routes.
// For each tagged peer the bridge keeps a loopback forwarder (on the peer's
// route alias) that dials the peer's :6222 over the tailnet; nats-server's
// routes point at those forwarders, and a config reload applies changes
// without restarting anything or touching existing connections.
import type { Counters } from "../observe/counters.ts";
import { join } from "node:path";
import type { Logger } from "pino";
import type { Bridge, TailnetStatus } from "../bridge-client/client.ts";
import type { Config, RouteSecret } from "../config/mod.ts";
import { writeFileAtomic } from "../util/fs.ts";
import { diffMembers, dialTargets, membersOf, routeAlias, type Member } from "./members.ts";

export interface Route {
  member: Member;
  alias: string;
  url: string;
}

export interface ReconcilerOptions {
  config: Config;
  log: Logger;
  /** Members joined, left and moved are counted here (reconcile_events) for /metrics. */
  counters?: Counters;
  bridge: () => Bridge;
  /** This node's route secret; the forwarders demand it from nats-server. */
  routeSecret: RouteSecret;
  /** Writes nats-server's config with these route URLs and reloads it. */
  applyRoutes: (urls: string[]) => Promise<void>;
  debounceMs?: number;
}

export class RouteReconciler {
  readonly routes = new Map<string, Route>();
  private pending?: TailnetStatus;
  private timer?: NodeJS.Timeout;
  private chain: Promise<void> = Promise.resolve();
  private readonly o: ReconcilerOptions;

  constructor(o: ReconcilerOptions) {
    this.o = o;
  }

  routeUrls(): string[] {
    return [...this.routes.values()].map((r) => r.url).sort();
  }

  private routeFor(m: Member): Route {
    const alias = routeAlias(m);
    return { member: m, alias, url: `nats-route://${alias}:${this.o.config.nats.loopback.cluster_port}` };
  }

  private async open(r: Route): Promise<void> {
    await this.o.bridge().forward({
      name: `route:${r.member.id}`,
      listen: `${r.alias}:${this.o.config.nats.loopback.cluster_port}`,
      targets: dialTargets(r.member.ips, this.o.config.nats.cluster_port),
      routeSecret: this.o.routeSecret,
    });
  }

  /** First membership, before nats-server starts: forwarders only, no reload. */
  async init(status: TailnetStatus): Promise<void> {
    for (const m of membersOf(status, this.o.config.tailnet.cluster_tag)) {
      const r = this.routeFor(m);
      await this.open(r);
      this.routes.set(m.id, r);
      this.o.log.info({ peer: m.name, ips: m.ips, route: r.url }, "peer found at start");
    }
    this.writeStatus(status);
  }

  /** A new bridge process knows no forwarders: open them all again. */
  async reopen(): Promise<void> {
    for (const r of this.routes.values()) await this.open(r);
  }

  /** Called on every peer-list change; coalesces bursts into one apply. */
  update(status: TailnetStatus): void {
    this.pending = status;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      const s = this.pending!;
      this.chain = this.chain
        .then(() => this.apply(s))
        .catch((e) => this.o.log.error({ err: (e as Error).message }, "applying membership failed"));
    }, this.o.debounceMs ?? 1000);
  }

  /** Waits for any scheduled apply to finish (tests, shutdown). */
  async settle(): Promise<void> {
    await this.chain;
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  private async apply(status: TailnetStatus): Promise<void> {
    const tag = this.o.config.tailnet.cluster_tag;
    if (!status.self.tags.includes(tag)) {
      this.o.log.error({ tags: status.self.tags }, `this device lost the cluster tag ${tag}; keeping the routes it has`);
      return;
    }
    const before = [...this.routes.values()].map((r) => r.member);
    const after = membersOf(status, tag);
    const d = diffMembers(before, after);
    if (!d.added.length && !d.removed.length && !d.changed.length) {
      this.writeStatus(status);
      return;
    }
    for (const m of [...d.removed, ...d.changed]) {
      const r = this.routes.get(m.id)!;
      await this.o
        .bridge()
        .closeListener(`route:${m.id}`)
        .catch(() => {});
      this.routes.delete(m.id);
      if (d.removed.includes(m)) {
        const still = status.peers.find((p) => p.id === m.id);
        const why = still ? `lost the tag ${tag} (has: ${still.tags.join(", ") || "none"})` : "left the tailnet";
        this.o.log.info({ peer: m.name, route: r.url, why }, "peer left: route removed");
        this.o.counters?.inc("reconcile_events", { event: "left" });
      }
    }
    for (const m of [...d.added, ...d.changed]) {
      const r = this.routeFor(m);
      await this.open(r);
      this.routes.set(m.id, r);
      const why = d.changed.includes(m) ? "addresses changed" : `joined with tag ${tag}`;
      this.o.counters?.inc("reconcile_events", { event: d.changed.includes(m) ? "moved" : "joined" });
      this.o.log.info(
        { peer: m.name, ips: m.ips, route: r.url, why },
        d.changed.includes(m) ? "peer moved: route renewed" : "peer joined: route added",
      );
    }
    await this.o.applyRoutes(this.routeUrls());
    this.writeStatus(status);
  }

  /** A snapshot for `nats-tsnet peer list`, which runs as another process. */
  private writeStatus(status: TailnetStatus): void {
    const routes = [...this.routes.values()].map((r) => ({
      peer: r.member.name,
      id: r.member.id,
      url: r.url,
      targets: dialTargets(r.member.ips, this.o.config.nats.cluster_port),
    }));
    writeStatusFile(this.o.config.state_dir, status, routes);
  }
}

/**
 * status.json: this node's view of the tailnet (and its routes), for
 * `nats-tsnet peer list` and anyone else on the host who asks; a standalone
 * node writes it too, with no routes.
 */
export function writeStatusFile(
  stateDir: string,
  status: TailnetStatus,
  routes: Array<{ peer: string; id: string; url: string; targets: string[] }> = [],
): void {
  const body = { updated: new Date().toISOString(), self: status.self, peers: status.peers, routes };
  writeFileAtomic(join(stateDir, "status.json"), JSON.stringify(body, null, 2));
}
