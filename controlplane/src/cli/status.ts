// `nats-tsnet status`: the cluster as this host's node sees it, read from the
// node's loopback observe port (/status).
import type { Command } from "commander";
import { CONFIG_OPTION } from "./options.ts";

export function registerStatus(program: Command): void {
  program
    .command("status")
    .description("this node, every member and the path to it, the meta group, streams, and who is connected")
    .option(...CONFIG_OPTION)
    .option("--json", "print JSON")
    .option("--watch [seconds]", "refresh in place (every 2 s unless given)")
    .action(async (o: { config?: string; json?: boolean; watch?: boolean | string }) => {
      const { loadConfig } = await import("../config/mod.ts");
      const { fetchStatus } = await import("../observe/client.ts");
      const { formatStatus } = await import("../observe/format.ts");
      const config = loadConfig({ file: o.config });
      const show = async () => {
        const s = await fetchStatus(config);
        return o.json ? JSON.stringify(s, null, 2) + "\n" : formatStatus(s);
      };
      if (!o.watch) {
        process.stdout.write(await show());
        return;
      }
      const every = typeof o.watch === "string" ? Math.max(0.5, Number(o.watch) || 2) : 2;
      for (;;) {
        const text = await show().catch((e: Error) => `${e.message}\n`);
        // Home the cursor and clear the screen: the picture is redrawn in place.
        process.stdout.write(`\x1b[H\x1b[2J${text}\n(every ${every} s; Ctrl-C to stop)\n`);
        await new Promise((r) => setTimeout(r, every * 1000));
      }
    });
}
