// Loading: YAML file < environment < programmatic overrides, validated as one
// merged value so cross-field rules see what will actually run, while every
// problem is reported against the source that supplied the offending value.

import { readFileSync, statSync } from "node:fs";
import { X509Certificate, createPrivateKey } from "node:crypto";
import { isIP } from "node:net";
import { hostname as osHostname } from "node:os";
import { dirname, join, resolve } from "node:path";
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from "yaml";
import type { z } from "zod";
import { ConfigError } from "../errors.ts";
import {
  ConfigSchema,
  type AuthSchema,
  type ConfigInput,
  type LOG_FORMATS,
  type LOG_LEVELS,
  type ParsedInput,
  type TlsSchema,
} from "./schema.ts";
import { parseDuration, parseSize } from "./units.ts";
import { checkLoginTags, loginIssues, normalizeLogin, CLIENT_SECRET_PREFIX, type LoginField, type TailnetLogin } from "./login.ts";
import { deepFreeze, deepMerge, isPlainObject } from "../util/objects.ts";

export type LogFormat = (typeof LOG_FORMATS)[number];
export type LogLevel = (typeof LOG_LEVELS)[number];
export type AuthConfig = z.output<typeof AuthSchema>;

/**
 * The validated configuration. Keys mirror the YAML file; durations become
 * `*_ms` numbers and sizes `*_bytes` numbers (null = unset, nats-server's own
 * default); optional strings stay "" when unset; every path is absolute.
 */
export interface Config {
  readonly hostname: string;
  readonly state_dir: string;
  readonly tailnet: {
    readonly control_url: string;
    readonly auth_key: string;
    readonly auth_key_file: string;
    /** OAuth client secret; the node then advertises exactly `tags`. */
    readonly client_secret: string;
    readonly client_secret_file: string;
    /** Workload identity federation: client_id with id_token (or id_token_file) or audience. */
    readonly client_id: string;
    readonly id_token: string;
    readonly id_token_file: string;
    readonly audience: string;
    readonly cluster_key_file: string;
    readonly tags: readonly string[];
    readonly cluster_tag: string;
    readonly ephemeral: boolean;
    readonly up_timeout_ms: number;
  };
  readonly nats: {
    readonly server_name: string;
    readonly cluster_name: string;
    readonly client_port: number;
    readonly cluster_port: number;
    readonly monitor_port: number;
    /** The client face on addresses of this host (client_bind_host included, as "client-bind-host"). */
    readonly local_faces: ReadonlyArray<{ readonly name: string; readonly listen: string }>;
    /** 0: no WebSocket face. */
    readonly websocket_port: number;
    readonly websocket_origins: readonly string[];
    readonly loopback: {
      readonly client_port: number;
      readonly cluster_port: number;
      readonly monitor_port: number;
    };
    readonly jetstream: {
      readonly enabled: boolean;
      readonly store_dir: string;
      readonly sync_interval_ms: "always" | number;
      readonly max_memory_bytes: number | null;
      readonly max_file_bytes: number | null;
    };
    /** Per client device on the tailnet client port; 0: no limit (connect_burst is at least 1). */
    readonly device_limits: {
      readonly max_connections: number;
      readonly connect_rate: number;
      readonly connect_burst: number;
    };
    /** TLS on the client port; null: plain NATS. Paths are absolute. */
    readonly tls: TlsConfig | null;
    readonly include: string;
    readonly lame_duck_duration_ms: number;
    readonly lame_duck_grace_period_ms: number;
    readonly max_payload_bytes: number | null;
    readonly standalone: boolean;
    readonly debug: boolean;
    readonly trace: boolean;
  };
  readonly log: { readonly format: LogFormat; readonly level: LogLevel };
  readonly auth: AuthConfig;
  readonly observe: { readonly loopback_port: number };
  /** Where values came from, for the startup log line. */
  readonly source: { readonly file?: string; readonly env: readonly string[] };
}

export interface TlsConfig {
  readonly cert_file: string;
  readonly key_file: string;
  readonly tailnet_cert: boolean;
  readonly min_version: "1.2" | "1.3";
  readonly client_ca_file: string;
  readonly revoked: readonly string[];
}

