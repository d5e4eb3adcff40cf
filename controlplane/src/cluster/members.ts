// Who is in the cluster, decided from the tailnet's own peer list. Pure
// functions, so the rules are unit-tested without a tailnet.
import type { Device, TailnetStatus } from "../bridge-client/client.ts";

export interface Member {
  /** Stable tailnet node ID; survives renames. */
  id: string;
  name: string;
  dnsName: string;
  ips: string[];
  online: boolean;
}

/**
 * Tagged peers are members. Online state is deliberately ignored: a peer
 * that drops off for a moment stays in the netmap and keeps its route, so
 * a flapping link never rewrites the config. A peer leaves when the
 * tailnet forgets it or it loses the tag. Sorted by name in code-unit
 * order: device names are DNS labels, and localeCompare would load ICU's
 * collation data (some 2 MiB resident) for them.
 */
export function membersOf(status: TailnetStatus, clusterTag: string): Member[] {
  return status.peers
    .filter((p) => p.tags.includes(clusterTag) && p.ips.length > 0)
    .map((p) => ({ id: p.id, name: p.name, dnsName: p.dnsName, ips: [...p.ips], online: p.online }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

export interface MemberDiff {
  added: Member[];
  removed: Member[];
  changed: Member[]; // same device, different addresses
}

export function diffMembers(before: readonly Member[], after: readonly Member[]): MemberDiff {
  const b = new Map(before.map((m) => [m.id, m]));
  const a = new Map(after.map((m) => [m.id, m]));
  return {
    added: after.filter((m) => !b.has(m.id)),
    removed: before.filter((m) => !a.has(m.id)),
    changed: after.filter((m) => b.has(m.id) && b.get(m.id)!.ips.join() !== m.ips.join()),
  };
}

/**
 * The loopback address through which every node reaches a given peer's
 * cluster port: 127.<last three octets of the peer's tailnet IPv4>. All of
 * 127/8 is loopback on Linux, and tailnet IPv4s are unique, so each peer
 * gets an address of its own that is the same on every node. That lets a
 * node advertise its own alias as its route URL: when nats-server gossips
 * "connect to X at <alias>", every receiver has a forwarder listening there
 * that leads to X over the tailnet. Gossip stays correct instead of
 * pointing at 127.0.0.1.
 */
export function routeAlias(device: Pick<Device, "ips">): string {
  const v4 = device.ips.find((ip) => /^\d+\.\d+\.\d+\.\d+$/.test(ip));
  if (v4) {
    const [, b, c, d] = v4.split(".");
    return `127.${b}.${c}.${d}`;
  }
  // No IPv4 (an IPv6-only tailnet): derive a stable alias from the address.
  const ip = device.ips[0] ?? "";
  let h = 2166136261;
  for (const ch of ip) h = Math.imul(h ^ ch.charCodeAt(0), 16777619) >>> 0;
  return `127.${128 + ((h >>> 16) & 0x7f)}.${(h >>> 8) & 0xff}.${Math.max(2, h & 0xff)}`;
}

/** Tailnet dial targets for a peer's port: every address, IPv4 first. */
export function dialTargets(ips: readonly string[], port: number): string[] {
  const v4 = ips.filter((ip) => !ip.includes(":")).map((ip) => `${ip}:${port}`);
  const v6 = ips.filter((ip) => ip.includes(":")).map((ip) => `[${ip}]:${port}`);
  return [...v4, ...v6];
}
