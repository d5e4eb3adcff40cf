// The closed set of nats-tsnet errors. Every failure carries a stable `code`
// (tests and scripts match on it, never on message text) and a distinct exit
// code, so that a supervisor (systemd, a shell script) can tell "fix your
// config" apart from "the tailnet refused us" without parsing logs.
//
// One table, CODES, is the whole taxonomy: each error class owns one row and
// accepts only that row's codes (undici's model: a class, a fixed meaning),
// and the exit code follows from the row. The README's table of codes is
// checked against it (test/unit/errors.test.ts), and so are the bridge's Go
// code constants (dataplane/bridge/codes.go).

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

/** Every code, by the class that raises it. A code appears in exactly one row. */
export const CODES = {
  usage: [
    "ERR_USAGE", // a command-line argument or flag is wrong (also the bridge's own flags)
    "ERR_LISTEN", // a local listen address cannot be used (not loopback, or taken)
    "ERR_AUTH_EXISTS", // `auth init` on a store that holds an operator
    "ERR_AUTH_NAME", // an operator, account or user name with other characters than [A-Za-z0-9_-]
    "ERR_AUTH_NO_ACCOUNT", // `auth user add` for an account the store lacks
    "ERR_AUTH_IMPORT", // `auth import-nsc` cannot use what nsc made
    "ERR_AUTH_KEY_MISSING", // the seed of the key that must sign (a signing key under strict usage) is not at hand
    "ERR_AUTH_NO_ROLE", // `auth user add --role` names a role the account lacks
    "ERR_AUTH_NO_USER", // `auth user revoke|reissue` names a user the store lacks
    "ERR_DEV_LISTEN", // `dev --listen` is not a loopback host:port, or another program holds it
    "ERR_DEV_NOT_HERE", // `dev` asked of an installed nats-tsnet (it lives in the repository)
  ],
  config: [
    "ERR_CONFIG_READ", // a config or key file is missing, unreadable or empty
    "ERR_CONFIG_SYNTAX", // YAML syntax
    "ERR_CONFIG_INVALID", // a value in the file or a flag
    "ERR_CONFIG_ENV", // a value from the environment
    "ERR_AUTH_STORE", // the operator store is unreadable or incomplete
    "ERR_AUTH_MODE", // a command that needs another auth.mode
    "ERR_AUTH_KEY_FILE", // the bridge cannot read the auth key it was handed
    "ERR_CLUSTER_KEY", // tailnet.cluster_key_file is unreadable, too short, or readable by others
    "ERR_OAUTH_TAGS", // an OAuth client secret or workload identity (they mint a key with exactly the advertised tags) without tags, or a node's without the cluster tag
  ],
  tailnet: [
    "ERR_TAILNET_AUTH", // the key was refused, or the control server wants an interactive login
    "ERR_TAILNET_CONTROL_UNREACHABLE", // the control server does not answer
    "ERR_TAILNET_UP_TIMEOUT", // not Running within tailnet.up_timeout
    "ERR_TAILNET_START", // tsnet did not start
    "ERR_TAILNET", // any other failure to join
    "ERR_TAILNET_MISSING_TAG", // this device lacks tailnet.cluster_tag
    "ERR_BRIDGE_EXIT", // the bridge died before it was on the tailnet
  ],
  missingBinary: [
    "ERR_MISSING_BINARY", // the bridge, nats-server, headscale or nats is not built
    "ERR_EMBEDDED_BINARY", // a release file cannot unpack or verify a binary it carries (cache directory unusable, hash mismatch)
  ],
  crashLoop: [
    "ERR_CRASH_LOOP", // a supervised process crashed past its restart budget
  ],
  environment: [
    "ERR_NO_NETNS", // dev/tests: not root, or no network namespaces
    "ERR_HEADSCALE", // dev/tests: headscale did not start
  ],
  failure: [
    "ERR_NATS_SERVER_EXIT", // nats-server exited during start-up
    "ERR_NATS_SERVER_TIMEOUT", // nats-server not healthy in time
    "ERR_NODE_NOT_RUNNING", // `peer` finds no status.json: no node runs with this config
    "ERR_PEER_REMOVE", // the meta group refused to remove a peer
    "ERR_AUTH_PUSH", // the cluster refused an account JWT
    "ERR_OBSERVE_PORT", // observe.loopback_port cannot be opened (taken)
    "ERR_TAILNET_KEY_EXPIRED", // logged, never an exit: this device's node key expired; the tailnet is cut off until it is renewed
    "ERR_STORE_DAMAGED", // logged, never an exit: nats-server found part of its JetStream store damaged and cut it back, rebuilt or reset it
    "ERR_STORE_FULL", // logged, never an exit: the disk under the JetStream store is full; JetStream is off on this node until there is room
    "ERR_NODE_REMOVED", // logged, never an exit: this server was removed from the meta group (peer remove): JetStream off on it, or the meta leader does not list it
  ],
  // The bridge's control protocol (dataplane/bridge/codes.go).
  bridge: [
    "ERR_BRIDGE_GONE", // the bridge is not running (any more)
    "ERR_BRIDGE", // the bridge answered without a code
    "ERR_BAD_REQUEST", // a request line that is not JSON
    "ERR_UNKNOWN_OP", // an op the bridge does not know
    "ERR_BAD_ARGS", // arguments missing or contradictory
    "ERR_NOT_LOOPBACK", // a local address that is not on loopback
    "ERR_EXISTS", // a listener of that name exists
    "ERR_NOT_FOUND", // no listener of that name
    "ERR_WHOIS", // the tailnet does not know an address
    "ERR_KEY", // the trusted-proxy key could not be made
    "ERR_FAILED", // anything else
    "ERR_TLS", // the client face's TLS certificate, key or client CA could not be loaded
    "ERR_SOCKS_REFUSED", // logged, never an exit: the proxy's SOCKS5 port refused a destination
    "ERR_DEVICE_RATE", // logged, never an exit: a device opened client connections faster than nats.device_limits allow
    "ERR_DEVICE_CONNECTIONS", // logged, never an exit: a device held the most client connections nats.device_limits allow
    "ERR_NO_GRANT", // logged, never an exit: the bridge refused a caller no grant or rule could admit
    "ERR_CLIENT_HANDSHAKE", // logged, never an exit: a caller broke the NATS handshake on the client face
    "ERR_CLIENT_CERT", // logged, never an exit: a client's certificate was missing, expired, from another CA or revoked (client face with a client CA)
    "ERR_WEBSOCKET_REFUSED", // logged, never an exit: a WebSocket upgrade from a foreign origin or for another Host was refused
    "ERR_LOCAL_FROM_HOST", // logged, never an exit: a local face refused a process on the node's own host
    "ERR_QUOTA_SUBS", // logged, never an exit: a client connection went past its identity's subscriptions
    "ERR_QUOTA_PAYLOAD", // logged, never an exit: a client connection published past its identity's largest message
  ],
} as const;

