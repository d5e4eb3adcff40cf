// `nats-tsnet version` (also `nats-tsnet --version`): this build's version
// and commit and the versions it carries; `--json` for scripts.
import type { Command } from "commander";
import { REPO_ROOT } from "../binaries.ts";
import { isReleaseFile } from "../embedded.ts";
import { formatVersion, versionReport } from "../version.ts";

export function registerVersion(program: Command): void {
  program
    .command("version")
    .description("print the version and commit, and the versions of Node, nats-server and tailscale.com inside")
    .option("--json", "one JSON object")
    .action((o: { json?: boolean }) => {
      const r = versionReport(REPO_ROOT, isReleaseFile());
      process.stdout.write(o.json ? JSON.stringify(r) + "\n" : formatVersion(r));
    });
}