/** Environment overrides, in increasing precedence (a later variable for the same key wins). */
export const ENV_VARS: Readonly<Record<string, readonly string[]>> = {
  TS_AUTHKEY: ["tailnet", "auth_key"],
  TS_CLIENT_SECRET: ["tailnet", "client_secret"],
  TS_CLIENT_ID: ["tailnet", "client_id"],
  TS_ID_TOKEN: ["tailnet", "id_token"],
  TS_AUDIENCE: ["tailnet", "audience"],
  TS_CONTROL_URL: ["tailnet", "control_url"],
  NATS_TSNET_CONTROL_URL: ["tailnet", "control_url"],
  NATS_TSNET_HOSTNAME: ["hostname"],
  NATS_TSNET_STATE_DIR: ["state_dir"],
  NATS_TSNET_LOG_FORMAT: ["log", "format"],
  NATS_TSNET_LOG_LEVEL: ["log", "level"],
  // The reference design's names: a local face for containers, and a cluster bind that is refused.
  NATS_TSNET_CLIENT_BIND_HOST: ["nats", "client_bind_host"],
  NATS_TSNET_CLUSTER_BIND_HOST: ["nats", "cluster_bind_host"],
};

export interface LoadOptions {
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** Highest precedence (CLI flags); undefined values are ignored. Relative paths resolve against the cwd. */
  overrides?: ConfigInput;
}

type Path = readonly PropertyKey[];
type Raw = Record<string, unknown>;
interface Issue {
  path: Path;
  message: string;
  atKey?: boolean;
}

interface Layer {
  kind: "file" | "env" | "override";
  data: Raw;
  /** Relative paths supplied by this layer resolve against it. */
  baseDir: string;
  envVarFor?: Map<string, string>;
}

export function loadConfig(opts: LoadOptions = {}): Config {
  const cwd = process.cwd();
  const file = opts.file === undefined ? undefined : resolve(opts.file);
  const yaml = file === undefined ? undefined : readYaml(file);
  const layers: Layer[] = [];
  if (file && yaml) layers.push({ kind: "file", data: yaml.data, baseDir: dirname(file) });
  layers.push(envLayer(opts.env ?? process.env, cwd));
  layers.push({ kind: "override", data: pruneNullish(opts.overrides ?? {}) as Raw, baseDir: cwd });

  const fail = (issues: Issue[]): never => {
    throw toConfigError(issues, layers, file, yaml);
  };
  const parsed = ConfigSchema.safeParse(
    layers.reduce<Raw>((acc, l) => deepMerge(acc, l.data), {}),
    { error: friendlyMessage },
  );
  if (!parsed.success) fail(parsed.error.issues.flatMap(splitUnknownKeys));
  const { config, issues } = finalize(parsed.data!, layers, file ? dirname(file) : cwd);
  if (issues.length) fail(issues);
  // A key minted with the tags advertised needs some: said now, not after tsnet starts.
  checkLoginTags(staticLogin(config.tailnet), config.tailnet.tags, { tagsName: "tailnet.tags", clusterTag: config.tailnet.cluster_tag });
  // Only variables that decided a value: not ones shadowed by another variable or an override.
  const env = layers.find((l) => l.kind === "env")!;
  const envApplied = Object.entries(ENV_VARS)
    .filter(([name, path]) => env.envVarFor!.get(path.join(".")) === name && topLayer(layers, path) === env)
    .map(([name]) => name);
  return deepFreeze({ ...config, source: { ...(file && { file }), env: envApplied } });
}

/** Default hostname: the OS's short name, reduced to what a tailnet device name and server_name allow. */
export function sanitizeHostname(raw: string): string {
  const name = raw
    .split(".")[0]!
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .slice(0, 63)
    .replace(/^-+|-+$/g, "");
  return name || "nats-tsnet";
}

/** The secrets a config may hold in itself; redactConfig hides them. */
const SECRET_KEYS = ["auth_key", "client_secret", "id_token"] as const;

