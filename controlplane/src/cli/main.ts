// The nats-tsnet command line. Each command registers itself (one function
// per command, in its own file); every failure ends here: a NatsTsnetError
// becomes one clear line on stderr and its distinct exit code.
import { Command, CommanderError } from "commander";
import { ExitCode, NatsTsnetError } from "../errors.ts";
import { registerRun } from "./run.ts";
import { registerConfig } from "./config.ts";
import { registerPeer } from "./peer.ts";
import { registerStatus } from "./status.ts";
import { registerAuth } from "./auth.ts";
import { registerProxy } from "./proxy.ts";
import { registerDev } from "./dev.ts";
import { registerVersion } from "./version.ts";

export function buildProgram(): Command {
  const program = new Command("nats-tsnet")
    .description("A NATS JetStream node whose only network face is a Tailscale node")
    .exitOverride()
    .showHelpAfterError();
  for (const register of [
    registerRun,
    registerConfig,
    registerPeer,
    registerStatus,
    registerAuth,
    registerProxy,
    registerDev,
    registerVersion,
  ])
    register(program);
  return program;
}

export function main(argv: string[]): Promise<number> {
  // `--version` (and `-V`) is the version command, so that `--version --json` works too.
  if (argv[0] === "--version" || argv[0] === "-V") argv = ["version", ...argv.slice(1)];
  return runProgram(buildProgram(), argv, "nats-tsnet");
}

/**
 * Parses argv with program and runs it; every failure becomes one line on
 * stderr (`<prefix>: <code>: <message>`) and its exit code. Shared with the
 * repository's own commands (./run dev).
 */
export async function runProgram(program: Command, argv: string[], prefix: string): Promise<number> {
  try {
    await program.parseAsync(argv, { from: "user" });
    return ExitCode.ok;
  } catch (e) {
    return reportError(e, prefix);
  }
}

function reportError(e: unknown, prefix: string): number {
  if (e instanceof CommanderError) {
    // Commander already printed its message (and the help) to stderr.
    return e.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
  }
  if (e instanceof NatsTsnetError) {
    process.stderr.write(`${prefix}: ${e.code}: ${e.message}\n`);
    return e.exitCode;
  }
  process.stderr.write(`${prefix}: unexpected error: ${(e as Error).stack ?? e}\n`);
  return ExitCode.failure;
}
