// `nats-tsnet proxy`: client mode. This machine joins the tailnet as an
// untagged device (tagged with --tags, which an OAuth client secret or
// workload identity needs) and serves one tailnet host:port on a local
// loopback port, and optionally a SOCKS5 port limited to the cluster (see
// the README).
import { InvalidArgumentError, type Command } from "commander";
import { Bridge } from "../bridge-client/client.ts";
import { checkLoginTags, loginFromEnv, TAG_PATTERN } from "../config/mod.ts";
import { createLogger, type LogFormat } from "../log.ts";
import { commaList, onStopSignal } from "./options.ts";

interface ProxyFlags {
  to: string;
  listen: string;
  socks5?: string;
  socks5Allow?: string[];
  clusterTag: string;
  socks5User?: string;
  socks5PasswordFile?: string;
  tags?: string[];
  hostname: string;
  stateDir: string;
  controlUrl?: string;
  ephemeral?: boolean;
  logFormat: LogFormat;
}

export function registerProxy(program: Command): void {
  program
    .command("proxy")
    .description("join the tailnet as an untagged device and expose a tailnet host:port on a local port")
    .requiredOption("--to <host:port>", "tailnet address to forward to, e.g. nats-1:4222")
    .option("--listen <addr>", "local loopback address", "127.0.0.1:4222")
    .option("--socks5 <addr>", "also serve SOCKS5 on this loopback address")
    .option(
      "--socks5-allow <list>",
      "SOCKS5 destinations, comma-separated: a port (on every node with --cluster-tag) or host:port (default: the port of --to)",
      commaList,
    )
    .option("--cluster-tag <tag>", "the tag that makes a tailnet peer a cluster node", "tag:nats-js")
    .option(
      "--socks5-user <name>",
      "require this SOCKS5 username; the password comes from --socks5-password-file or NATS_TSNET_SOCKS5_PASSWORD",
    )
    .option("--socks5-password-file <file>", "file holding the SOCKS5 password")
    .option(
      "--tags <list>",
      "tags this device advertises, comma-separated; needed with TS_CLIENT_SECRET or TS_CLIENT_ID, whose key carries exactly these",
      tagList,
    )
    .option("--hostname <name>", "this device's tailnet name", "nats-tsnet-proxy")
    .option("--state-dir <dir>", "tsnet state directory", "nats-tsnet-proxy-state")
    .option("--control-url <url>", "control server (default: TS_CONTROL_URL, else Tailscale's)")
    .option("--ephemeral", "register as an ephemeral device")
    .option("--log-format <fmt>", "text or json", "text")
    .action(runProxy);
}

function tagList(v: string): string[] {
  const tags = commaList(v);
  const bad = tags.find((t) => !new RegExp(TAG_PATTERN).test(t));
  if (bad !== undefined) throw new InvalidArgumentError(`${JSON.stringify(bad)} is not a tag like "tag:name"`);
  return tags;
}

async function runProxy(o: ProxyFlags): Promise<void> {
  // Checked before anything starts: a client secret without tags would
  // fail only once tsnet is up, with a message about its own CLI.
  const login = loginFromEnv(process.env);
  checkLoginTags(login, o.tags ?? [], { tagsName: "--tags" });
  const log = createLogger({ format: o.logFormat });
  // The bridge checks the SOCKS5 flags (and reads NATS_TSNET_SOCKS5_PASSWORD
  // from the environment it inherits), so that its own command line and
  // this one cannot disagree; a mistake comes back as ERR_USAGE.
  const bridge = await Bridge.start({
    mode: "client",
    hostname: o.hostname,
    dir: o.stateDir,
    controlUrl: o.controlUrl ?? process.env.TS_CONTROL_URL,
    login,
    tags: o.tags,
    ephemeral: o.ephemeral,
    upTimeoutMs: 60_000,
    listen: o.listen,
    socks5: o.socks5,
    socks5Allow: o.socks5Allow,
    clusterTag: o.clusterTag,
    socks5User: o.socks5User,
    socks5PasswordFile: o.socks5PasswordFile,
    to: o.to,
    log,
  });
  log.info({ listen: o.listen, to: o.to, socks5: o.socks5 }, "proxy ready");
  await new Promise<void>((resolve) => {
    onStopSignal(() => void bridge.stop().then(resolve));
    bridge.once("exit", () => resolve());
  });
}
