// The fault suite's cluster: three nodes whose JetStream stores each live on
// a lazy filesystem (LazyFs) over a disk of their own (a tmpfs of fixed size,
// so that a disk can be filled). A power cut kills every process of a host
// at once and then drops every write its store had not fsynced.
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { LazyFs } from "../../localtailnet/mod.ts";
import type { TestTailnet } from "../integration/helpers.ts";

/** Size of each node's disk: ample for the suite, small enough to fill in a second. */
const DISK_SIZE = "512m";

interface Disk {
  /** Where the disk (a tmpfs) is mounted: LazyFs's backing directory. */
  dir: string;
  lazy: LazyFs;
}

export class FaultCluster {
  private readonly disks = new Map<string, Disk>();

  readonly t: TestTailnet;

  constructor(t: TestTailnet) {
    this.t = t;
  }

  /** The directory nats-server sees as its store (the LazyFs mount). */
  storeDir(name: string): string {
    return join(this.t.tailnet.dir, "nodes", name, "state", "jetstream");
  }

  /** The disk under a node's store. */
  diskDir(name: string): string {
    return join(this.t.dir, "disks", name);
  }

  /** Starts a node on its lazy store, mounting the store first if it is not. */
  async start(name: string, config?: Record<string, unknown>): Promise<void> {
    await this.mount(name);
    await this.t.tailnet.startNode(name, { config });
  }

  private async mount(name: string): Promise<void> {
    if (this.disks.has(name)) return;
    const dir = this.diskDir(name);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${DISK_SIZE},mode=0700`, `disk-${name}`, dir]);
    const mountpoint = this.storeDir(name);
    mkdirSync(mountpoint, { recursive: true, mode: 0o700 });
    const lazy = await LazyFs.mount({ backing: dir, mountpoint });
    this.disks.set(name, { dir, lazy });
  }

  /**
   * Power cut on these hosts at the same instant, then their restart.
   * Returns how many bytes each store lost (written, never fsynced).
   */
  async powerCut(names: string[], o: { restart?: boolean; config?: Record<string, unknown> } = {}) {
    await Promise.all(names.map((n) => this.t.tailnet.powerOff(n)));
    const dropped: Record<string, number> = {};
    for (const n of names) {
      const d = this.disks.get(n)!;
      dropped[n] = (await d.lazy.powerCut()).dropped_bytes;
      await d.lazy.remount();
    }
    if (o.restart !== false) await Promise.all(names.map((n) => this.t.tailnet.startNode(n, { config: o.config })));
    return dropped;
  }

  /** Empties a stopped node's store, keeping the mount. */
  wipeStore(name: string): void {
    const dir = this.storeDir(name);
    for (const e of readdirSync(dir)) rmSync(join(dir, e), { recursive: true, force: true });
  }

  /** Stops every node, then unmounts the stores and their disks. */
  async stop(): Promise<void> {
    await Promise.allSettled([...this.t.tailnet.nodes.keys()].map((n) => this.t.tailnet.stopNode(n)));
    for (const d of this.disks.values()) {
      await d.lazy.unmount().catch(() => {});
      try {
        execFileSync("umount", [d.dir]);
      } catch {
        execFileSync("umount", ["-l", d.dir]);
      }
    }
    this.disks.clear();
  }
}
