// Files other processes read while we write them (nats-server's config on a
// reload, status.json for `peer list`, secrets.json at the next start): each
// is written whole to a temporary name and renamed over the old one, so a
// reader sees the old file or the new one, never half of either.
import { renameSync, writeFileSync } from "node:fs";

export function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o600): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, data, { mode });
  renameSync(tmp, path);
}