/** A copy that is safe to log. */
export function redactConfig(config: Config): Config {
  const set = SECRET_KEYS.filter((k) => config.tailnet[k]);
  if (!set.length) return config;
  return deepFreeze({ ...config, tailnet: { ...config.tailnet, ...Object.fromEntries(set.map((k) => [k, "<redacted>"])) } });
}

/** The auth key to log in with, read only when needed so a rotated key file is picked up on restart. */
export function resolveAuthKey(config: Config): string | undefined {
  const { auth_key, auth_key_file } = config.tailnet;
  return auth_key || readSecretFile("auth_key_file", auth_key_file);
}

/**
 * Everything to log in with (auth key, OAuth client secret, or workload
 * identity), key files read now, so that rotated ones are picked up on
 * restart; a client secret that came in auth_key_file must find tags too.
 */
export function resolveLogin(config: Config): TailnetLogin {
  const t = config.tailnet;
  const clientSecret = t.client_secret || readSecretFile("client_secret_file", t.client_secret_file);
  if (clientSecret && !clientSecret.startsWith(CLIENT_SECRET_PREFIX)) {
    throw new ConfigError(
      "ERR_CONFIG_INVALID",
      `tailnet.client_secret_file ${t.client_secret_file} holds no OAuth client secret (${CLIENT_SECRET_PREFIX}…)`,
      { file: t.client_secret_file },
    );
  }
  const login = normalizeLogin({
    authKey: resolveAuthKey(config),
    clientSecret,
    clientId: t.client_id,
    idToken: t.id_token || readSecretFile("id_token_file", t.id_token_file),
    audience: t.audience,
  });
  checkLoginTags(login, t.tags, { tagsName: "tailnet.tags", clusterTag: t.cluster_tag });
  return login;
}

/** A secret from tailnet.<key> (a file), trimmed; undefined without a file. */
function readSecretFile(key: string, file: string): string | undefined {
  if (!file) return undefined;
  let text: string;
  try {
    text = readFileSync(file, "utf8").trim();
  } catch (err) {
    throw new ConfigError("ERR_CONFIG_READ", `cannot read tailnet.${key} ${file}: ${(err as Error).message}`, { file }, { cause: err });
  }
  if (!text) throw new ConfigError("ERR_CONFIG_READ", `tailnet.${key} ${file} is empty`, { file });
  return text;
}

/** The login as far as it is known without reading files: enough to see whether a key will be minted. */
function staticLogin(t: Config["tailnet"]): TailnetLogin {
  return normalizeLogin({
    authKey: t.auth_key,
    clientSecret: t.client_secret || (t.client_secret_file ? CLIENT_SECRET_PREFIX : ""),
    clientId: t.client_id,
  });
}

/**
 * The cluster key (tailnet.cluster_key_file), or undefined without one. It
 * is a secret that admits routes, so like an ssh key it must not be
 * readable by anyone but its owner; and short keys are refused rather
 * than stretched.
 */
export function resolveClusterKey(config: Config): string | undefined {
  const file = config.tailnet.cluster_key_file;
  if (!file) return undefined;
  const fail = (why: string, cause?: unknown) =>
    new ConfigError("ERR_CLUSTER_KEY", `tailnet.cluster_key_file ${file} ${why}`, { file }, cause ? { cause } : undefined);
  let key: string;
  try {
    if ((statSync(file).mode & 0o077) !== 0) throw fail("is readable by group or others: chmod 600 it");
    key = readFileSync(file, "utf8").trim();
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw fail(`cannot be read: ${(err as Error).message}`, err);
  }
  if (key.length < 32) throw fail(`holds ${key.length} characters; a cluster key needs at least 32 (head -c 32 /dev/urandom | base64)`);
  return key;
}

// ---- reading -------------------------------------------------------------------------------

interface Yaml {
  doc: Document;
  lines: LineCounter;
  data: Raw;
}

