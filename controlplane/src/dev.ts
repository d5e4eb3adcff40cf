// `nats-tsnet dev`: the whole product on this machine with no Tailscale
// account. A real headscale, real nodes, each on a namespace "host" of its
// own, and a client-mode device that puts the cluster on local loopback.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { createLogger } from "./log.ts";
import { LocalTailnet, withTimeout } from "../../localtailnet/mod.ts";
import { EnvironmentError } from "./errors.ts";

export interface DevOptions {
  nodes: number;
  listen: string;
  dir?: string;
  verbose?: boolean;
}

export async function runDev(o: DevOptions): Promise<void> {
  const log = createLogger({ level: "info", name: "dev" });
  const m = /^(127\.\d+\.\d+\.\d+):(\d+)$/.exec(o.listen);
  if (!m) throw new EnvironmentError("ERR_DEV_LISTEN", `--listen ${o.listen}: must be a loopback address 127.x.x.x:port`);
  const dir = o.dir ?? mkdtempSync(`${tmpdir()}/nats-tsnet-dev-`);
  const t0 = Date.now();
  log.info({ dir }, "starting the local tailnet (headscale)");
  const tailnet = await LocalTailnet.start({ dir, log, verbose: o.verbose });
  let stopping = false;
  const stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    log.info("stopping");
    await tailnet.stop();
    if (!o.dir) rmSync(dir, { recursive: true, force: true });
    process.exit(code);
  };
  process.on("SIGINT", () => void stop(0));
  process.on("SIGTERM", () => void stop(0));
  try {
    const names = Array.from({ length: o.nodes }, (_, i) => `nats-${i + 1}`);
    await Promise.all(names.map(async (name) => {
      // NATS's clustered JetStream serves only with a live route; one node runs standalone.
      await tailnet.startNode(name, { config: o.nodes === 1 ? { nats: { standalone: true } } : {} });
      log.info({ node: name }, "node ready");
    }));
    if (o.nodes > 1) {
      const leader = await tailnet.waitForCluster(names);
      log.info({ nodes: names, metaLeader: leader }, "cluster ready: every route up, JetStream meta leader elected");
    }
    const proxy = await tailnet.startProxy("dev-client", { to: `${names[0]}:4222`, port: Number(m[2]) });
    // Ready means a real client can use JetStream through the tailnet.
    const nc = await withTimeout(connect({ servers: proxy.url, name: "nats-tsnet-dev-check", ignoreClusterUpdates: true }), 30_000, "no NATS connection through the tailnet");
    const jsm = await jetstreamManager(nc);
    await jsm.getAccountInfo();
    await nc.close();
    const url = `nats://127.0.0.1:${proxy.port}`;
    process.stdout.write(
      `ready: ${url}\n` +
      `  (${o.nodes} node${o.nodes > 1 ? "s" : ""} on the local tailnet in ${((Date.now() - t0) / 1000).toFixed(1)}s; Ctrl-C stops everything)\n\n` +
      `  nats CLI:  nats -s ${url} server info\n` +
      `             nats -s ${url} stream add demo --subjects 'demo.>' --defaults\n` +
      `  nats.js:   import { connect } from "@nats-io/transport-node";\n` +
      `             // this host is not on the tailnet: keep to the local URL on reconnect\n` +
      `             const nc = await connect({ servers: "${url}", ignoreClusterUpdates: true });\n` +
      `             nc.publish("demo.hello", "hi");\n`,
    );
  } catch (e) {
    log.error({ err: (e as Error).message }, "dev failed");
    await tailnet.stop();
    if (!o.dir) rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  await new Promise(() => {}); // until a signal
}
