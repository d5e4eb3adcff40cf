// Public surface of the configuration module; import from here, not from the files behind it.

export {
  loadConfig,
  redactConfig,
  resolveAuthKey,
  resolveClusterKey,
  sanitizeHostname,
  ENV_VARS,
  type Config,
  type LoadOptions,
  type LogFormat,
  type LogLevel,
  type AuthConfig,
} from "./load.ts";
export { renderNatsServerConfig, natsServerConfPath, q, LOOPBACK, type NodePieces, type AuthPieces, type RouteSecret } from "./render.ts";
export { configJsonSchema, type ConfigInput } from "./schema.ts";
export { formatDuration, parseDuration, parseSize } from "./units.ts";
export {
  accountBudgets,
  budgetAccounts,
  identityQuota,
  limitBytes,
  ACCOUNT_DEFAULTS,
  IDENTITY_DEFAULTS,
  OPERATOR_ACCOUNT_DEFAULTS,
  type AccountBudget,
  type HostCapacity,
  type IdentityQuota,
} from "./budgets.ts";