function readYaml(file: string): Yaml {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError("ERR_CONFIG_READ", `cannot read config file ${file}: ${(err as Error).message}`, { file }, { cause: err });
  }
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false });
  if (doc.errors.length) {
    const where = doc.errors.map((e) => ({ ...lines.linePos(e.pos[0]), message: e.message.split("\n")[0] }));
    throw new ConfigError("ERR_CONFIG_SYNTAX", where.map((w) => `${file}:${w.line}:${w.col}: ${w.message}`).join("\n"), {
      file,
      line: where[0]!.line,
      column: where[0]!.col,
    });
  }
  // An empty file, or a section whose every key is commented out, means "all defaults".
  const data = pruneNullish(doc.toJS() ?? {});
  return { doc, lines, data: data as Raw };
}

function envLayer(env: NodeJS.ProcessEnv, cwd: string): Layer {
  const data: Raw = {};
  const envVarFor = new Map<string, string>();
  for (const [name, path] of Object.entries(ENV_VARS)) {
    const value = env[name];
    // An exported-but-empty variable is how shells say "unset".
    if (value === undefined || value === "") continue;
    setIn(data, path, value);
    envVarFor.set(path.join("."), name);
  }
  return { kind: "env", data, baseDir: cwd, envVarFor };
}

// ---- turning the parsed input into a Config, with the rules zod cannot express alone ------

