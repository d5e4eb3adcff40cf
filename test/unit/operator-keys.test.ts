// Which key signs what (controlplane/src/auth/keys.ts), without a store:
// strict operators take signing keys only, the newest signing key wins,
// roles are used only when asked for, and a missing seed is named.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { accountSigner, userSigner, userState, type AccountView, type KeySource, type OperatorView } from "../../controlplane/src/mod.ts";

const held = (...pubs: string[]): KeySource => ({ has: (p) => pubs.includes(p), where: (p) => `/keys/${p}.nk` });

const op = (strict: boolean, signingKeys = ["OSK1", "OSK2"]): OperatorView => ({ name: "acme", pub: "OID", signingKeys, strict });
const acc: AccountView = {
  name: "APP",
  pub: "AID",
  signingKeys: ["ASK1", "ASK2"],
  roles: [{ key: "AROLE", role: "worker", template: { pub: { allow: ["jobs.{{name()}}.>"] } } }],
};

describe("key choice: accounts", () => {
  test("strict: the newest operator signing key at hand, never the identity key", () => {
    assert.equal(accountSigner(op(true), held("OID", "OSK1", "OSK2")), "OSK2");
    assert.equal(accountSigner(op(true), held("OID", "OSK1")), "OSK1");
    assert.throws(
      () => accountSigner(op(true), held("OID")),
      (e: Error & { code: string }) => e.code === "ERR_AUTH_KEY_MISSING" && e.message.includes("/keys/OSK1.nk"),
    );
  });

  test("not strict: a signing key first, else the identity key", () => {
    assert.equal(accountSigner(op(false), held("OID", "OSK1")), "OSK1");
    assert.equal(accountSigner(op(false, []), held("OID")), "OID");
    assert.throws(() => accountSigner(op(false, []), held()), { code: "ERR_AUTH_KEY_MISSING" });
  });

  test("strict with no signing key at all says so", () => {
    assert.throws(() => accountSigner(op(true, []), held("OID")), { code: "ERR_AUTH_KEY_MISSING" });
  });
});

describe("key choice: users", () => {
  test("strict: the newest unscoped account signing key; a role's key is never the default", () => {
    assert.deepEqual(userSigner(acc, true, held("AID", "ASK1", "ASK2", "AROLE")), { key: "ASK2" });
    assert.deepEqual(userSigner(acc, true, held("ASK1", "AROLE")), { key: "ASK1" });
    assert.throws(
      () => userSigner(acc, true, held("AID", "AROLE")),
      (e: Error & { code: string }) => e.code === "ERR_AUTH_KEY_MISSING" && /ASK1.*ASK2/.test(e.message) && !e.message.includes("AID "),
    );
  });

  test("not strict: the account identity key when no signing key is at hand", () => {
    assert.deepEqual(userSigner({ ...acc, signingKeys: [] }, false, held("AID")), { key: "AID" });
  });

  test("a role: its scoped key and template; unknown roles and missing seeds are named", () => {
    const s = userSigner(acc, true, held("ASK1", "AROLE"), { role: "worker" });
    assert.equal(s.key, "AROLE");
    assert.deepEqual(s.role?.template, { pub: { allow: ["jobs.{{name()}}.>"] } });
    assert.throws(() => userSigner(acc, true, held("AROLE"), { role: "boss" }), { code: "ERR_AUTH_NO_ROLE" });
    assert.throws(() => userSigner(acc, true, held("ASK1"), { role: "worker" }), { code: "ERR_AUTH_KEY_MISSING" });
  });

  test("an explicit key must belong to the account (the identity key only when not strict)", () => {
    assert.deepEqual(userSigner(acc, true, held("ASK1", "ASK2"), { key: "ASK1" }), { key: "ASK1" });
    assert.equal(userSigner(acc, true, held("AROLE"), { key: "AROLE" }).role?.role, "worker");
    assert.throws(() => userSigner(acc, true, held("AID"), { key: "AID" }), { code: "ERR_AUTH_KEY_MISSING" });
    assert.deepEqual(userSigner(acc, false, held("AID"), { key: "AID" }), { key: "AID" });
    assert.throws(() => userSigner(acc, true, held("OTHER"), { key: "OTHER" }), { code: "ERR_AUTH_KEY_MISSING" });
  });
});

describe("user state: what nats-server would say", () => {
  const user = { sub: "UBOB", iss: "ASK1", iat: 1000 };
  test("ok, expired, revoked (by key or all-before), unknown signer", () => {
    assert.equal(userState(user, acc, true, 2000), "ok");
    assert.equal(userState({ ...user, exp: 1500 }, acc, true, 2000), "expired");
    assert.equal(userState(user, { ...acc, revocations: { UBOB: 1000 } }, true, 2000), "revoked");
    assert.equal(userState(user, { ...acc, revocations: { UBOB: 999 } }, true, 2000), "ok", "issued after the revocation");
    assert.equal(userState(user, { ...acc, revocations: { "*": 1200 } }, true, 2000), "revoked");
    assert.equal(userState({ ...user, iss: "AOLD" }, acc, true, 2000), "unknown-signer");
    assert.equal(userState({ ...user, iss: "AID" }, acc, true, 2000), "unknown-signer", "identity key under strict");
    assert.equal(userState({ ...user, iss: "AID" }, acc, false, 2000), "ok");
  });
});
