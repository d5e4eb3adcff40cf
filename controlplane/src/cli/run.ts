// `nats-tsnet run`: one node, until a signal stops it.
// What it runs is loaded when it runs: every start registers every command,
// and the node's code has no business in `nats-tsnet auth ...` or `--help`.
import type { Command } from "commander";
import type { ConfigInput } from "../config/mod.ts";
import type { RunningNode } from "../node/run.ts";
import { NatsTsnetError } from "../errors.ts";
import { onStopSignal } from "./options.ts";

interface RunFlags {
  config?: string;
  hostname?: string;
  stateDir?: string;
}

export function registerRun(program: Command): void {
  program
    .command("run")
    .description("run a node: join the tailnet, start nats-server, open the tailnet faces")
    .option("-c, --config <file>", "config file (YAML)")
    .option("--hostname <name>", "tailnet device name (overrides the config)")
    .option("--state-dir <dir>", "state directory (overrides the config)")
    .action(runNode);
}

async function runNode(o: RunFlags): Promise<void> {
  const [{ loadConfig }, { createLogger }, { startNode }] = await Promise.all([
    import("../config/mod.ts"),
    import("../log.ts"),
    import("../node/run.ts"),
  ]);
  const overrides: ConfigInput = {};
  if (o.hostname) overrides.hostname = o.hostname;
  if (o.stateDir) overrides.state_dir = o.stateDir;
  const config = loadConfig({ file: o.config, overrides });
  const log = createLogger({ level: config.log.level, format: config.log.format });
  // Listen for signals before anything starts: a stop asked for during
  // start-up is carried out as soon as there is something to stop.
  let asked = false;
  let node: RunningNode | undefined;
  onStopSignal((sig) => {
    log.info({ signal: sig }, "stopping");
    asked = true;
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
}