type Row = keyof typeof CODES;
type CodeOf<R extends Row> = (typeof CODES)[R][number];
export type ErrorCode = CodeOf<Row>;

const EXIT_OF_ROW: Record<Row, ExitCode> = {
  usage: ExitCode.usage,
  config: ExitCode.config,
  tailnet: ExitCode.tailnet,
  missingBinary: ExitCode.missingBinary,
  crashLoop: ExitCode.crashLoop,
  environment: ExitCode.environment,
  failure: ExitCode.failure,
  bridge: ExitCode.failure,
};

const ROW_OF = new Map<string, Row>(
  (Object.entries(CODES) as Array<[Row, readonly string[]]>).flatMap(([row, codes]) => codes.map((c) => [c, row] as const)),
);

/** The exit code for each code: the one map scripts and the README rely on. */
export const EXIT_CODE_OF: ReadonlyMap<ErrorCode, ExitCode> = new Map(
  [...ROW_OF].map(([code, row]) => [code as ErrorCode, EXIT_OF_ROW[row]]),
);

export function isErrorCode(code: string): code is ErrorCode {
  return ROW_OF.has(code);
}

type Options = { cause?: unknown };

export abstract class NatsTsnetError extends Error {
  readonly code: ErrorCode;
  readonly exitCode: ExitCode;
  constructor(code: ErrorCode, message: string, options?: Options) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.exitCode = EXIT_CODE_OF.get(code)!;
  }
}

