// Public surface of the configuration module; import from here, not from the files behind it.

export {
  loadConfig,
  redactConfig,
  resolveAuthKey,
  resolveClusterKey,
  resolveLogin,
  sanitizeHostname,
  ENV_VARS,
  type Config,
  type LoadOptions,
  type LogFormat,
  type LogLevel,
  type AuthConfig,
  type TlsConfig,
} from "./load.ts";
export { renderNatsServerConfig, natsServerConfPath, q, LOOPBACK, type NodePieces, type AuthPieces, type RouteSecret } from "./render.ts";
export { configJsonSchema, TAG_PATTERN, type ConfigInput } from "./schema.ts";
export {
  checkLoginTags,
  loginFromEnv,
  loginIssues,
  loginMethod,
  normalizeLogin,
  CLIENT_SECRET_PREFIX,
  LOGIN_ENV_VARS,
  LOGIN_FIELDS,
  type LoginField,
  type LoginMethod,
  type TailnetLogin,
} from "./login.ts";
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
