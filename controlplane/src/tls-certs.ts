// Certificates from a small private CA, for the client face's TLS: the
// bridge makes them (`nats-tsnet-bridge cert`, crypto/x509), so neither
// dev nor the tests nor a user without a PKI need openssl.
import { execFileSync } from "node:child_process";
import { binaryPath } from "./binaries.ts";

export interface CertRequest {
  /** Holds ca.pem and ca.key (made on first use) and the new pair. */
  dir: string;
  /** Files <name>.pem and <name>.key. */
  name: string;
  cn: string;
  dns?: string[];
  ips?: string[];
  /** A client certificate (mTLS) rather than a server one. */
  client?: boolean;
  /** Validity from now, as Go writes durations ("8760h"; negative: already expired). */
  valid?: string;
}

export interface CertFiles {
  ca: string;
  cert: string;
  key: string;
  /** How tls.revoked names it. */
  serial: string;
  sha256: string;
}

export function issueCert(r: CertRequest): CertFiles {
  const args = ["cert", "--dir", r.dir, "--name", r.name, "--cn", r.cn];
  if (r.dns?.length) args.push("--dns", r.dns.join(","));
  if (r.ips?.length) args.push("--ip", r.ips.join(","));
  if (r.client) args.push("--client");
  if (r.valid) args.push(`--valid=${r.valid}`);
  return JSON.parse(execFileSync(binaryPath("bridge"), args, { encoding: "utf8" })) as CertFiles;
}
