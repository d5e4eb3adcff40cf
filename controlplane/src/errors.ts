// A small closed set of error classes. Each carries a stable `code` (tests and
// scripts match on it, never on message text) and maps to a distinct exit code
// so that a supervisor (systemd, a shell script) can tell "fix your config"
// apart from "the tailnet refused us" without parsing logs.

export const ExitCode = {
  ok: 0,
  failure: 1,
  usage: 2,
  config: 3,
  tailnet: 4,
  missingBinary: 5,
  crashLoop: 6,
  environment: 7,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export class NatsTsnetError extends Error {
  readonly code: string;
  readonly exitCode: ExitCode;
  constructor(code: string, message: string, exitCode: ExitCode, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.exitCode = exitCode;
  }
}

/** Bad configuration: the message names file:line:column where one is known. */
export class ConfigError extends NatsTsnetError {
  readonly file?: string;
  readonly line?: number;
  readonly column?: number;
  constructor(
    code: string,
    message: string,
    where: { file?: string; line?: number; column?: number } = {},
    options?: { cause?: unknown },
  ) {
    super(code, message, ExitCode.config, options);
    this.file = where.file;
    this.line = where.line;
    this.column = where.column;
  }
}

/** The tailnet could not be joined: bad key, control server unreachable, missing tag. */
export class TailnetError extends NatsTsnetError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, ExitCode.tailnet, options);
  }
}

/** A required executable (bridge, nats-server, headscale) is missing. */
export class MissingBinaryError extends NatsTsnetError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("ERR_MISSING_BINARY", message, ExitCode.missingBinary, options);
  }
}

/** A supervised process kept crashing past its restart budget. */
export class CrashLoopError extends NatsTsnetError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("ERR_CRASH_LOOP", message, ExitCode.crashLoop, options);
  }
}

/** The host cannot do what was asked (no network namespaces, not root, ...). */
export class EnvironmentError extends NatsTsnetError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, ExitCode.environment, options);
  }
}