function finalize(p: ParsedInput, layers: Layer[], defaultBase: string): { config: Omit<Config, "source">; issues: Issue[] } {
  const issues: Issue[] = [];
  const problem = (path: Path, message: string) => issues.push({ path, message });
  const top = (path: Path) => topLayer(layers, path);
  const abs = (path: Path, value: string) => (value ? resolve(top(path)?.baseDir ?? defaultBase, value) : "");
  const ms = (path: Path, text: string, allowZero = false) => {
    const v = parseDuration(text)!;
    if (v === 0 && !allowZero) problem(path, "must be longer than 0");
    return v;
  };
  const bytes = (value: string | number) => parseSize(value) ?? null;

  const t = p.tailnet;
  const n = p.nats;
  const js = n.jetstream;
  const hostname = p.hostname ?? sanitizeHostname(osHostname());
  const state_dir = abs(["state_dir"], p.state_dir);

  // A secret and its file: the later source wins; both in one source is a mistake worth stopping for.
  const valueOrFile = (key: "auth_key" | "client_secret" | "id_token"): [string, string] => {
    const fileKey = `${key}_file` as const;
    const [value, file] = [t[key], t[fileKey]];
    if (!value || !file) return [value, file];
    const [a, f] = [layers.indexOf(top(["tailnet", key])!), layers.indexOf(top(["tailnet", fileKey])!)];
    if (a === f) problem(["tailnet", fileKey], `set either ${key} or ${fileKey}, not both`);
    return a > f ? [value, ""] : ["", file];
  };
  const [auth_key, auth_key_file] = valueOrFile("auth_key");
  const [client_secret, client_secret_file] = valueOrFile("client_secret");
  const [id_token, id_token_file] = valueOrFile("id_token");
  // One way to log in, and workload identity's fields together; a file not read yet counts as set.
  const secretIsKey = auth_key.startsWith(CLIENT_SECRET_PREFIX);
  const loginKey: Record<LoginField, string> = {
    authKey: auth_key_file ? "auth_key_file" : "auth_key",
    clientSecret:
      secretIsKey && !client_secret && !client_secret_file ? "auth_key" : client_secret_file ? "client_secret_file" : "client_secret",
    clientId: "client_id",
    idToken: id_token_file ? "id_token_file" : "id_token",
    audience: "audience",
  };
  if (secretIsKey && (client_secret || client_secret_file))
    problem(["tailnet", "auth_key"], `holds an OAuth client secret, and tailnet.${loginKey.clientSecret} holds one too`);
  const presence = {
    authKey: secretIsKey ? "" : auth_key || (auth_key_file ? (true as const) : ""),
    clientSecret: client_secret || (client_secret_file ? (true as const) : secretIsKey ? auth_key : ""),
    clientId: t.client_id,
    idToken: id_token || (id_token_file ? (true as const) : ""),
    audience: t.audience,
  };
  const loginName = (f: LoginField) => `tailnet.${loginKey[f]}${f === "idToken" && !id_token_file ? " (or id_token_file)" : ""}`;
  for (const { field, message } of loginIssues(presence, loginName)) problem(["tailnet", loginKey[field]], message);
  distinctPorts(
    ["nats"],
    { client_port: n.client_port, cluster_port: n.cluster_port, monitor_port: n.monitor_port, websocket_port: n.websocket_port },
    problem,
  );
  distinctPorts(["nats", "loopback"], n.loopback, problem);
  const clash = Object.entries(n.loopback).find(([, port]) => port === p.observe.loopback_port);
  if (clash) problem(["observe", "loopback_port"], `port ${clash[1]} is already used by nats.loopback.${clash[0]}`);

  const lame_duck_duration_ms = ms(["nats", "lame_duck_duration"], n.lame_duck_duration);
  if (lame_duck_duration_ms < 30_000) problem(["nats", "lame_duck_duration"], "must be at least 30s (nats-server's minimum)");
  const lame_duck_grace_period_ms = ms(["nats", "lame_duck_grace_period"], n.lame_duck_grace_period, true);
  if (lame_duck_grace_period_ms >= lame_duck_duration_ms) {
    problem(["nats", "lame_duck_grace_period"], "must be shorter than nats.lame_duck_duration (nats-server refuses to start otherwise)");
  }
  const max_payload_bytes = bytes(n.max_payload);
  if (max_payload_bytes !== null && max_payload_bytes > 2 ** 31 - 1) problem(["nats", "max_payload"], "must be below 2GB");

  const operatorDir = abs(["auth", "operator_dir"], p.auth.operator_dir);
  if (p.auth.mode === "operator" && !operatorDir)
    problem(["auth", "operator_dir"], "auth mode operator needs operator_dir (made by 'nats-tsnet auth init')");
  else if (operatorDir && !isFile(join(operatorDir, "operator.jwt")))
    problem(["auth", "operator_dir"], `no operator.jwt in ${operatorDir}`);
  const include = abs(["nats", "include"], n.include);
  if (include) {
    // nats-server's include syntax has no escapes, so these cannot be written.
    if (/["\r\n]/.test(include)) problem(["nats", "include"], "path must not contain double quotes or line breaks");
    else if (!isFile(include)) problem(["nats", "include"], `no such file: ${include}`);
  }

  const tls = n.tls ? tlsConfig(n.tls, abs, problem) : null;
  const local_faces = localFaces(n, problem);
  if (n.cluster_bind_host)
    problem(
      ["nats", "cluster_bind_host"],
      "routes run only over the tailnet, where each peer's device and cluster tag are checked; a route on a host address would admit whatever reaches it. Leave it unset: nodes cluster over WireGuard by themselves",
    );
  p.auth.rules.forEach((r, i) => {
    const at: Path = ["auth", "rules", i];
    if (r.faces.length && (r.users.length || r.tags.length || r.certs.length))
      problem([...at, "faces"], "a rule for local faces names no users, tags or certs: callers there are not tailnet devices");
    for (const f of r.faces)
      if (!local_faces.some((l) => l.name === f)) problem([...at, "faces"], `no local face named ${f} in nats.local_faces`);
    if (r.sources.length && !r.faces.length) problem([...at, "sources"], "sources narrows a rule for local faces; name the faces");
    for (const [j, c] of r.sources.entries()) if (!validCidr(c)) problem([...at, "sources", j], `${c} is not a CIDR`);
  });
  // A rule naming certificates can only match where clients present them.
  p.auth.rules.forEach((r, i) => {
    if (r.certs.length && !tls?.client_ca_file)
      problem(["auth", "rules", i, "certs"], "names client certificates, which need nats.tls.client_ca_file (mTLS)");
  });

  const config = {
    hostname,
    state_dir,
    tailnet: {
      control_url: t.control_url,
      auth_key,
      auth_key_file: abs(["tailnet", "auth_key_file"], auth_key_file),
      client_secret,
      client_secret_file: abs(["tailnet", "client_secret_file"], client_secret_file),
      client_id: t.client_id,
      id_token,
      id_token_file: abs(["tailnet", "id_token_file"], id_token_file),
      audience: t.audience,
      tags: t.tags,
      cluster_tag: t.cluster_tag,
      cluster_key_file: abs(["tailnet", "cluster_key_file"], t.cluster_key_file),
      ephemeral: t.ephemeral,
      up_timeout_ms: ms(["tailnet", "up_timeout"], t.up_timeout),
    },
    nats: {
      server_name: n.server_name || hostname,
      cluster_name: n.cluster_name || t.cluster_tag.slice("tag:".length),
      client_port: n.client_port,
      cluster_port: n.cluster_port,
      monitor_port: n.monitor_port,
      websocket_port: n.websocket_port,
      local_faces,
      websocket_origins: n.websocket_origins,
      loopback: n.loopback,
      jetstream: {
        enabled: js.enabled,
        // nats-server adds its own "jetstream" level below this directory.
        store_dir: abs(["nats", "jetstream", "store_dir"], js.store_dir) || join(state_dir, "jetstream"),
        sync_interval_ms:
          js.sync_interval === "always" ? ("always" as const) : ms(["nats", "jetstream", "sync_interval"], js.sync_interval),
        max_memory_bytes: bytes(js.max_memory),
        max_file_bytes: bytes(js.max_file),
      },
      device_limits: n.device_limits,
      tls,
      include,
      lame_duck_duration_ms,
      lame_duck_grace_period_ms,
      max_payload_bytes,
      standalone: n.standalone,
      debug: n.debug,
      trace: n.trace,
    },
    log: p.log,
    auth: { ...p.auth, operator_dir: operatorDir } as AuthConfig,
    observe: p.observe,
  };
  return { config, issues };
}

/**
 * nats.local_faces and client_bind_host, each address checked: an IP of
 * this host with a port, never loopback (no back door) nor every interface.
 */
function localFaces(
  n: { local_faces: Array<{ name: string; listen: string }>; client_bind_host: string; client_port: number },
  problem: (path: Path, message: string) => void,
): Array<{ name: string; listen: string }> {
  const faces = n.local_faces.map((f, i) => ({ ...f, at: ["nats", "local_faces", i, "listen"] as Path }));
  if (n.client_bind_host) {
    const host = n.client_bind_host.includes(":") ? `[${n.client_bind_host}]` : n.client_bind_host;
    faces.push({ name: "client-bind-host", listen: `${host}:${n.client_port}`, at: ["nats", "client_bind_host"] });
  }
  const seen = new Set<string>();
  for (const f of faces) {
    const why = localAddressIssue(f.listen);
    if (why) problem(f.at, why);
    if (seen.has(f.name)) problem(f.at, `local face ${f.name} is named twice`);
    seen.add(f.name);
  }
  return faces.map(({ name, listen }) => ({ name, listen }));
}

function localAddressIssue(listen: string): string | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):(\d{1,5})$/.exec(listen);
  const ip = m?.[1] ?? m?.[2] ?? "";
  if (!m || !isIP(ip) || Number(m[3]) < 1 || Number(m[3]) > 65535) return `${listen} is not an IP address and port (e.g. 172.17.0.1:4222)`;
  const v4 = ip.replace(/^::ffff:/i, "");
  if (/^127\./.test(v4) || ip === "::1") return `${listen} is loopback, which stays closed to clients (loopback is no back door)`;
  if (v4 === "0.0.0.0" || /^(::|0:0:0:0:0:0:0:0)$/.test(ip)) return `${listen} would listen on every interface; name one address`;
  return undefined;
}

