// Argument parsers and signal handling shared by the commands.
import { InvalidArgumentError } from "commander";
import { ExitCode } from "../errors.ts";
import { parseDuration } from "../config/units.ts";

export const CONFIG_OPTION = ["-c, --config <file>", "the node's config file (YAML)"] as const;

export function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("must be a positive integer");
  return n;
}

/** A limit: a whole number, -1 for unlimited. */
export function limit(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < -1) throw new InvalidArgumentError("must be an integer (-1: unlimited)");
  return n;
}

/** A duration in the config file's syntax, as milliseconds. */
export function duration(v: string): number {
  const ms = parseDuration(v);
  if (ms === undefined) throw new InvalidArgumentError('must be a duration like "30s", "24h"');
  return ms;
}

export function commaList(v: string): string[] {
  return v
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
}

/** Calls fn on the first SIGINT or SIGTERM; a second one forces exit. */
export function onStopSignal(fn: (sig: NodeJS.Signals) => void): void {
  let seen = false;
  const h = (sig: NodeJS.Signals) => {
    if (seen) process.exit(ExitCode.failure);
    seen = true;
    fn(sig);
  };
  process.on("SIGINT", h);
  process.on("SIGTERM", h);
}
