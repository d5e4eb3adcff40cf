// The operator store on disk: where things are, reading JWTs, finding
// seeds, re-signing an account. Store layout (seeds 0600, directories 0700):
//   operator.jwt  operator.nk            the operator and its identity key
//   keys/<PUBLIC KEY>.nk                 signing keys: the operator's and the accounts'
//   accounts/<NAME>/account.jwt  account.nk
//   accounts/<NAME>/users/<USER>.creds
// Identity keys (operator.nk, account.nk) are needed only to change the
// operator's own JWT; with strict signing-key usage (the default) they can be
// moved off the host, and every day-to-day command uses keys/.
import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fromSeed, type KeyPair } from "@nats-io/nkeys";
import { decode, encodeAccount, type Account, type ClaimsData, type Operator } from "@nats-io/jwt";
import { ConfigError, UsageError } from "../errors.ts";
import { writeFileAtomic } from "../util/fs.ts";
import { accountSigner, accountView, operatorView, type AccountView, type KeySource, type OperatorView } from "./keys.ts";

export { ADMIN, SYS, adminCredsPath } from "./operator-paths.ts";
export const NAME = /^[A-Za-z0-9_-]+$/;

export const accountDir = (dir: string, name: string) => join(dir, "accounts", name);
export const userCredsPath = (dir: string, account: string, user: string) => join(dir, "accounts", account, "users", `${user}.creds`);
const keysDir = (dir: string) => join(dir, "keys");

export function checkName(kind: string, name: string): void {
  if (!NAME.test(name)) throw new UsageError("ERR_AUTH_NAME", `${kind} name ${JSON.stringify(name)}: letters, digits, - and _ only`);
}

export const writeSecret = (path: string, data: string | Uint8Array) => writeFileAtomic(path, data, 0o600);
/** JWTs: public, but nodes read them while commands write them, so whole or not at all. */
export const writePublic = (path: string, data: string) => writeFileAtomic(path, data, 0o644);
export const seedText = (kp: KeyPair) => new TextDecoder().decode(kp.getSeed());

function storeError(path: string, what: string, cause?: unknown): never {
  throw new ConfigError("ERR_AUTH_STORE", `${path}: ${what}`, { file: path }, { cause });
}

export function readKeyFile(path: string): KeyPair {
  try {
    return fromSeed(new TextEncoder().encode(readFileSync(path, "utf8").trim()));
  } catch (cause) {
    return storeError(path, "not a readable nkey seed", cause);
  }
}

/** Keeps a signing key's seed in keys/, where KeyRing finds it. */
export function saveSigningKey(dir: string, kp: KeyPair): string {
  mkdirSync(keysDir(dir), { recursive: true, mode: 0o700 });
  writeSecret(join(keysDir(dir), `${kp.getPublicKey()}.nk`), seedText(kp) + "\n");
  return kp.getPublicKey();
}

/** The seeds a store holds, by public key: identity files and keys/. */
export class KeyRing implements KeySource {
  private readonly dir: string;
  private readonly paths: Map<string, string>;
  private constructor(dir: string, paths: Map<string, string>) {
    this.dir = dir;
    this.paths = paths;
  }

  static of(dir: string): KeyRing {
    const paths = new Map<string, string>();
    const identity = [join(dir, "operator.nk")];
    const accRoot = join(dir, "accounts");
    for (const a of existsSync(accRoot) ? readdirSync(accRoot) : []) identity.push(join(accRoot, a, "account.nk"));
    for (const p of identity) if (existsSync(p)) paths.set(readKeyFile(p).getPublicKey(), p);
    for (const f of existsSync(keysDir(dir)) ? readdirSync(keysDir(dir)) : [])
      if (f.endsWith(".nk")) paths.set(f.slice(0, -3), join(keysDir(dir), f));
    return new KeyRing(dir, paths);
  }

