// Taking over an operator made with nsc, as NATS documents it: strict or
// not, with any number of signing keys and roles (scoped keys). JWTs are
// kept as nsc signed them; seeds are copied from nsc's nkeys directory when
// it holds them, and the one key import must use (to sign the SYS admin)
// is checked before anything is written.
//   nsc store:  <stores>/<op>/<op>.jwt, <stores>/<op>/accounts/<A>/<A>.jwt
//   nkeys:      <nkeys>/keys/<P>/<xx>/<pub>.nk, <nkeys>/creds/<op>/<A>/<user>.creds
import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { decode, type Account, type ClaimsData, type Operator } from "@nats-io/jwt";
import { UsageError } from "../errors.ts";
import { accountView, operatorView, userSigner, type KeySource } from "./keys.ts";
import { ADMIN, SYS, accountDir, adminCredsPath, readStore, writeSecret, type StoreInfo, writePublic } from "./operator-store.ts";
import { addUser } from "./operator-users.ts";

/** nsc's key store: one file per public key, sharded by its first three characters. */
export function nscKeys(nkeysDir: string): KeySource {
  const where = (pub: string) => join(nkeysDir, "keys", pub[0]!, pub.slice(1, 3), `${pub}.nk`);
  return { where, has: (pub) => existsSync(where(pub)) };
}

function readNscJwt<T>(path: string): { jwt: string; claims: ClaimsData<T> } {
  if (!existsSync(path))
    throw new UsageError("ERR_AUTH_IMPORT", `${path} not found: is this nsc's directory of one operator (…/stores/<operator>)?`);
  const jwt = readFileSync(path, "utf8").trim();
  try {
    return { jwt, claims: decode<T>(jwt) };
  } catch (cause) {
    throw new UsageError("ERR_AUTH_IMPORT", `${path} is not a JWT`, { cause });
  }
}

export interface ImportResult extends StoreInfo {
  /** Signing keys whose seeds nsc's nkeys directory lacks: what those keys sign cannot be done here. */
  missing: string[];
}

export async function importNsc(opts: { operatorDir: string; nkeysDir: string; dest: string }): Promise<ImportResult> {
  const opName = opts.operatorDir.replace(/\/+$/, "").split("/").pop()!;
  const op = readNscJwt<Operator>(join(opts.operatorDir, `${opName}.jwt`));
  const accRoot = join(opts.operatorDir, "accounts");
  const accounts = (existsSync(accRoot) ? readdirSync(accRoot) : [])
    .filter((a) => existsSync(join(accRoot, a, `${a}.jwt`)))
    .map((name) => ({ name, ...readNscJwt<Account>(join(accRoot, name, `${name}.jwt`)) }));
  const sys = accounts.find((a) => a.claims.sub === op.claims.nats.system_account);
  if (!sys) throw new UsageError("ERR_AUTH_IMPORT", `${opts.operatorDir}: the operator's system account is not there`);
  if (sys.name !== SYS) throw new UsageError("ERR_AUTH_IMPORT", `the system account is named ${sys.name}; nats-tsnet expects ${SYS}`);
  const keys = nscKeys(opts.nkeysDir);
  const strict = operatorView(op.claims).strict;
  // The SYS admin is what push and peer commands use: fail before writing if it cannot be signed.
  if (!existsSync(adminCredsPath(opts.dest))) userSigner(accountView(sys.claims), strict, keys);

  mkdirSync(opts.dest, { recursive: true, mode: 0o700 });
  const missing: string[] = [];
  const copySeed = (pub: string, to: string, signing: boolean) => {
    if (keys.has(pub)) writeSecret(to, readFileSync(keys.where(pub), "utf8").trim() + "\n");
    else if (signing) missing.push(pub);
  };
  mkdirSync(join(opts.dest, "keys"), { recursive: true, mode: 0o700 });
  writePublic(join(opts.dest, "operator.jwt"), op.jwt + "\n");
  copySeed(op.claims.sub, join(opts.dest, "operator.nk"), false);
  for (const k of operatorView(op.claims).signingKeys) copySeed(k, join(opts.dest, "keys", `${k}.nk`), true);
  for (const a of accounts) {
    const d = accountDir(opts.dest, a.name);
    mkdirSync(join(d, "users"), { recursive: true, mode: 0o700 });
    writePublic(join(d, "account.jwt"), a.jwt + "\n");
    copySeed(a.claims.sub, join(d, "account.nk"), false);
    const v = accountView(a.claims);
    for (const k of [...v.signingKeys, ...v.roles.map((r) => r.key)]) copySeed(k, join(opts.dest, "keys", `${k}.nk`), true);
    copyNscCreds(join(opts.nkeysDir, "creds", opName, a.name), join(d, "users"));
  }
  if (!existsSync(adminCredsPath(opts.dest))) await addUser(opts.dest, SYS, ADMIN, { proxyRequired: false });
  return { ...readStore(opts.dest), missing };
}

/** nsc's users' .creds, so that they can be listed, revoked by name and re-issued in a rotation. */
function copyNscCreds(from: string, to: string): void {
  for (const f of existsSync(from) ? readdirSync(from) : []) {
    if (f.endsWith(".creds") && f !== `${ADMIN}.creds`) writeSecret(join(to, f), readFileSync(join(from, f)));
  }
}
