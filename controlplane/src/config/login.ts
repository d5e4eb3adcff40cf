// How a device logs in to the tailnet the first time: an auth key, an OAuth
// client secret that mints one, or workload identity federation (a client
// ID with an ID token, or with an audience to ask the cloud for one). tsnet
// checks these rules only once it is starting, with messages about CLI
// flags; here they are checked before anything starts, in the user's terms.
import { ConfigError } from "../errors.ts";

/** Every Tailscale OAuth client secret starts so; tsnet takes such an auth key as a client secret. */
export const CLIENT_SECRET_PREFIX = "tskey-client-";

/**
 * What the bridge hands tsnet for a first login (dataplane/bridge/login.go,
 * Login). It travels on a pipe, never on a command line; its wire shape is
 * the "login" part of dataplane/bridge/testdata/control-protocol.json.
 */
export interface TailnetLogin {
  authKey?: string;
  clientSecret?: string;
  clientId?: string;
  idToken?: string;
  audience?: string;
}
export type LoginField = keyof TailnetLogin;

/** The wire order of TailnetLogin's fields (the Go struct's). */
export const LOGIN_FIELDS: readonly LoginField[] = ["authKey", "clientSecret", "clientId", "idToken", "audience"];

export type LoginMethod = "auth key" | "OAuth client secret" | "workload identity federation";

/** A client secret given as the auth key becomes the client secret it is; empty fields go. */
export function normalizeLogin(l: TailnetLogin): TailnetLogin {
  const out: TailnetLogin = {};
  for (const f of LOGIN_FIELDS) if (l[f]) out[f] = l[f];
  if (!out.clientSecret && out.authKey?.startsWith(CLIENT_SECRET_PREFIX)) {
    out.clientSecret = out.authKey;
    delete out.authKey;
  }
  return out;
}

export function loginMethod(l: TailnetLogin): LoginMethod | undefined {
  const n = normalizeLogin(l);
  if (n.authKey) return "auth key";
  if (n.clientSecret) return "OAuth client secret";
  if (n.clientId) return "workload identity federation";
  return undefined;
}

/** Whether l has tsnet mint an auth key, which then carries exactly the tags the device advertises. */
export function mintsKey(l: TailnetLogin): boolean {
  const m = loginMethod(l);
  return m === "OAuth client secret" || m === "workload identity federation";
}

/**
 * What is wrong with a set of login values, each against the field to
 * report it at: one way of logging in at a time, a client secret that is
 * one, and workload identity's client ID with exactly one of an ID token
 * and an audience. A value held in a file not yet read is `true`. `name`
 * spells a field the way the user set it (a config key, a variable).
 */
export function loginIssues(
  l: { [F in LoginField]?: string | true },
  name: (f: LoginField) => string,
): Array<{ field: LoginField; message: string }> {
  const issues: Array<{ field: LoginField; message: string }> = [];
  const methods = (["authKey", "clientSecret", "clientId"] as const).filter((f) => l[f]);
  if (methods.length > 1) {
    const [first, ...rest] = methods;
    for (const f of rest) issues.push({ field: f, message: `${name(first!)} is set too: log in one way only` });
  }
  if (typeof l.clientSecret === "string" && l.clientSecret && !l.clientSecret.startsWith(CLIENT_SECRET_PREFIX)) {
    issues.push({
      field: "clientSecret",
      message: `must be an OAuth client secret (${CLIENT_SECRET_PREFIX}…); an auth key goes in ${name("authKey")}`,
    });
  }
  if (l.clientId && !l.idToken && !l.audience) {
    issues.push({ field: "clientId", message: `workload identity federation needs ${name("idToken")} or ${name("audience")}` });
  }
  if (l.idToken && l.audience) {
    issues.push({ field: "audience", message: `set ${name("idToken")} or ${name("audience")}, not both` });
  }
  if (!l.clientId) {
    for (const f of ["idToken", "audience"] as const)
      if (l[f]) issues.push({ field: f, message: `is for workload identity federation, which needs ${name("clientId")}` });
  }
  return issues;
}

/**
 * An OAuth client secret or workload identity mints the device's auth key
 * with exactly the tags it advertises, and tsnet refuses to mint one
 * without: refused here at once, with ERR_OAUTH_TAGS. A node must also
 * advertise the cluster tag, or it would join the tailnet without it.
 */
export function checkLoginTags(l: TailnetLogin, tags: readonly string[], o: { tagsName: string; clusterTag?: string }): void {
  if (!mintsKey(l)) return;
  const method = loginMethod(l)!;
  const example = o.clusterTag ?? "tag:server";
  if (tags.length === 0) {
    throw new ConfigError(
      "ERR_OAUTH_TAGS",
      `an ${method === "OAuth client secret" ? "OAuth client secret" : "identity from workload identity federation"} mints this device's auth key ` +
        `with exactly the tags the device advertises, and there are none: set ${o.tagsName} (e.g. [${example}]) to tags the client may assign`,
    );
  }
  if (o.clusterTag && !tags.includes(o.clusterTag)) {
    throw new ConfigError(
      "ERR_OAUTH_TAGS",
      `with ${method === "OAuth client secret" ? "an OAuth client secret" : "workload identity federation"} the device carries exactly ${o.tagsName} ` +
        `(${tags.join(", ")}), which lacks the cluster tag ${o.clusterTag}: add it`,
    );
  }
}

/** The variables a login is read from, by field: tsnet's own names. */
export const LOGIN_ENV_VARS: Readonly<Record<LoginField, string>> = {
  authKey: "TS_AUTHKEY",
  clientSecret: "TS_CLIENT_SECRET",
  clientId: "TS_CLIENT_ID",
  idToken: "TS_ID_TOKEN",
  audience: "TS_AUDIENCE",
};

/**
 * The login in the environment (for commands without a config file, such
 * as `proxy`), with the same rules as the config file's: a mistake is
 * ERR_CONFIG_ENV naming the variable, never its value.
 */
export function loginFromEnv(env: NodeJS.ProcessEnv): TailnetLogin {
  const raw: TailnetLogin = {};
  for (const f of LOGIN_FIELDS) if (env[LOGIN_ENV_VARS[f]]) raw[f] = env[LOGIN_ENV_VARS[f]];
  const l = normalizeLogin(raw);
  // A client secret in TS_AUTHKEY is reported there.
  const name = (f: LoginField) => (f === "clientSecret" && !raw.clientSecret ? LOGIN_ENV_VARS.authKey : LOGIN_ENV_VARS[f]);
  const issues = loginIssues(l, name);
  if (issues.length) throw new ConfigError("ERR_CONFIG_ENV", issues.map(({ field, message }) => `${name(field)}: ${message}`).join("\n"));
  return l;
}
