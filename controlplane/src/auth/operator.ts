// Auth mode operator: NATS's own decentralized JWT auth (operator ->
// accounts -> users), for those who want credentials files rather than
// tailnet identity. `nats-tsnet auth ...` keeps a store directory that
// every node of the cluster is given (operator and system account JWTs);
// accounts are pushed to the running cluster and spread by the `full`
// resolver, so an account pushed through one node is known to all.
//
// Store layout (keys are 0600, the directory 0700):
//   operator.jwt  operator.nk
//   accounts/<NAME>/account.jwt  account.nk
//   accounts/<NAME>/users/<USER>.creds
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createAccount, createOperator, createUser, fromSeed, type KeyPair } from "@nats-io/nkeys";
import { decode, encodeAccount, encodeOperator, encodeUser, fmtCreds } from "@nats-io/jwt";
import { connect, credsAuthenticator } from "@nats-io/transport-node";
import { ConfigError, OperationError, UsageError } from "../errors.ts";
import { writeFileAtomic } from "../util/fs.ts";

export const SYS = "SYS";
const ADMIN = "admin";

/** The system-account admin's .creds: how `auth push` and `peer ...` reach SYS on a node's loopback. */
export function adminCredsPath(dir: string): string {
  return join(dir, "accounts", SYS, "users", `${ADMIN}.creds`);
}
const NAME = /^[A-Za-z0-9_-]+$/;

function fail(code: ConstructorParameters<typeof UsageError>[0], message: string): never {
  throw new UsageError(code, message);
}

const writeSecret = (path: string, data: string | Uint8Array) => writeFileAtomic(path, data, 0o600);

function readKey(path: string): KeyPair {
  try {
    return fromSeed(new TextEncoder().encode(readFileSync(path, "utf8").trim()));
  } catch (cause) {
    throw new ConfigError(
      "ERR_AUTH_STORE",
      `cannot read the key ${path}: is this an auth store made by 'nats-tsnet auth init'?`,
      { file: path },
      { cause },
    );
  }
}

const seedText = (kp: KeyPair) => new TextDecoder().decode(kp.getSeed());

export interface StoreInfo {
  operator: { name: string; pub: string; jwtPath: string };
  systemAccount: { pub: string; jwt: string };
  accounts: Array<{ name: string; pub: string; jwt: string }>;
}

export function readStore(dir: string): StoreInfo {
  const opPath = join(dir, "operator.jwt");
  if (!existsSync(opPath)) {
    throw new ConfigError("ERR_AUTH_STORE", `${dir} holds no operator: run 'nats-tsnet auth init --dir ${dir}' first`, { file: opPath });
  }
  const op = decode<{ system_account?: string }>(readFileSync(opPath, "utf8").trim());
  const accDir = join(dir, "accounts");
  const accounts = (existsSync(accDir) ? readdirSync(accDir) : []).sort().map((name) => {
    const jwt = readFileSync(join(accDir, name, "account.jwt"), "utf8").trim();
    return { name, pub: decode(jwt).sub, jwt };
  });
  const sys = accounts.find((a) => a.pub === op.nats.system_account);
  if (!sys) throw new ConfigError("ERR_AUTH_STORE", `${dir}: the operator's system account is missing`, { file: opPath });
  return { operator: { name: op.name, pub: op.sub, jwtPath: opPath }, systemAccount: { pub: sys.pub, jwt: sys.jwt }, accounts };
}

export interface AccountLimits {
  conns?: number;
  subs?: number;
  payload?: number;
  data?: number;
  jsMemory?: number;
  jsDisk?: number;
  streams?: number;
}

async function writeAccount(
  dir: string,
  name: string,
  operator: KeyPair,
  limits: AccountLimits = {},
  akp = createAccount(),
): Promise<string> {
  const d = join(dir, "accounts", name);
  mkdirSync(join(d, "users"), { recursive: true, mode: 0o700 });
  const jsOn = name !== SYS; // the system account never holds streams
  const jwt = await encodeAccount(
    name,
    akp,
    {
      limits: {
        conn: limits.conns ?? -1,
        subs: limits.subs ?? -1,
        payload: limits.payload ?? -1,
        data: limits.data ?? -1,
        imports: -1,
        exports: -1,
        wildcards: true,
        leaf: -1,
        ...(jsOn
          ? { mem_storage: limits.jsMemory ?? -1, disk_storage: limits.jsDisk ?? -1, streams: limits.streams ?? -1, consumer: -1 }
          : {}),
      },
    },
    { signer: operator },
  );
  writeFileSync(join(d, "account.jwt"), jwt + "\n");
  if (!existsSync(join(d, "account.nk"))) writeSecret(join(d, "account.nk"), seedText(akp) + "\n");
  return akp.getPublicKey();
}

