// The nats-tsnet command line. Every failure ends here: a NatsTsnetError
// becomes one clear line on stderr and its distinct exit code.
import { Command, CommanderError, InvalidArgumentError } from "commander";
import { join } from "node:path";
import { loadConfig, redactConfig, renderNatsServerConfig, natsServerConfPath, type ConfigInput } from "./config/mod.ts";
import { createLogger, type LogFormat } from "./log.ts";
import { startNode } from "./node/run.ts";
import { Bridge } from "./bridge/client.ts";
import { formatPeerList, peerList, peerRemove } from "./cluster/peers.ts";
import { ConfigError, ExitCode, NatsTsnetError } from "./errors.ts";
import { addAccount, addUser, importNsc, initStore, pushAccounts } from "./auth/operator.ts";
import { parseDuration } from "./config/mod.ts";

function int(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("must be a positive integer");
  return n;
}

/** Resolves when SIGINT or SIGTERM arrives; a second one forces exit. */
function onStopSignal(fn: (sig: NodeJS.Signals) => void): void {
  let seen = false;
  const h = (sig: NodeJS.Signals) => {
    if (seen) process.exit(ExitCode.failure);
    seen = true;
    fn(sig);
  };
  process.on("SIGINT", h);
  process.on("SIGTERM", h);
}

