// Ed25519 for the auth callout's hot path in Node's native crypto.
// @nats-io/nkeys signs and verifies in pure JavaScript, tens of
// milliseconds per operation on a small machine; every client connection
// costs the callout one verification and two signatures, so a device that
// opens connections in a loop could queue everyone else past nats-server's
// auth timeout. node:crypto does the same Ed25519 in microseconds. Same
// keys, same (deterministic) signatures: only the arithmetic moves.
import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from "node:crypto";
import type { KeyPair } from "@nats-io/nkeys";

// DER prefixes that wrap a raw 32-byte Ed25519 seed (PKCS#8) or public key (SPKI).
const PKCS8_ED25519 = Buffer.from("302e020100300506032b657004220420", "hex");
const SPKI_ED25519 = Buffer.from("302a300506032b6570032100", "hex");

/**
 * A KeyPair that signs with node:crypto; the nkeys KeyPair keeps the seed.
 * The public and private key are derived once: nkeys derives them from the
 * seed in pure JavaScript on every call (milliseconds each), and
 * @nats-io/jwt asks for both on every JWT it signs.
 */
export function nativeSigner(kp: KeyPair): KeyPair {
  const raw = (kp as unknown as { getRawSeed(): Uint8Array }).getRawSeed();
  const key = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519, raw]), format: "der", type: "pkcs8" });
  const pub = kp.getPublicKey();
  let priv: Uint8Array | undefined;
  return {
    getPublicKey: () => pub,
    getPrivateKey: () => (priv ??= kp.getPrivateKey()),
    getSeed: () => kp.getSeed(),
    sign: (input: Uint8Array) => new Uint8Array(sign(null, input, key)),
    verify: (input: Uint8Array, sig: Uint8Array) => verify(null, input, publicKeyObject(pub), sig),
    clear: () => {
      priv = undefined;
      kp.clear();
    },
    seal: kp.seal.bind(kp),
    open: kp.open.bind(kp),
  } as KeyPair;
}

const publicKeys = new Map<string, KeyObject>();

function publicKeyObject(nkey: string): KeyObject {
  let k = publicKeys.get(nkey);
  if (!k) {
    const raw = rawPublicKey(nkey);
    k = createPublicKey({ key: Buffer.concat([SPKI_ED25519, raw]), format: "der", type: "spki" });
    if (publicKeys.size > 64) publicKeys.clear(); // a handful of servers' keys; never grows unbounded
    publicKeys.set(nkey, k);
  }
  return k;
}

const BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/**
 * The 32 key bytes of a public nkey: base32 of one prefix byte, the key and
 * a CRC-16 (checked, so a mangled key never reaches verify). nkeys keeps its
 * own decoder internal, and this is a few lines.
 */
function rawPublicKey(nkey: string): Buffer {
  let bits = 0;
  let acc = 0;
  const out: number[] = [];
  for (const ch of nkey) {
    const v = BASE32.indexOf(ch);
    if (v < 0) throw new Error(`not an nkey: ${nkey}`);
    acc = (acc << 5) | v;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((acc >> bits) & 0xff);
    }
  }
  if (out.length !== 35) throw new Error(`not a public nkey: ${nkey}`);
  const body = out.slice(0, 33);
  const crc = out[33]! | (out[34]! << 8);
  if (crc16(body) !== crc) throw new Error(`nkey checksum mismatch: ${nkey}`);
  return Buffer.from(body.slice(1));
}

/** CRC-16/XMODEM, as nkeys uses it. */
function crc16(bytes: number[]): number {
  let crc = 0;
  for (const b of bytes) {
    crc ^= b << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/**
 * Decodes a NATS JWT after checking its signature with node:crypto. Throws
 * when the signature does not verify against its issuer (`iss`).
 */
export function decodeVerified<T>(jwt: string): T {
  const [h, b, s] = jwt.split(".");
  if (!h || !b || !s) throw new Error("not a JWT");
  // v2 NATS JWTs sign "header.body"; nats-server sends nothing else.
  const header = JSON.parse(Buffer.from(h, "base64url").toString("utf8")) as { alg?: string };
  if (header.alg !== "ed25519-nkey") throw new Error(`unexpected JWT algorithm ${header.alg}`);
  const claims = JSON.parse(Buffer.from(b, "base64url").toString("utf8")) as { iss?: string };
  if (typeof claims.iss !== "string") throw new Error("JWT without issuer");
  const ok = verify(null, Buffer.from(`${h}.${b}`), publicKeyObject(claims.iss), Buffer.from(s, "base64url"));
  if (!ok) throw new Error("JWT signature does not verify");
  return claims as T;
}