function validCidr(c: string): boolean {
  const [ip, bits] = c.split("/");
  const v = isIP(ip ?? "");
  return v !== 0 && Number(bits) >= 0 && Number(bits) <= (v === 4 ? 32 : 128);
}

/**
 * nats.tls with absolute paths, its files checked now: a certificate that
 * does not load or does not match its key stops the node before it starts,
 * with the key's path, rather than failing every client's handshake.
 */
function tlsConfig(
  t: z.infer<typeof TlsSchema>,
  abs: (path: Path, p: string) => string,
  problem: (path: Path, message: string) => void,
): TlsConfig {
  const at = (k: string): Path => ["nats", "tls", k];
  const out = {
    ...t,
    cert_file: abs(at("cert_file"), t.cert_file),
    key_file: abs(at("key_file"), t.key_file),
    client_ca_file: abs(at("client_ca_file"), t.client_ca_file),
  };
  const files = Boolean(out.cert_file || out.key_file);
  if (files && t.tailnet_cert) problem(at("tailnet_cert"), "set cert_file and key_file, or tailnet_cert, not both");
  else if (!files && !t.tailnet_cert) problem(at("cert_file"), "TLS needs cert_file and key_file, or tailnet_cert: true");
  else if (files && !out.cert_file) problem(at("cert_file"), "key_file needs cert_file");
  else if (files && !out.key_file) problem(at("key_file"), "cert_file needs key_file");
  else if (files) {
    const why = tlsPairIssue(out.cert_file, out.key_file);
    if (why) problem(at(why.key), why.message);
  }
  if (out.client_ca_file) {
    const why = pemIssue(out.client_ca_file, (pem) => new X509Certificate(pem));
    if (why) problem(at("client_ca_file"), why);
  } else if (t.revoked.length) problem(at("revoked"), "revoked needs client_ca_file (it names client certificates)");
  return out;
}

