// The local tailnet's control server: upstream headscale with its embedded
// DERP, a real policy file and real pre-auth keys, running inside its own
// network namespace. It speaks plain HTTP, so every tsnet client of it needs
// TS_DEBUG_USE_DERP_HTTP=1 (see tailnetEnv).
import { execFile, type ChildProcess } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import type { Logger } from "pino";
import { stringify } from "yaml";
import { binaryPath, EnvironmentError, eachLine, spawnChild, terminate } from "../controlplane/src/mod.ts";
import type { Host } from "./netns.ts";

const run = promisify(execFile);

export const CLUSTER_TAG = "tag:nats-js";
export const DEV_USER = "dev";
export const BASE_DOMAIN = "tailnet.internal";

export const CAPABILITY = "nats-tsnet.dev/cap/nats";

/**
 * The reference design's ACL, plus the monitoring port and the WebSocket
 * port dev and the tests use (8080) for members, plus one grant: on this private dev tailnet every member may do anything in
 * NATS (auth mode tailnet is on; a real tailnet grants far less).
 */
export function defaultPolicy(tag = CLUSTER_TAG): Record<string, unknown> {
  return {
    tagOwners: { [tag]: [`${DEV_USER}@`] },
    acls: [
      { action: "accept", src: [tag], dst: [`${tag}:4222`, `${tag}:6222`, `${tag}:8222`] },
      { action: "accept", src: ["autogroup:member"], dst: [`${tag}:4222`, `${tag}:8222`, `${tag}:8080`] },
    ],
    grants: [{ src: ["autogroup:member"], dst: [tag], app: { [CAPABILITY]: [{ pub: { allow: [">"] }, sub: { allow: [">"] } }] } }],
  };
}

/** Environment every tsnet process on this tailnet needs. */
export function tailnetEnv(): NodeJS.ProcessEnv {
  return { TS_DEBUG_USE_DERP_HTTP: "1", TS_NO_LOGS_NO_SUPPORT: "true" };
}

export interface AuthKeyOptions {
  tags?: string[];
  user?: string;
  reusable?: boolean;
  ephemeral?: boolean;
  expiration?: string;
}

export class Headscale {
  readonly url: string;
  readonly dir: string;
  readonly host: Host;
  private child?: ChildProcess;
  private readonly configPath: string;
  private readonly log: Logger;
  private users = new Map<string, Promise<number>>();

  constructor(host: Host, dir: string, log: Logger, policy: Record<string, unknown> = defaultPolicy()) {
    this.host = host;
    this.dir = dir;
    this.log = log.child({ component: "headscale" });
    this.url = `http://${host.ip}:8080`;
    this.configPath = join(dir, "config.yaml");
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.setPolicyFile(policy);
    writeFileSync(this.configPath, stringify(this.config()));
  }

  private config(): Record<string, unknown> {
    const d = this.dir;
    return {
      server_url: this.url,
      listen_addr: `${this.host.ip}:8080`,
      metrics_listen_addr: "127.0.0.1:9090",
      grpc_listen_addr: "127.0.0.1:50443",
      grpc_allow_insecure: false,
      noise: { private_key_path: join(d, "noise.key") },
      prefixes: { v4: "100.64.0.0/10", v6: "fd7a:115c:a1e0::/48", allocation: "sequential" },
      derp: {
        server: {
          enabled: true,
          region_id: 999,
          region_code: "local",
          region_name: "nats-tsnet local DERP",
          verify_clients: true,
          stun_listen_addr: `${this.host.ip}:3478`,
          private_key_path: join(d, "derp.key"),
          automatically_add_embedded_derp_region: true,
          ipv4: this.host.ip,
        },
        urls: [], // never fetch Tailscale's DERP map
        paths: [],
        auto_update_enabled: false,
      },
      disable_check_updates: true,
      node: { expiry: 0, ephemeral: { inactivity_timeout: "30m" } },
      database: { type: "sqlite", sqlite: { path: join(d, "db.sqlite"), write_ahead_log: true } },
      log: { level: "info", format: "text" },
      policy: { mode: "file", path: join(d, "policy.hujson") },
      dns: {
        magic_dns: true,
        base_domain: BASE_DOMAIN,
        override_local_dns: false,
        nameservers: { global: [], split: {} },
        search_domains: [],
        extra_records: [],
      },
      unix_socket: join(d, "headscale.sock"),
      unix_socket_permission: "0700",
      logtail: { enabled: false },
      taildrop: { enabled: false },
    };
  }

