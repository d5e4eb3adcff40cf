// The operator store, without a server: init (strict, with signing keys),
// accounts, users, roles, revocation, rotation, and taking over an
// operator laid out the way nsc keeps one.
import assert from "node:assert/strict";
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { decode } from "@nats-io/jwt";
import {
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
} from "../../controlplane/src/mod.ts";

const fresh = () => mkdtempSync(join(tmpdir(), "nt-op-"));
/** A JWT's claims, typed as the test expects them (decode types every claim as optional). */
const claimsOf = <T>(jwt: string) => decode(jwt) as unknown as { iss: string; sub: string; exp?: number; nats: T };
const jwtOf = (creds: string) => /-----BEGIN NATS USER JWT-----\n(.+)\n/.exec(readFileSync(creds, "utf8"))![1]!;
type SigningKeys = Array<string | { key: string; role: string; template: Record<string, unknown> }>;
const accountClaims = (dir: string, name: string) =>
  claimsOf<{ signing_keys: SigningKeys; revocations?: Record<string, number>; limits: Record<string, number> }>(
    readStore(dir).accounts.find((a) => a.name === name)!.jwt,
  );

describe("operator store", () => {
  test("init makes an operator, its system account and an admin; keys are private", async () => {
    const dir = fresh();
    const s = await initStore(dir, "acme");
    assert.equal(s.operator.name, "acme");
    assert.equal(
      claimsOf<{ system_account: string }>(readFileSync(s.operator.jwtPath, "utf8").trim()).nats.system_account,
      s.systemAccount.pub,
    );
    assert.equal(statSync(join(dir, "operator.nk")).mode & 0o777, 0o600);
    assert.equal(statSync(join(dir, "accounts", "SYS", "users", "admin.creds")).mode & 0o777, 0o600);
    await assert.rejects(initStore(dir, "again"), { code: "ERR_AUTH_EXISTS" });
  });

  test("init follows NATS's recommendation: strict operator, signing keys sign, identity keys only list them", async () => {
    const dir = fresh();
    const s = await initStore(dir, "acme");
    const op = claimsOf<{ signing_keys: string[]; strict_signing_key_usage: boolean }>(readFileSync(s.operator.jwtPath, "utf8").trim());
    assert.equal(op.nats.strict_signing_key_usage, true);
    assert.equal(op.nats.signing_keys.length, 1);
    const sys = accountClaims(dir, "SYS");
    assert.equal(sys.iss, op.nats.signing_keys[0], "SYS is signed by the operator's signing key");
    assert.equal(sys.nats.signing_keys.length, 1);
    const admin = claimsOf<{ issuer_account: string }>(jwtOf(join(dir, "accounts", "SYS", "users", "admin.creds")));
    assert.equal(admin.iss, sys.nats.signing_keys[0], "the admin is signed by SYS's signing key");
    assert.equal(admin.nats.issuer_account, s.systemAccount.pub);
    // Identity keys can leave the host: every day-to-day command still works.
    rmSync(join(dir, "operator.nk"));
    rmSync(join(dir, "accounts", "SYS", "account.nk"));
    await addAccount(dir, "ACME");
    rmSync(join(dir, "accounts", "ACME", "account.nk"));
    await addUser(dir, "ACME", "bob");
    await addUser(dir, "SYS", "admin2", { proxyRequired: false });
    assert.equal((await initStore(fresh(), "loose", { strict: false })).operator.strict, false);
  });

  test("accounts carry limits; editing keeps the account's identity", async () => {
    const dir = fresh();
    await initStore(dir, "acme");
    const pub = await addAccount(dir, "ACME", { conns: 5 });
    const again = await addAccount(dir, "ACME", { conns: 7 });
    assert.equal(again, pub);
    await addAccount(dir, "ACME", { subs: 9 });
    const claims = accountClaims(dir, "ACME");
    assert.deepEqual([claims.nats.limits.conn, claims.nats.limits.subs], [7, 9], "an edit keeps the limits it does not name");
    const op = claimsOf<{ signing_keys: string[] }>(readFileSync(readStore(dir).operator.jwtPath, "utf8").trim());
    assert.equal(claims.iss, op.nats.signing_keys[0]);
    assert.equal(claims.nats.signing_keys.length, 1, "the account keeps its signing key across edits");
  });

  test("a new account gets the same defaults as modes tailnet and none, not unlimited; SYS keeps none", async () => {
    const dir = fresh();
    await initStore(dir, "acme");
    await addAccount(dir, "ACME");
    const pick = (l: Record<string, number>) => [l.conn, l.subs, l.payload, l.mem_storage, l.disk_storage, l.streams, l.consumer];
    assert.deepEqual(pick(accountClaims(dir, "ACME").nats.limits), [10_000, 1000, -1, 256 * 2 ** 20, 2 ** 30, 100, 1000]);
    const sys = accountClaims(dir, "SYS").nats.limits;
    assert.deepEqual([sys.conn, sys.subs, sys.mem_storage, sys.disk_storage], [-1, -1, undefined, undefined]);
    // Flags set them; an edit keeps the ones it does not name.
    await addAccount(dir, "BIG", { jsDisk: 50 * 2 ** 30, subs: 20_000 });
    await addAccount(dir, "BIG", { streams: 7 });
    assert.deepEqual(pick(accountClaims(dir, "BIG").nats.limits), [10_000, 20_000, -1, 256 * 2 ** 20, 50 * 2 ** 30, 7, 1000]);
  });

  test("users get permissions, expiry and proxy_required by default", async () => {
    const dir = fresh();
    await initStore(dir, "acme");
    await addAccount(dir, "ACME");
    const path = await addUser(dir, "ACME", "bob", {
      pubAllow: ["a.>"],
      subDeny: ["secret.>"],
      expiresInMs: 3_600_000,
      respMax: 1,
      respTtlMs: 5000,
    });
    const jwt = jwtOf(path);
    const c = claimsOf<{ pub: { allow: string[] }; sub: { deny: string[] }; proxy_required: boolean; resp: { max: number; ttl: number } }>(
      jwt,
    );
    assert.deepEqual(
      [c.nats.pub?.allow, c.nats.sub?.deny, c.nats.proxy_required, c.nats.resp],
      [["a.>"], ["secret.>"], true, { max: 1, ttl: 5_000_000_000 }],
    );
    assert.ok(c.exp! > Date.now() / 1000);
    await assert.rejects(addUser(dir, "NOPE", "x"), { code: "ERR_AUTH_NO_ACCOUNT" });
  });

  test("roles: scoped keys whose template is the permissions; their users carry none", async () => {
    const dir = fresh();
    await initStore(dir, "acme");
    await addAccount(dir, "ACME");
    const key = await addRole(dir, "ACME", "worker", permissionsOf({ pubAllow: ["jobs.{{name()}}.>"], subAllow: ["_INBOX.>"] }));
    assert.equal(await addRole(dir, "ACME", "worker", permissionsOf({ pubAllow: ["jobs.{{tag(team)}}.>"] })), key, "editing keeps the key");
    const scoped = accountClaims(dir, "ACME").nats.signing_keys.filter((k) => typeof k !== "string");
    assert.deepEqual(
      scoped.map((k) => [k.key, k.role, (k.template.pub as { allow: string[] }).allow, k.template.proxy_required]),
      [[key, "worker", ["jobs.{{tag(team)}}.>"], true]],
    );
    const c = claimsOf<{ pub: object; sub: object; tags: string[] }>(
      jwtOf(await addUser(dir, "ACME", "w1", { role: "worker", tags: ["team:red"] })),
    );
    assert.equal(c.iss, key);
    assert.deepEqual([c.nats.pub, c.nats.sub, c.nats.tags], [undefined, undefined, ["team:red"]]);
    await assert.rejects(addUser(dir, "ACME", "w2", { role: "worker", pubAllow: ["x"] }), { code: "ERR_USAGE" });
    await assert.rejects(addUser(dir, "ACME", "w3", { role: "boss" }), { code: "ERR_AUTH_NO_ROLE" });
  });

  test("revocation: by name or public key, or all before a time; re-issuing does not undo it", async () => {
    const dir = fresh();
    await initStore(dir, "acme");
    await addAccount(dir, "ACME");
    await addUser(dir, "ACME", "bob");
    await addUser(dir, "ACME", "carol");
    const pub = await revokeUser(dir, "ACME", "bob");
    assert.ok(accountClaims(dir, "ACME").nats.revocations![pub]! >= Math.floor(Date.now() / 1000) - 1);
    const state = async () => Object.fromEntries((await listUsers(dir, "ACME")).map((u) => [u.name, u.state]));
    assert.deepEqual(await state(), { bob: "revoked", carol: "ok" });
    assert.deepEqual(
      (await reissueUsers(dir, "ACME")).map((u) => u.name),
      ["carol"],
    );
    await assert.rejects(revokeUser(dir, "ACME", "nobody"), { code: "ERR_AUTH_NO_USER" });
    await revokeAllBefore(dir, "ACME", Math.floor(Date.now() / 1000) + 5);
    assert.deepEqual(await state(), { bob: "revoked", carol: "revoked" });
  });

  test("rotation: add a key, re-issue, remove the old one; old JWTs name a removed signer", async () => {
    const dir = fresh();
    await initStore(dir, "acme");
    await addAccount(dir, "ACME");
    await addRole(dir, "ACME", "worker", permissionsOf({ pubAllow: ["jobs.>"] }));
    const bob = await addUser(dir, "ACME", "bob", { pubAllow: ["a.>"], expiresInMs: 3_600_000 });
    await addUser(dir, "ACME", "w1", { role: "worker" });
    const before = claimsOf<{ pub: { allow: string[] } }>(jwtOf(bob));
    const old = before.iss;
    const fresh_ = await addSigningKey(dir, "ACME");
    const re = await reissueUsers(dir, "ACME");
    assert.deepEqual(
      re.map((u) => [u.name, u.signer === fresh_]),
      [
        ["bob", true],
        ["w1", false],
      ],
      "a role's user stays with its role",
    );
    await removeSigningKey(dir, "ACME", old);
    const after = claimsOf<{ pub: { allow: string[] } }>(jwtOf(bob));
    assert.deepEqual([after.sub, after.exp, after.nats.pub.allow], [before.sub, before.exp, ["a.>"]], "same key, expiry and claims");
    assert.ok(!readdirSync(join(dir, "keys")).includes(`${old}.nk`), "the old seed is gone");
    assert.ok(!accountClaims(dir, "ACME").nats.signing_keys.includes(old));
    assert.deepEqual(
      (await listUsers(dir, "ACME")).map((u) => u.state),
      ["ok", "ok"],
    );
    await assert.rejects(removeSigningKey(dir, "ACME", old), { code: "ERR_AUTH_KEY_MISSING" });
  });

  test("import-nsc takes over a store laid out like nsc's, and names a missing signing key", async () => {
    // Build nsc's layout from a store of ours: <store>/<op>/<op>.jwt,
    // <store>/<op>/accounts/<A>/<A>.jwt, <nkeys>/keys/<P>/<xx>/<pub>.nk
    const src = fresh();
    const s = await initStore(src, "legacy");
    await addAccount(src, "ACME");
    const nsc = fresh();
    const op = join(nsc, "stores", "legacy");
    mkdirSync(join(op, "accounts"), { recursive: true });
    cpSync(join(src, "operator.jwt"), join(op, "legacy.jwt"));
    const putSeed = (pub: string, seedFile: string) => {
      const d = join(nsc, "nkeys", "keys", pub[0]!, pub.slice(1, 3));
      mkdirSync(d, { recursive: true });
      writeFileSync(join(d, `${pub}.nk`), readFileSync(seedFile));
    };
    putSeed(s.operator.pub, join(src, "operator.nk"));
    for (const a of readStore(src).accounts) {
      mkdirSync(join(op, "accounts", a.name), { recursive: true });
      writeFileSync(join(op, "accounts", a.name, `${a.name}.jwt`), a.jwt);
      putSeed(a.pub, join(src, "accounts", a.name, "account.nk"));
    }
    const dest = join(fresh(), "store");
    // Strict: the SYS admin needs SYS's signing key, which is not there yet.
    const sysKey = accountClaims(src, "SYS").nats.signing_keys[0] as string;
    await assert.rejects(
      importNsc({ operatorDir: op, nkeysDir: join(nsc, "nkeys"), dest }),
      (e: Error & { code: string }) =>
        e.code === "ERR_AUTH_KEY_MISSING" && e.message.includes(join(nsc, "nkeys", "keys", "A", sysKey.slice(1, 3), `${sysKey}.nk`)),
    );
    for (const f of readdirSync(join(src, "keys"))) putSeed(f.slice(0, -3), join(src, "keys", f));
    const imported = await importNsc({ operatorDir: op, nkeysDir: join(nsc, "nkeys"), dest });
    assert.equal(imported.operator.pub, s.operator.pub);
    assert.equal(imported.operator.strict, true);
    assert.deepEqual(imported.missing, []);
    assert.deepEqual(
      imported.accounts.map((a) => a.name),
      ["ACME", "SYS"],
    );
    // The imported store can mint users for the old accounts, with their signing keys.
    const creds = await addUser(dest, "ACME", "carol");
    assert.equal(decode(jwtOf(creds)).iss, accountClaims(src, "ACME").nats.signing_keys[0]);
  });
});
