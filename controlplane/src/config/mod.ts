// Public surface of the configuration module; import from here, not from the files behind it.

export {
  loadConfig,
  redactConfig,
  resolveAuthKey,
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
