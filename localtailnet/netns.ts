// A private network of Linux network namespaces: one "switch" namespace
// holding a bridge, and one namespace per host wired to it by a veth pair.
// No namespace has a default route and none is connected to the host's
// own namespace, so nothing started inside can reach beyond this machine.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { EnvironmentError } from "../controlplane/src/mod.ts";

const SUBNET = "10.213.0"; // inside our own namespaces only; never routed
let labCounter = 0;

function ip(...args: string[]): string {
  return execFileSync("ip", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

export interface Host {
  name: string;
  netns: string;
  ip: string;
  /** Command prefix that runs a program inside this host. */
  wrap: string[];
}

/** Says why namespaces cannot be used here, or undefined if they can. */
export function namespacesUnavailable(): string | undefined {
  if (process.getuid?.() !== 0)
    return "the local tailnet runs every device in a network namespace of its own, which needs root: run as root";
  try {
    ip("netns", "list");
  } catch (e) {
    return `'ip netns' does not work here: ${(e as Error).message.split("\n")[0]}`;
  }
  return undefined;
}

/** Removes namespaces left behind by labs whose process is gone. */
export function removeStaleLabs(): string[] {
  const removed: string[] = [];
  for (const line of ip("netns", "list").split("\n")) {
    const name = line.split(" ")[0];
    const m = name ? /^nt(\d+)x\d+-/.exec(name) : null;
    if (!m || existsSync(`/proc/${m[1]}`)) continue;
    killNamespace(name!);
    removed.push(name!);
  }
  return removed;
}

function killNamespace(ns: string): void {
  try {
    for (const pid of ip("netns", "pids", ns).split("\n").filter(Boolean)) {
      try {
        process.kill(Number(pid), "SIGKILL");
      } catch {
        /* already gone */
      }
    }
  } catch {
    /* namespace already gone */
  }
  try {
    ip("netns", "del", ns);
  } catch {
    /* already gone */
  }
}

export class NetLab {
  readonly id: string;
  readonly hosts = new Map<string, Host>();
  private readonly sw: string;
  private nextIndex = 1;

  constructor() {
    const why = namespacesUnavailable();
    if (why) throw new EnvironmentError("ERR_NO_NETNS", why);
    removeStaleLabs();
    this.id = `nt${process.pid}x${labCounter++}`;
    this.sw = `${this.id}-sw`;
    ip("netns", "add", this.sw);
    ip("-n", this.sw, "link", "add", "br0", "type", "bridge");
    ip("-n", this.sw, "link", "set", "br0", "up");
  }

  addHost(name: string): Host {
    if (this.hosts.has(name)) throw new Error(`host ${name} exists`);
    const idx = this.nextIndex++;
    if (idx > 250) throw new Error("lab is full");
    const netns = `${this.id}-${name}`.slice(0, 60);
    ip("netns", "add", netns);
    ip("-n", netns, "link", "set", "lo", "up");
    ip("-n", this.sw, "link", "add", `v${idx}`, "type", "veth", "peer", "name", "eth0", "netns", netns);
    ip("-n", this.sw, "link", "set", `v${idx}`, "master", "br0", "up");
    const addr = `${SUBNET}.${idx}`;
    ip("-n", netns, "addr", "add", `${addr}/24`, "dev", "eth0");
    ip("-n", netns, "link", "set", "eth0", "up");
    const host: Host = { name, netns, ip: addr, wrap: ["ip", "netns", "exec", netns] };
    this.hosts.set(name, host);
    return host;
  }

  /** Cuts a host's link (a partition) or restores it. */
  setLink(name: string, up: boolean): void {
    const h = this.hosts.get(name);
    if (!h) throw new Error(`no host ${name}`);
    ip("-n", h.netns, "link", "set", "eth0", up ? "up" : "down");
  }

  /**
   * Kills every process on a host at the same instant (SIGKILL): a power cut
   * as its processes see it. Nothing gets to flush or say goodbye. Resolves
   * once none is left.
   */
  async killAll(name: string): Promise<void> {
    const h = this.hosts.get(name);
    if (!h) throw new Error(`no host ${name}`);
    for (let i = 0; i < 100; i++) {
      const pids = ip("netns", "pids", h.netns).split("\n").filter(Boolean);
      if (pids.length === 0) return;
      for (const pid of pids) {
        try {
          process.kill(Number(pid), "SIGKILL");
        } catch {
          /* already gone */
        }
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`processes on host ${name} survived SIGKILL`);
  }

  /** Runs a command inside a host and returns its stdout. */
  exec(name: string, cmd: string, args: string[]): string {
    const h = this.hosts.get(name);
    if (!h) throw new Error(`no host ${name}`);
    return execFileSync("ip", ["netns", "exec", h.netns, cmd, ...args], { encoding: "utf8" });
  }

  destroy(): void {
    for (const h of this.hosts.values()) killNamespace(h.netns);
    killNamespace(this.sw);
    this.hosts.clear();
  }
}

/** Lists namespaces of this lab still present (for tests of cleanup). */
export function labNamespaces(id: string): string[] {
  return ip("netns", "list")
    .split("\n")
    .map((l) => l.split(" ")[0]!)
    .filter((n) => n.startsWith(id + "-"));
}

export interface ProcessMemory {
  /** Resident set, MiB. */
  rss: number;
  /** Of it, anonymous memory (heaps, stacks): what the process really costs. */
  anon: number;
  /** Of it, file-backed pages (its executable and libraries), shared with the page cache. */
  file: number;
}

/**
 * Resident memory of the processes running in a namespace, by what they
 * are: "nats-tsnet" (the Node.js node, from a checkout or a release file
 * named so), "nats-tsnet-bridge", "nats-server". Processes of one name add up.
 */
export function namespaceProcessMemory(netns: string): Record<string, ProcessMemory> {
  const out: Record<string, ProcessMemory> = {};
  for (const pid of ip("netns", "pids", netns).split("\n").filter(Boolean)) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      // Node names its main thread, so tell processes apart by what they run.
      const name = cmd.some((a) => a.endsWith("nats-tsnet.ts")) ? "nats-tsnet" : cmd[0]!.split("/").pop()!;
      const status = readFileSync(`/proc/${pid}/status`, "utf8");
      const mib = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) / 1024;
      const p = (out[name] ??= { rss: 0, anon: 0, file: 0 });
      p.rss = +(p.rss + mib("VmRSS")).toFixed(1);
      p.anon = +(p.anon + mib("RssAnon")).toFixed(1);
      p.file = +(p.file + mib("RssFile")).toFixed(1);
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** Resident memory (MiB) of the processes running in a namespace, by what they are. */
export function namespaceMemory(netns: string): Record<string, number> {
  return Object.fromEntries(Object.entries(namespaceProcessMemory(netns)).map(([name, m]) => [name, m.rss]));
}
