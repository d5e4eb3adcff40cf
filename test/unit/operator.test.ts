// The operator store, without a server: init, accounts, users, and taking
// over an operator laid out the way nsc keeps one.
import assert from "node:assert/strict";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { decode } from "@nats-io/jwt";
import { addAccount, addUser, importNsc, initStore, readStore } from "../../controlplane/src/mod.ts";

const fresh = () => mkdtempSync(join(tmpdir(), "nt-op-"));

describe("operator store", () => {
  test("init makes an operator, its system account and an admin; keys are private", async () => {
    const dir = fresh();
    const s = await initStore(dir, "acme");
    assert.equal(s.operator.name, "acme");
    assert.equal(
      decode<{ system_account: string }>(readFileSync(s.operator.jwtPath, "utf8").trim()).nats.system_account,
      s.systemAccount.pub,
    );
    assert.equal(statSync(join(dir, "operator.nk")).mode & 0o777, 0o600);
    assert.equal(statSync(join(dir, "accounts", "SYS", "users", "admin.creds")).mode & 0o777, 0o600);
    await assert.rejects(initStore(dir, "again"), { code: "ERR_AUTH_EXISTS" });
  });

  test("accounts carry limits; editing keeps the account's identity", async () => {
    const dir = fresh();
    await initStore(dir, "acme");
    const pub = await addAccount(dir, "ACME", { conns: 5 });
    const again = await addAccount(dir, "ACME", { conns: 7 });
    assert.equal(again, pub);
    const jwt = readStore(dir).accounts.find((a) => a.name === "ACME")!.jwt;
    const claims = decode<{ limits: { conn: number; disk_storage: number } }>(jwt);
    assert.equal(claims.nats.limits?.conn, 7);
    assert.equal(claims.iss, readStore(dir).operator.pub);
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
    const jwt = /-----BEGIN NATS USER JWT-----\n(.+)\n/.exec(readFileSync(path, "utf8"))![1]!;
    const c = decode<{ pub: { allow: string[] }; sub: { deny: string[] }; proxy_required: boolean; resp: { max: number; ttl: number } }>(
      jwt,
    );
    assert.deepEqual(
      [c.nats.pub?.allow, c.nats.sub?.deny, c.nats.proxy_required, c.nats.resp],
      [["a.>"], ["secret.>"], true, { max: 1, ttl: 5_000_000_000 }],
    );
    assert.ok(c.exp! > Date.now() / 1000);
    await assert.rejects(addUser(dir, "NOPE", "x"), { code: "ERR_AUTH_NO_ACCOUNT" });
  });

  test("import-nsc takes over a store laid out like nsc's", async () => {
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
    const imported = await importNsc({ operatorDir: op, nkeysDir: join(nsc, "nkeys"), dest });
    assert.equal(imported.operator.pub, s.operator.pub);
    assert.deepEqual(
      imported.accounts.map((a) => a.name),
      ["ACME", "SYS"],
    );
    // The imported store can mint users for the old accounts.
    const creds = await addUser(dest, "ACME", "carol");
    assert.match(readFileSync(creds, "utf8"), /BEGIN NATS USER JWT/);
  });
});