/** A new operator with its system account and an admin user for it. */
export async function initStore(dir: string, operatorName: string): Promise<StoreInfo> {
  if (existsSync(join(dir, "operator.jwt"))) fail("ERR_AUTH_EXISTS", `${dir} already holds an operator`);
  if (!NAME.test(operatorName)) fail("ERR_AUTH_NAME", `operator name ${JSON.stringify(operatorName)}: letters, digits, - and _ only`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const okp = createOperator();
  const sys = createAccount();
  writeSecret(join(dir, "operator.nk"), seedText(okp) + "\n");
  writeFileSync(join(dir, "operator.jwt"), (await encodeOperator(operatorName, okp, { system_account: sys.getPublicKey() })) + "\n");
  await writeAccount(dir, SYS, okp, {}, sys);
  // The admin is how `auth push` and `peer ...` reach the system account on
  // a node's loopback; it is an operator's credential, not a tailnet one.
  await addUser(dir, SYS, ADMIN, { proxyRequired: false });
  return readStore(dir);
}

export async function addAccount(dir: string, name: string, limits: AccountLimits = {}): Promise<string> {
  if (!NAME.test(name)) fail("ERR_AUTH_NAME", `account name ${JSON.stringify(name)}: letters, digits, - and _ only`);
  readStore(dir);
  const existing = join(dir, "accounts", name, "account.nk");
  // Editing an account keeps its identity (key); only the claims change.
  return writeAccount(dir, name, readKey(join(dir, "operator.nk")), limits, existsSync(existing) ? readKey(existing) : createAccount());
}

export interface UserSpec {
  pubAllow?: string[];
  pubDeny?: string[];
  subAllow?: string[];
  subDeny?: string[];
  respMax?: number;
  respTtlMs?: number;
  expiresInMs?: number;
  bearer?: boolean;
  /** Default true: the user gets in only through a node's tailnet face. */
  proxyRequired?: boolean;
}

/** Writes <account>/users/<name>.creds (JWT + seed), readable by every NATS client. */
export async function addUser(dir: string, account: string, name: string, spec: UserSpec = {}): Promise<string> {
  if (!NAME.test(name)) fail("ERR_AUTH_NAME", `user name ${JSON.stringify(name)}: letters, digits, - and _ only`);
  const accDir = join(dir, "accounts", account);
  if (!existsSync(join(accDir, "account.nk")))
    fail("ERR_AUTH_NO_ACCOUNT", `no account ${account} in ${dir}: add it with 'nats-tsnet auth account add ${account}'`);
  const akp = readKey(join(accDir, "account.nk"));
  const ukp = createUser();
  const perm = (allow?: string[], deny?: string[]) => ({ ...(allow?.length ? { allow } : {}), ...(deny?.length ? { deny } : {}) });
  const user = {
    pub: perm(spec.pubAllow, spec.pubDeny),
    sub: perm(spec.subAllow, spec.subDeny),
    ...(spec.respMax ? { resp: { max: spec.respMax, ttl: (spec.respTtlMs ?? 0) * 1_000_000 } } : {}),
    bearer_token: spec.bearer ?? false,
    proxy_required: spec.proxyRequired ?? true,
    subs: -1,
    data: -1,
    payload: -1,
  };
  const exp = spec.expiresInMs ? Math.floor((Date.now() + spec.expiresInMs) / 1000) : undefined;
  const jwt = await encodeUser(name, ukp, akp, user as never, exp ? { exp } : {});
  const path = join(accDir, "users", `${name}.creds`);
  writeSecret(path, fmtCreds(jwt, ukp));
  return path;
}

/** Pushes every account JWT to the cluster through one node's loopback. */
export async function pushAccounts(dir: string, clientPort: number): Promise<Array<{ account: string; result: string }>> {
  const store = readStore(dir);
  const creds = readFileSync(adminCredsPath(dir));
  const nc = await connect({
    servers: `127.0.0.1:${clientPort}`,
    authenticator: credsAuthenticator(creds),
    ignoreClusterUpdates: true,
    name: "nats-tsnet auth push",
  });
  try {
    const out = [];
    for (const a of store.accounts) {
      const r = await nc.request("$SYS.REQ.CLAIMS.UPDATE", a.jwt, { timeout: 10_000 });
      const body = r.json<{ data?: { message?: string }; error?: { description?: string } }>();
      if (body.error) throw new OperationError("ERR_AUTH_PUSH", `pushing account ${a.name}: ${body.error.description}`);
      out.push({ account: a.name, result: body.data?.message ?? "ok" });
    }
    return out;
  } finally {
    await nc.close();
  }
}

/**
 * Takes over an operator made with nsc: its store directory
 * (<store>/<operator>/...) and nkeys directory (<nkeys>/keys/<P>/<xx>/<pub>.nk).
 */
export async function importNsc(opts: { operatorDir: string; nkeysDir: string; dest: string }): Promise<StoreInfo> {
  const name = opts.operatorDir.replace(/\/+$/, "").split("/").pop()!;
  const opJwt = readFileSync(join(opts.operatorDir, `${name}.jwt`), "utf8").trim();
  const seedFor = (pub: string) => {
    const p = join(opts.nkeysDir, "keys", pub[0]!, pub.slice(1, 3), `${pub}.nk`);
    if (!existsSync(p)) fail("ERR_AUTH_IMPORT", `no seed for ${pub} under ${opts.nkeysDir} (looked for ${p})`);
    return readFileSync(p, "utf8").trim();
  };
  const op = decode(opJwt);
  mkdirSync(opts.dest, { recursive: true, mode: 0o700 });
  writeFileSync(join(opts.dest, "operator.jwt"), opJwt + "\n");
  writeSecret(join(opts.dest, "operator.nk"), seedFor(op.sub) + "\n");
  const accRoot = join(opts.operatorDir, "accounts");
  for (const acc of existsSync(accRoot) ? readdirSync(accRoot) : []) {
    const jwt = readFileSync(join(accRoot, acc, `${acc}.jwt`), "utf8").trim();
    const d = join(opts.dest, "accounts", acc);
    mkdirSync(join(d, "users"), { recursive: true, mode: 0o700 });
    writeFileSync(join(d, "account.jwt"), jwt + "\n");
    writeSecret(join(d, "account.nk"), seedFor(decode(jwt).sub) + "\n");
  }
  const store = readStore(opts.dest);
  if (!existsSync(adminCredsPath(opts.dest))) {
    const sysName = store.accounts.find((a) => a.pub === store.systemAccount.pub)!.name;
    if (sysName !== SYS) fail("ERR_AUTH_IMPORT", `the system account is named ${sysName}; nats-tsnet expects ${SYS}`);
    await addUser(opts.dest, SYS, ADMIN, { proxyRequired: false });
  }
  return store;
}