  has(pub: string): boolean {
    return this.paths.has(pub);
  }
  where(pub: string): string {
    return this.paths.get(pub) ?? join(keysDir(this.dir), `${pub}.nk`);
  }
  pair(pub: string): KeyPair {
    const kp = readKeyFile(this.where(pub));
    if (kp.getPublicKey() !== pub) storeError(this.where(pub), `holds the seed of ${kp.getPublicKey()}, not ${pub}`);
    return kp;
  }
}

function readJwt<T>(path: string): ClaimsData<T> {
  try {
    return decode<T>(readFileSync(path, "utf8").trim());
  } catch (cause) {
    return storeError(path, "not a readable JWT", cause);
  }
}

export interface OperatorRecord extends OperatorView {
  jwtPath: string;
  systemAccount: string;
}

export function readOperator(dir: string): OperatorRecord {
  const jwtPath = join(dir, "operator.jwt");
  if (!existsSync(jwtPath)) {
    throw new ConfigError("ERR_AUTH_STORE", `${dir} holds no operator: run 'nats-tsnet auth init --dir ${dir}' first`, { file: jwtPath });
  }
  const c = readJwt<Operator>(jwtPath);
  return { ...operatorView(c), jwtPath, systemAccount: c.nats.system_account ?? "" };
}

export interface AccountRecord extends AccountView {
  jwt: string;
  claims: ClaimsData<Account>;
}

export function readAccount(dir: string, name: string): AccountRecord {
  const path = join(accountDir(dir, name), "account.jwt");
  if (!existsSync(path)) {
    throw new UsageError("ERR_AUTH_NO_ACCOUNT", `no account ${name} in ${dir}: add it with 'nats-tsnet auth account add ${name}'`);
  }
  const claims = readJwt<Account>(path);
  return { ...accountView(claims), jwt: readFileSync(path, "utf8").trim(), claims };
}

export function accountNames(dir: string): string[] {
  const root = join(dir, "accounts");
  return (existsSync(root) ? readdirSync(root) : []).filter((a) => existsSync(join(root, a, "account.jwt"))).sort();
}

export interface StoreInfo {
  operator: { name: string; pub: string; jwtPath: string; strict: boolean };
  systemAccount: { pub: string; jwt: string };
  accounts: Array<{ name: string; pub: string; jwt: string }>;
}

export function readStore(dir: string): StoreInfo {
  const op = readOperator(dir);
  const accounts = accountNames(dir).map((name) => {
    const a = readAccount(dir, name);
    return { name, pub: a.pub, jwt: a.jwt };
  });
  const sys = accounts.find((a) => a.pub === op.systemAccount);
  if (!sys) storeError(op.jwtPath, "the operator's system account is missing");
  return {
    operator: { name: op.name, pub: op.pub, jwtPath: op.jwtPath, strict: op.strict },
    systemAccount: { pub: sys.pub, jwt: sys.jwt },
    accounts,
  };
}

/**
 * Signs an account's claims with the operator key the rules pick and
 * writes account.jwt. The identity (sub) stays; only the claims change.
 */
export async function writeAccountJwt(dir: string, name: string, accountPub: string, nats: Partial<Account>): Promise<string> {
  const ring = KeyRing.of(dir);
  const signer = ring.pair(accountSigner(readOperator(dir), ring));
  const jwt = await encodeAccount(name, accountPub, nats, { signer });
  mkdirSync(join(accountDir(dir, name), "users"), { recursive: true, mode: 0o700 });
  writePublic(join(accountDir(dir, name), "account.jwt"), jwt + "\n");
  return jwt;
}

/** Re-signs an existing account after change() edits a copy of its claims. */
export async function editAccount(dir: string, name: string, change: (nats: Partial<Account>) => void): Promise<AccountRecord> {
  const acc = readAccount(dir, name);
  const nats: Partial<Account> = structuredClone(acc.claims.nats);
  change(nats);
  await writeAccountJwt(dir, name, acc.pub, nats);
  return readAccount(dir, name);
}
