import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { createAccount, createServer, createUser } from "@nats-io/nkeys";
import { decode, encodeAuthorizationResponse, encodeUser } from "@nats-io/jwt";
import { decodeVerified, nativeSigner } from "../../controlplane/src/mod.ts";

describe("native Ed25519 signer for the callout", () => {
  test("signs exactly as nkeys does (Ed25519 is deterministic) and verifies both ways", () => {
    const kp = createAccount();
    const fast = nativeSigner(kp);
    const data = new TextEncoder().encode("nonce-123");
    assert.deepEqual(fast.sign(data), kp.sign(data));
    assert.equal(fast.getPublicKey(), kp.getPublicKey());
    assert.ok(kp.verify(data, fast.sign(data)));
    assert.ok(fast.verify(data, kp.sign(data)));
  });

  test("derives the public and private key once, with the values nkeys derives", () => {
    const kp = createAccount();
    const fast = nativeSigner(kp);
    assert.equal(fast.getPublicKey(), kp.getPublicKey());
    assert.equal(fast.getPublicKey(), fast.getPublicKey());
    assert.deepEqual(fast.getPrivateKey(), kp.getPrivateKey());
    assert.equal(fast.getPrivateKey(), fast.getPrivateKey(), "the same object: not derived again");
  });

  test("JWTs it signs verify with the nats library, and its verifier rejects a tampered one", async () => {
    const issuer = nativeSigner(createAccount());
    const user = createUser();
    const jwt = await encodeUser("", user, issuer, { pub: { allow: ["a.>"] } }, { aud: "APP" });
    assert.equal(decode(jwt).sub, user.getPublicKey());
    assert.equal(decodeVerified<{ sub: string }>(jwt).sub, user.getPublicKey());
    const res = await encodeAuthorizationResponse(user.getPublicKey(), createServer().getPublicKey(), issuer, { jwt }, {});
    assert.equal(decodeVerified<{ iss: string }>(res).iss, issuer.getPublicKey());
    const [h, b, s] = jwt.split(".");
    const forged = Buffer.from(Buffer.from(b!, "base64url").toString().replace("a.>", "b.>")).toString("base64url");
    assert.throws(() => decodeVerified(`${h}.${forged}.${s}`));
  });
});
