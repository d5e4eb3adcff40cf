// The control plane's public surface for everything outside controlplane/:
// the local tailnet (localtailnet/), the benchmarks and the tests import from
// here, never from the files behind it, so those files can move freely.
// The product itself (the CLI and the node) does not use this file.

export * from "./config/mod.ts";
export { SCHEMA_FILE, schemaFileText } from "./config/write-schema.ts";
export {
  CODES,
  EXIT_CODE_OF,
  ExitCode,
  isErrorCode,
  errorFromCode,
  NatsTsnetError,
  UsageError,
  ConfigError,
  TailnetError,
  MissingBinaryError,
  CrashLoopError,
  EnvironmentError,
  OperationError,
  BridgeError,
  type ErrorCode,
} from "./errors.ts";
export { binaryPath, REPO_ROOT, type BinaryName } from "./binaries.ts";
export { V8_FLAGS } from "./v8-flags.ts";
export { createLogger, type Logger } from "./log.ts";
export { eachLine, exited, spawnChild, terminate } from "./supervise/spawn.ts";
export {
  Bridge,
  loginLine,
  type BridgeOptions,
  type Device,
  type Observed,
  type TailnetStatus,
  type WhoIs,
} from "./bridge-client/client.ts";
export { diffMembers, dialTargets, membersOf, routeAlias, type Member } from "./cluster/members.ts";
export { nativeSigner, decodeVerified } from "./auth/signer.ts";
export {
  decide,
  decideLocal,
  grantGate,
  identityOf,
  inboxPrefix,
  jetstreamSubjects,
  type Allowed,
  type Decision,
  type Identity,
} from "./auth/policy.ts";
export {
  addAccount,
  addRole,
  addSigningKey,
  addUser,
  importNsc,
  initStore,
  listUsers,
  permissionsOf,
  readStore,
  reissueUsers,
  removeSigningKey,
  revokeAllBefore,
  revokeUser,
  adminCredsPath,
} from "./auth/operator.ts";
export {
  accountSigner,
  accountView,
  isRevoked,
  operatorView,
  userSigner,
  userState,
  type AccountView,
  type KeySource,
  type OperatorView,
  type Role,
} from "./auth/keys.ts";
export { nscKeys } from "./auth/operator-nsc.ts";
export { deepMerge } from "./util/objects.ts";
export { runProgram } from "./cli/main.ts";
export { positiveInt } from "./cli/options.ts";
export { classifyServerLine } from "./node/store-health.ts";
export { issueCert, type CertFiles, type CertRequest } from "./tls-certs.ts";