/** Why a PEM file cannot be used, or undefined. */
function pemIssue(file: string, parse: (pem: string) => unknown): string | undefined {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    return `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`;
  }
  try {
    parse(text);
    return undefined;
  } catch (e) {
    return `${file} is not a usable PEM file: ${(e as Error).message}`;
  }
}

function tlsPairIssue(certFile: string, keyFile: string): { key: string; message: string } | undefined {
  const certWhy = pemIssue(certFile, (pem) => new X509Certificate(pem));
  if (certWhy) return { key: "cert_file", message: certWhy };
  const keyWhy = pemIssue(keyFile, (pem) => createPrivateKey(pem));
  if (keyWhy) return { key: "key_file", message: keyWhy };
  const cert = new X509Certificate(readFileSync(certFile));
  if (!cert.checkPrivateKey(createPrivateKey(readFileSync(keyFile)))) {
    return { key: "key_file", message: `${keyFile} is not the key of the certificate in ${certFile}` };
  }
  if (Date.parse(cert.validTo) < Date.now())
    return { key: "cert_file", message: `the certificate in ${certFile} expired on ${cert.validTo}` };
  return undefined;
}

function distinctPorts(at: Path, ports: Record<string, number>, problem: (path: Path, message: string) => void): void {
  const seen = new Map<number, string>();
  for (const [key, port] of Object.entries(ports)) {
    if (port === 0) continue;
    const other = seen.get(port);
    if (other) problem([...at, key], `port ${port} is already used by ${[...at, other].join(".")}`);
    else seen.set(port, key);
  }
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

// ---- reporting -----------------------------------------------------------------------------

function friendlyMessage(iss: { code?: string; expected?: string; values?: unknown[]; input?: unknown }): string | undefined {
  if (iss.code === "invalid_type") {
    const expected =
      { object: "a mapping", array: "a list", number: "a number", int: "an integer" }[iss.expected ?? ""] ?? `a ${iss.expected}`;
    return `expected ${expected}, got ${kindOf(iss.input)}`;
  }
  if (iss.code === "invalid_value") return `must be one of ${iss.values!.map((v) => JSON.stringify(v)).join(", ")}`;
  return undefined;
}

function kindOf(v: unknown): string {
  if (v === null || v === undefined) return "nothing";
  if (Array.isArray(v)) return "a list";
  return typeof v === "object" ? "a mapping" : `a ${typeof v}`;
}

function splitUnknownKeys(iss: z.core.$ZodIssue): Issue[] {
  if (iss.code !== "unrecognized_keys") return [{ path: iss.path, message: iss.message }];
  return iss.keys.map((key) => {
    const near = closest(key, knownKeys(iss.path));
    return { path: [...iss.path, key], message: `unknown key${near ? ` (did you mean ${JSON.stringify(near)}?)` : ""}`, atKey: true };
  });
}

function knownKeys(path: Path): string[] {
  let schema: unknown = ConfigSchema;
  for (const seg of path) schema = unwrap(schema).shape?.[seg as string];
  return Object.keys(unwrap(schema).shape ?? {});
}

function unwrap(schema: unknown): { shape?: Record<string, unknown> } {
  let s = schema as { shape?: Record<string, unknown>; _zod?: { def: { innerType?: unknown } } } | undefined;
  while (s?._zod?.def.innerType) s = s._zod.def.innerType as typeof s;
  return s ?? {};
}

function closest(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c);
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length]!;
}