export async function main(argv: string[]): Promise<number> {
  const program = new Command("nats-tsnet")
    .description("A NATS JetStream node whose only network face is a Tailscale node")
    .exitOverride()
    .showHelpAfterError();

  program
    .command("run")
    .description("run a node: join the tailnet, start nats-server, open the tailnet faces")
    .option("-c, --config <file>", "config file (YAML)")
    .option("--hostname <name>", "tailnet device name (overrides the config)")
    .option("--state-dir <dir>", "state directory (overrides the config)")
    .action(async (o: { config?: string; hostname?: string; stateDir?: string }) => {
      const overrides: ConfigInput = {};
      if (o.hostname) overrides.hostname = o.hostname;
      if (o.stateDir) overrides.state_dir = o.stateDir;
      const config = loadConfig({ file: o.config, overrides });
      const log = createLogger({ level: config.log.level, format: config.log.format });
      // Listen for signals before anything starts: a stop asked for during
      // start-up is carried out as soon as there is something to stop.
      let asked: NodeJS.Signals | undefined;
      let node: Awaited<ReturnType<typeof startNode>> | undefined;
      onStopSignal((sig) => {
        log.info({ signal: sig }, "stopping");
        asked = sig;
        void node?.stop("lame-duck");
      });
      try {
        node = await startNode(config, log);
        if (asked) void node.stop("lame-duck");
        await node.done;
      } catch (e) {
        if (e instanceof NatsTsnetError) log.error({ code: e.code }, e.message);
        throw e;
      }
    });

  const cfg = program.command("config").description("check or show configuration");
  cfg
    .command("check")
    .description("validate a config file; prints the effective config with secrets redacted")
    .option("-c, --config <file>", "config file (YAML)")
    .action((o: { config?: string }) => {
      const c = loadConfig({ file: o.config });
      process.stdout.write(JSON.stringify(redactConfig(c), null, 2) + "\n");
    });
  cfg
    .command("render")
    .description("print the nats-server config a node would run with")
    .option("-c, --config <file>", "config file (YAML)")
    .action((o: { config?: string }) => {
      const c = loadConfig({ file: o.config });
      process.stdout.write(renderNatsServerConfig(c, { confPath: natsServerConfPath(c) }));
    });

  const peer = program.command("peer").description("cluster membership, seen from this host's node");
  peer
    .command("list")
    .description("tailnet peers, routes and the JetStream meta group side by side")
    .option("-c, --config <file>", "the node's config file")
    .option("--json", "print JSON")
    .action(async (o: { config?: string; json?: boolean }) => {
      const l = await peerList(loadConfig({ file: o.config }));
      process.stdout.write(o.json ? JSON.stringify(l, null, 2) + "\n" : formatPeerList(l));
    });
  peer
    .command("remove <name>")
    .description("remove a server that is gone for good from the JetStream meta group")
    .option("-c, --config <file>", "the node's config file")
    .action(async (name: string, o: { config?: string }) => {
      await peerRemove(loadConfig({ file: o.config }), name);
      process.stdout.write(`removed ${name} from the JetStream meta group\n`);
    });

  const auth = program.command("auth").description("auth mode operator: operator, accounts, users and .creds files");
  const dirOpt = ["--dir <dir>", "the auth store", "nats-tsnet-auth"] as const;
  const list = (v: string) => v.split(",").map((s) => s.trim()).filter(Boolean);
  const dur = (v: string) => {
    const ms = parseDuration(v);
    if (ms === undefined) throw new InvalidArgumentError('must be a duration like "30s", "24h"');
    return ms;
  };
  const num = (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < -1) throw new InvalidArgumentError("must be an integer (-1: unlimited)");
    return n;
  };
  auth
    .command("init")
    .description("make an operator with its system account and an admin user")
    .option(...dirOpt)
    .option("--operator <name>", "operator name", "nats-tsnet")
    .action(async (o: { dir: string; operator: string }) => {
      const s = await initStore(o.dir, o.operator);
      process.stdout.write(`operator ${s.operator.name} (${s.operator.pub}) with system account ${s.systemAccount.pub} in ${o.dir}\n`);
    });
  auth
    .command("account")
    .description("accounts")
    .command("add <name>")
    .description("add or edit an account")
    .option(...dirOpt)
    .option("--max-conns <n>", "connections", num)
    .option("--max-subs <n>", "subscriptions", num)
    .option("--max-payload <n>", "bytes per message", num)
    .option("--max-data <n>", "bytes in flight", num)
    .option("--js-memory <n>", "JetStream memory bytes", num)
    .option("--js-disk <n>", "JetStream disk bytes", num)
    .option("--max-streams <n>", "JetStream streams", num)
    .action(async (name: string, o: { dir: string; maxConns?: number; maxSubs?: number; maxPayload?: number; maxData?: number; jsMemory?: number; jsDisk?: number; maxStreams?: number }) => {
      const pub = await addAccount(o.dir, name, { conns: o.maxConns, subs: o.maxSubs, payload: o.maxPayload, data: o.maxData, jsMemory: o.jsMemory, jsDisk: o.jsDisk, streams: o.maxStreams });
      process.stdout.write(`account ${name} (${pub}); push it to the cluster with 'nats-tsnet auth push'\n`);
    });
  auth
    .command("user")
    .description("users")
    .command("add <name>")
    .description("add a user and write its .creds file")
    .requiredOption("--account <name>", "the user's account")
    .option(...dirOpt)
    .option("--pub-allow <subjects>", "comma-separated", list)
    .option("--pub-deny <subjects>", "comma-separated", list)
    .option("--sub-allow <subjects>", "comma-separated", list)
    .option("--sub-deny <subjects>", "comma-separated", list)
    .option("--resp-max <n>", "replies allowed per request received", num)
    .option("--resp-ttl <duration>", "time allowed for those replies", dur)
    .option("--expiry <duration>", "the credentials expire after this", dur)
    .option("--bearer", "bearer token (no nonce signing)")
    .option("--no-proxy-required", "also usable without a node's tailnet face (not recommended)")
    .action(async (name: string, o: { account: string; dir: string; pubAllow?: string[]; pubDeny?: string[]; subAllow?: string[]; subDeny?: string[]; respMax?: number; respTtl?: number; expiry?: number; bearer?: boolean; proxyRequired: boolean }) => {
      const path = await addUser(o.dir, o.account, name, {
        pubAllow: o.pubAllow, pubDeny: o.pubDeny, subAllow: o.subAllow, subDeny: o.subDeny,
        respMax: o.respMax, respTtlMs: o.respTtl, expiresInMs: o.expiry, bearer: o.bearer, proxyRequired: o.proxyRequired,
      });
      process.stdout.write(`${path}\n`);
    });
  auth
    .command("push")
    .description("push every account to the cluster through this host's node (the full resolver spreads them)")
    .option("-c, --config <file>", "the node's config file")
    .action(async (o: { config?: string }) => {
      const c = loadConfig({ file: o.config });
      if (c.auth.mode !== "operator") throw new ConfigError("ERR_AUTH_MODE", `auth push needs auth.mode operator (the node runs ${c.auth.mode})`);
      for (const r of await pushAccounts(c.auth.operator_dir, c.nats.loopback.client_port)) process.stdout.write(`${r.account}: ${r.result}\n`);
    });
  auth
    .command("import-nsc")
    .description("take over an operator made with nsc")
    .requiredOption("--operator-dir <dir>", "nsc's store directory of the operator (…/stores/<operator>)")
    .requiredOption("--nkeys-dir <dir>", "nsc's nkeys directory")
    .option(...dirOpt)
    .action(async (o: { operatorDir: string; nkeysDir: string; dir: string }) => {
      const s = await importNsc({ operatorDir: o.operatorDir, nkeysDir: o.nkeysDir, dest: o.dir });
      process.stdout.write(`imported operator ${s.operator.name} with ${s.accounts.length} accounts into ${o.dir}\n`);
    });

  program
    .command("proxy")
    .description("join the tailnet as an untagged device and expose a tailnet host:port on a local port")
    .requiredOption("--to <host:port>", "tailnet address to forward to, e.g. nats-1:4222")
    .option("--listen <addr>", "local loopback address", "127.0.0.1:4222")
    .option("--socks5 <addr>", "also serve SOCKS5 on this loopback address")
    .option("--hostname <name>", "this device's tailnet name", "nats-tsnet-proxy")
    .option("--state-dir <dir>", "tsnet state directory", "nats-tsnet-proxy-state")
    .option("--control-url <url>", "control server (default: TS_CONTROL_URL, else Tailscale's)")
    .option("--ephemeral", "register as an ephemeral device")
    .option("--log-format <fmt>", "text or json", "text")
    .action(async (o: { to: string; listen: string; socks5?: string; hostname: string; stateDir: string; controlUrl?: string; ephemeral?: boolean; logFormat: LogFormat }) => {
      const log = createLogger({ format: o.logFormat });
      const bridge = await Bridge.start({
        mode: "client",
        hostname: o.hostname,
        dir: join(o.stateDir),
        controlUrl: o.controlUrl ?? process.env.TS_CONTROL_URL,
        authKey: process.env.TS_AUTHKEY,
        ephemeral: o.ephemeral,
        upTimeoutMs: 60_000,
        listen: o.listen,
        socks5: o.socks5,
        to: o.to,
        log,
      });
      log.info({ listen: o.listen, to: o.to, socks5: o.socks5 }, "proxy ready");
      await new Promise<void>((resolve) => {
        onStopSignal(() => void bridge.stop().then(resolve));
        bridge.once("exit", () => resolve());
      });
    });

  program
    .command("dev")
    .description("run a local tailnet (headscale) with nodes and expose the cluster on this machine's loopback")
    .option("-n, --nodes <n>", "number of nodes", int, 3)
    .option("--listen <addr>", "where the cluster is exposed on this machine", "127.0.0.1:4222")
    .option("--dir <dir>", "working directory (default: a fresh temporary one)")
    .option("--verbose", "show every node's log lines")
    .action(async (o: { nodes: number; listen: string; dir?: string; verbose?: boolean }) => {
      const { runDev } = await import("./dev.ts");
      await runDev(o);
    });

  try {
    await program.parseAsync(argv, { from: "user" });
    return ExitCode.ok;
  } catch (e) {
    if (e instanceof CommanderError) {
      return e.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
    }
    if (e instanceof NatsTsnetError) {
      process.stderr.write(`nats-tsnet: ${e.message}\n`);
      return e.exitCode;
    }
    process.stderr.write(`nats-tsnet: unexpected error: ${(e as Error).stack ?? e}\n`);
    return ExitCode.failure;
  }
}