  setPolicyFile(policy: Record<string, unknown>): void {
    writeFileSync(join(this.dir, "policy.hujson"), JSON.stringify(policy, null, 2));
  }

  /** Replaces the policy of the running server (headscale re-reads it on SIGHUP). */
  async setPolicy(policy: Record<string, unknown>): Promise<void> {
    this.setPolicyFile(policy);
    this.child?.kill("SIGHUP");
    // headscale says nothing when a reload is done: give it a moment, then
    // make sure it answers again (a policy it cannot parse would stop it).
    await new Promise((r) => setTimeout(r, 500));
    await this.cli(["users", "list"]);
  }

  async start(timeoutMs = 30_000): Promise<void> {
    const child = spawnChild({ cmd: binaryPath("headscale"), args: ["-c", this.configPath, "serve"], wrap: this.host.wrap });
    this.child = child;
    const onLine = (l: string) => this.log.debug(l);
    eachLine(child.stdout, onLine);
    eachLine(child.stderr, onLine);
    const deadline = Date.now() + timeoutMs;
    let lastErr = "";
    while (Date.now() < deadline) {
      if (child.exitCode !== null)
        throw new EnvironmentError("ERR_HEADSCALE", `headscale exited with code ${child.exitCode}; run with --verbose for its log`);
      try {
        await this.cli(["users", "list"]);
        return;
      } catch (e) {
        lastErr = (e as Error).message;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new EnvironmentError("ERR_HEADSCALE", `headscale did not answer within ${timeoutMs}ms: ${lastErr}`);
  }

  async stop(): Promise<void> {
    if (this.child) await terminate(this.child, "SIGTERM", 5000);
    this.child = undefined;
  }

  /** Runs the headscale CLI against the running server (over its unix socket). */
  async cli(args: string[]): Promise<any> {
    const { stdout } = await run(binaryPath("headscale"), ["-c", this.configPath, "-o", "json", ...args], { timeout: 15_000 });
    return stdout.trim() ? JSON.parse(stdout) : undefined;
  }

  ensureUser(name: string): Promise<number> {
    // One look-up per user even when devices are started concurrently.
    let p = this.users.get(name);
    if (!p) {
      p = (async () => {
        const list: Array<{ id: number; name: string }> = (await this.cli(["users", "list"])) ?? [];
        const found = list.find((u) => u.name === name) ?? (await this.cli(["users", "create", name]));
        return Number(found.id);
      })();
      p.catch(() => this.users.delete(name));
      this.users.set(name, p);
    }
    return p;
  }

  /** A pre-auth key: tagged (owned by the tag) or owned by a user. */
  async authKey(o: AuthKeyOptions = {}): Promise<string> {
    const args = ["preauthkeys", "create", "-e", o.expiration ?? "1h"];
    if (o.tags?.length) args.push("--tags", o.tags.join(","));
    else args.push("--user", String(await this.ensureUser(o.user ?? DEV_USER)));
    if (o.reusable) args.push("--reusable");
    if (o.ephemeral) args.push("--ephemeral");
    const res = await this.cli(args);
    return res.key as string;
  }

  /** Deletes a device from the tailnet: for its peers it has left for good. */
  async deleteNode(name: string): Promise<void> {
    const n = (await this.nodes()).find((x) => x.given_name === name || x.name === name);
    if (!n) throw new Error(`no device named ${name}`);
    await this.cli(["nodes", "delete", "-i", String(n.id), "--force"]);
  }

  /** Replaces a device's tags (an admin re-tagging it in the console). */
  async setTags(name: string, tags: string[]): Promise<void> {
    const n = (await this.nodes()).find((x) => x.given_name === name || x.name === name);
    if (!n) throw new Error(`no device named ${name}`);
    await this.cli(["nodes", "tag", "-i", String(n.id), "-t", tags.join(",")]);
  }

  async nodes(): Promise<Array<{ id: number; name: string; given_name: string; online?: boolean; tags?: string[] }>> {
    return (await this.cli(["nodes", "list"])) ?? [];
  }
}
