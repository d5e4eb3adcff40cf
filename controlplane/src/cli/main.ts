// The nats-tsnet command line. Each command registers itself (one function
// per command, in its own file); every failure ends here: a NatsTsnetError
// becomes one clear line on stderr and its distinct exit code.
import { Command, CommanderError } from "commander";
import { ExitCode, NatsTsnetError } from "../errors.ts";
import { registerRun } from "./run.ts";
import { registerConfig } from "./config.ts";
import { registerPeer } from "./peer.ts";
import { registerAuth } from "./auth.ts";
import { registerProxy } from "./proxy.ts";
import { registerDev } from "./dev.ts";

export function buildProgram(): Command {
  const program = new Command("nats-tsnet")
    .description("A NATS JetStream node whose only network face is a Tailscale node")
    .exitOverride()
    .showHelpAfterError();
  for (const register of [registerRun, registerConfig, registerPeer, registerAuth, registerProxy, registerDev]) register(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv, { from: "user" });
    return ExitCode.ok;
  } catch (e) {
    return reportError(e);
  }
}

function reportError(e: unknown): number {
  if (e instanceof CommanderError) {
    // Commander already printed its message (and the help) to stderr.
    return e.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
  }
  if (e instanceof NatsTsnetError) {
    process.stderr.write(`nats-tsnet: ${e.code}: ${e.message}\n`);
    return e.exitCode;
  }
  process.stderr.write(`nats-tsnet: unexpected error: ${(e as Error).stack ?? e}\n`);
  return ExitCode.failure;
}
