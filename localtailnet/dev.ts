// `./run dev`: the whole product on this machine with no Tailscale
// account. A real headscale, real nodes, each on a namespace "host" of its
// own, and a client-mode device that puts the cluster on local loopback.
// It lives beside the lab, not in the control plane: an installed node
// carries no headscale and no namespaces.
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { createServer } from "node:net";
import { Command } from "commander";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { createLogger, issueCert, positiveInt, runProgram, UsageError } from "../controlplane/src/mod.ts";
import { LocalTailnet, withTimeout } from "./lab.ts";

export interface DevOptions {
  nodes: number;
  listen: string;
  dir?: string;
  verbose?: boolean;
  /** TLS on every node's client face, with a CA dev makes. */
  tls?: boolean;
  /** A WebSocket face on every node, exposed on a second local port. */
  websocket?: boolean;
}

/** The nodes' WebSocket port on the tailnet, with --websocket. */
const WEBSOCKET_PORT = 8080;

export async function runDev(o: DevOptions): Promise<void> {
  const log = createLogger({ level: "info", name: "dev" });
  const listen = parseListen(o.listen);
  // Before anything starts: a taken port would otherwise fail only once the cluster is up.
  await portFree(listen);
  const dir = o.dir ?? mkdtempSync(`${tmpdir()}/nats-tsnet-dev-`);
  const t0 = Date.now();
  // Each progress line says how long the start has taken so far.
  const progress = (fields: Record<string, unknown>, msg: string) =>
    log.info({ ...fields, elapsed_s: Number(((Date.now() - t0) / 1000).toFixed(1)) }, msg);
  progress({ dir }, "starting the local tailnet (headscale)");
  const tailnet = await LocalTailnet.start({ dir, log, verbose: o.verbose });
  progress({}, "local tailnet up");
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
    // One certificate for every node, valid for their tailnet names and for the local URL.
    const tls = o.tls
      ? issueCert({ dir: join(dir, "tls"), name: "server", cn: "nats-tsnet dev", dns: [...names, "localhost"], ips: [listen.host] })
      : undefined;
    await Promise.all(
      names.map(async (name) => {
        // NATS's clustered JetStream serves only with a live route; one node runs standalone.
        const config = {
          ...(o.nodes === 1 && { standalone: true }),
          ...(tls && { tls: { cert_file: tls.cert, key_file: tls.key } }),
          ...(o.websocket && { websocket_port: WEBSOCKET_PORT }),
        };
        await tailnet.startNode(name, { config: { nats: config } });
        progress({ node: name }, "node ready");
      }),
    );
    if (o.nodes > 1) {
      const leader = await tailnet.waitForCluster(names);
      progress({ nodes: names, metaLeader: leader }, "cluster ready: every route up, JetStream meta leader elected");
    }
    const proxy = await tailnet.startProxy("dev-client", { to: `${names[0]}:4222`, listenHost: listen.host, port: listen.port });
    // Ready means a real client can use JetStream through the tailnet.
    const url = tls ? proxy.url.replace(/^nats:/, "tls:") : proxy.url;
    const ws = o.websocket
      ? (await tailnet.startProxy("dev-websocket", { to: `${names[0]}:${WEBSOCKET_PORT}`, listenHost: listen.host })).url.replace(
          /^nats:/,
          tls ? "wss:" : "ws:",
        )
      : undefined;
    const nc = await withTimeout(
      connect({ servers: url, name: "nats-tsnet-dev-check", ignoreClusterUpdates: true, ...(tls && { tls: { caFile: tls.ca } }) }),
      30_000,
      "no NATS connection through the tailnet",
    );
    const jsm = await jetstreamManager(nc);
    await jsm.getAccountInfo();
    await nc.close();
    const cli = tls ? `nats -s ${url} --tlsca ${tls.ca}` : `nats -s ${url}`;
    const jsTls = tls ? `, tls: { caFile: "${tls.ca}" }` : "";
    process.stdout.write(
      `ready: ${url}\n` +
        (ws ? `websocket: ${ws}\n` : "") +
        (tls ? `ca: ${tls.ca}\n` : "") +
        `  (${o.nodes} node${o.nodes > 1 ? "s" : ""} on the local tailnet in ${((Date.now() - t0) / 1000).toFixed(1)}s; Ctrl-C stops everything)\n\n` +
        `  nats CLI:  ${cli} server info\n` +
        `             ${cli} stream add demo --subjects 'demo.>' --defaults\n` +
        (tls ? `             ${cli} --tlsfirst pub demo.hello hi   # TLS first works too\n` : "") +
        `  nats.js:   import { connect } from "@nats-io/transport-node";\n` +
        `             // this host is not on the tailnet: keep to the local URL on reconnect\n` +
        `             const nc = await connect({ servers: "${url}", ignoreClusterUpdates: true${jsTls} });\n` +
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

/** Refuses a --listen address some other program holds, before the cluster starts. */
async function portFree(l: { host: string; port: number }): Promise<void> {
  const s = createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      s.once("error", reject);
      s.listen(l.port, l.host, () => resolve());
    });
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code === "EADDRINUSE" ? "is already in use by another program" : (e as Error).message;
    throw new UsageError(
      "ERR_DEV_LISTEN",
      `--listen ${l.host}:${l.port} ${why}: stop that program or choose another port (--listen 127.0.0.1:4223)`,
    );
  } finally {
    s.close();
  }
}

/** A loopback IPv4 host:port; the cluster is never exposed anywhere else. */
export function parseListen(text: string): { host: string; port: number } {
  const m = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}):(\d{1,5})$/.exec(text);
  const port = Number(m?.[2]);
  if (!m || m[1]!.split(".").some((o) => Number(o) > 255) || port > 65535) {
    throw new UsageError("ERR_DEV_LISTEN", `--listen ${text}: must be a loopback address 127.x.x.x:port`);
  }
  return { host: m[1]!, port };
}

function main(argv: string[]): Promise<number> {
  const program = new Command("dev")
    .description("run a local tailnet (headscale) with nodes and expose the cluster on this machine's loopback")
    .option("-n, --nodes <n>", "number of nodes", positiveInt, 3)
    .option("--listen <addr>", "where the cluster is exposed on this machine (127.x.x.x:port)", "127.0.0.1:4222")
    .option("--dir <dir>", "working directory (default: a fresh temporary one)")
    .option("--verbose", "show every node's log lines")
    .option("--tls", "TLS on the client port, with a CA made for this run (its path is printed as ca:)")
    .option("--websocket", "a WebSocket face too, exposed on a second local port (printed as websocket:)")
    .exitOverride()
    .showHelpAfterError()
    .action(runDev);
  return runProgram(program, argv, "dev");
}

if (import.meta.main) process.exit(await main(process.argv.slice(2)));