/** A wrong command line: an argument, a flag, a name. */
export class UsageError extends NatsTsnetError {
  constructor(code: CodeOf<"usage">, message: string, options?: Options) {
    super(code, message, options);
  }
}

/** Bad configuration: the message names file:line:column where one is known. */
export class ConfigError extends NatsTsnetError {
  readonly file?: string;
  readonly line?: number;
  readonly column?: number;
  constructor(code: CodeOf<"config">, message: string, where: { file?: string; line?: number; column?: number } = {}, options?: Options) {
    super(code, message, options);
    this.file = where.file;
    this.line = where.line;
    this.column = where.column;
  }
}

/** The tailnet could not be joined: bad key, control server unreachable, missing tag. */
export class TailnetError extends NatsTsnetError {
  constructor(code: CodeOf<"tailnet">, message: string, options?: Options) {
    super(code, message, options);
  }
}

/** A required executable (bridge, nats-server, headscale) is missing, or a release file cannot unpack one. */
export class MissingBinaryError extends NatsTsnetError {
  constructor(message: string, options?: Options & { code?: CodeOf<"missingBinary"> }) {
    super(options?.code ?? "ERR_MISSING_BINARY", message, options);
  }
}

/** A supervised process kept crashing past its restart budget. */
export class CrashLoopError extends NatsTsnetError {
  constructor(message: string, options?: Options) {
    super("ERR_CRASH_LOOP", message, options);
  }
}

/** The host cannot do what was asked (no network namespaces, not root, ...). */
export class EnvironmentError extends NatsTsnetError {
  constructor(code: CodeOf<"environment">, message: string, options?: Options) {
    super(code, message, options);
  }
}

/** An operation on a running node failed (nats-server start, peer removal, account push). */
export class OperationError extends NatsTsnetError {
  constructor(code: CodeOf<"failure">, message: string, options?: Options) {
    super(code, message, options);
  }
}

/** The bridge refused a control request, or is gone. */
export class BridgeError extends NatsTsnetError {
  constructor(code: CodeOf<"bridge">, message: string, options?: Options) {
    super(code, message, options);
  }
}

type CodedClass = new (code: never, message: string) => NatsTsnetError;
const CLASS_OF_ROW: Record<Exclude<Row, "missingBinary" | "crashLoop">, CodedClass> = {
  usage: UsageError,
  config: ConfigError,
  tailnet: TailnetError,
  environment: EnvironmentError,
  failure: OperationError,
  bridge: BridgeError,
};

/**
 * The error for a code that arrived from outside this process (a bridge's
 * answer or fatal report): its own class when the code is known, otherwise
 * ERR_BRIDGE with the foreign code kept in the message.
 */
export function errorFromCode(code: string, message: string): NatsTsnetError {
  const row = ROW_OF.get(code);
  if (!row) return new BridgeError("ERR_BRIDGE", `${message} (${code || "no code"})`);
  if (row === "missingBinary") return new MissingBinaryError(message, { code: code as CodeOf<"missingBinary"> });
  if (row === "crashLoop") return new CrashLoopError(message);
  const Cls = CLASS_OF_ROW[row] as new (code: string, message: string) => NatsTsnetError;
  return new Cls(code, message);
}