function toConfigError(issues: Issue[], layers: Layer[], file: string | undefined, yaml: Yaml | undefined): ConfigError {
  const order = { file: 0, env: 1, override: 2 };
  const reports = issues
    .map((iss) => {
      const dotted = iss.path.reduce<string>(
        (s, seg) => (typeof seg === "number" ? `${s}[${seg}]` : s ? `${s}.${String(seg)}` : String(seg)),
        "",
      );
      const layer = topLayer(layers, iss.path);
      const kind = layer?.kind ?? "file";
      if (kind === "env") {
        const name = layer!.envVarFor!.get(iss.path.join("."))!;
        return { kind, line: 0, col: 0, text: `${name} (${dotted}): ${iss.message}` };
      }
      if (kind === "override") return { kind, line: 0, col: 0, text: `override ${dotted}: ${iss.message}` };
      if (!file || !yaml) return { kind, line: 0, col: 0, text: `${dotted || "config"}: ${iss.message}` };
      const { line, col } = locate(yaml, iss.path, iss.atKey);
      return { kind, line, col, text: `${file}:${line}:${col}: ${dotted || "(document)"}: ${iss.message}` };
    })
    .sort((a, b) => order[a.kind] - order[b.kind] || a.line - b.line || a.col - b.col);
  const first = reports[0]!;
  return new ConfigError(
    first.kind === "env" ? "ERR_CONFIG_ENV" : "ERR_CONFIG_INVALID",
    reports.map((r) => r.text).join("\n"),
    first.kind === "file" && file ? { file, line: first.line, column: first.col } : {},
  );
}

/**
 * Position of the value at `path`, or of its key when asked (unknown keys) or
 * when the value has no position; a path that runs out (a missing key)
 * points at the deepest key that exists.
 */
function locate({ doc, lines }: Yaml, path: Path, atKey = false): { line: number; col: number } {
  let node: unknown = doc.contents;
  let key: Node | undefined;
  for (const seg of path) {
    if (isAlias(node)) node = node.resolve(doc);
    let next: unknown;
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg));
      if (pair) [key, next] = [pair.key as Node, pair.value];
    } else if (isSeq(node) && typeof seg === "number") {
      next = node.items[seg];
    }
    if (next === undefined) {
      node = undefined;
      break;
    }
    node = next;
  }
  const hasRange = (n: unknown): n is Node => !!n && !!(n as Node).range && !(isScalar(n) && n.value === null);
  const target = !atKey && hasRange(node) ? node : (key ?? (hasRange(doc.contents) ? doc.contents : undefined));
  return target?.range ? lines.linePos(target.range[0]) : { line: 1, col: 1 };
}

// ---- small object helpers ------------------------------------------------------------------

function topLayer(layers: Layer[], path: Path): Layer | undefined {
  return layers.findLast((l) => hasIn(l.data, path));
}

function hasIn(data: unknown, path: Path): boolean {
  let v = data;
  for (const seg of path) {
    if (v === null || typeof v !== "object" || !(seg in v)) return false;
    v = (v as Record<PropertyKey, unknown>)[seg];
  }
  return true;
}

function setIn(data: Raw, path: readonly string[], value: unknown): void {
  let o = data;
  for (const seg of path.slice(0, -1)) o = (o[seg] ??= {}) as Raw;
  o[path.at(-1)!] = value;
}

function pruneNullish(v: unknown): unknown {
  if (!isPlainObject(v)) return v;
  return Object.fromEntries(
    Object.entries(v)
      .filter(([, x]) => x !== null && x !== undefined)
      .map(([k, x]) => [k, pruneNullish(x)]),
  );
}
