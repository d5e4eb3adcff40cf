// Where the executables nats-tsnet drives live. In a checkout,
// scripts/build.sh puts them in <repo>/.cache/bin; a release file carries
// the bridge and nats-server inside itself (embedded.ts). An environment
// variable overrides each one, so that packagers can point elsewhere.
import { accessSync, constants } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { MissingBinaryError } from "./errors.ts";
import { embeddedBinary, isReleaseFile } from "./embedded.ts";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

const BINARIES = {
  bridge: { file: "nats-tsnet-bridge", env: "NATS_TSNET_BRIDGE_BIN" },
  "nats-server": { file: "nats-server", env: "NATS_SERVER_BIN" },
  headscale: { file: "headscale", env: "HEADSCALE_BIN" },
  nats: { file: "nats", env: "NATS_CLI_BIN" },
  nsc: { file: "nsc", env: "NSC_BIN" },
} as const;
export type BinaryName = keyof typeof BINARIES;

export function binaryPath(name: BinaryName, env: NodeJS.ProcessEnv = process.env): string {
  const spec = BINARIES[name];
  const override = env[spec.env];
  if (!override && isReleaseFile()) return embeddedBinary(spec.file, env);
  const path = override || join(REPO_ROOT, ".cache", "bin", spec.file);
  try {
    accessSync(path, constants.X_OK);
  } catch (cause) {
    throw new MissingBinaryError(`${spec.file} not found at ${path}: run scripts/build.sh (or set ${spec.env})`, { cause });
  }
  return path;
}
