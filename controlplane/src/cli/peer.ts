// `nats-tsnet peer list|remove`: cluster membership, seen from this host's node.
import type { Command } from "commander";
import { CONFIG_OPTION } from "./options.ts";

export function registerPeer(program: Command): void {
  const peer = program.command("peer").description("cluster membership, seen from this host's node");
  peer
    .command("list")
    .description("tailnet peers, routes and the JetStream meta group side by side")
    .option(...CONFIG_OPTION)
    .option("--json", "print JSON")
    .action(async (o: { config?: string; json?: boolean }) => {
      const { loadConfig } = await import("../config/mod.ts");
      const { peerList, formatPeerList } = await import("../cluster/peers.ts");
      const l = await peerList(loadConfig({ file: o.config }));
      process.stdout.write(o.json ? JSON.stringify(l, null, 2) + "\n" : formatPeerList(l));
    });
  peer
    .command("remove <name>")
    .description("remove a server that is gone for good from the JetStream meta group")
    .option(...CONFIG_OPTION)
    .action(async (name: string, o: { config?: string }) => {
      const { loadConfig } = await import("../config/mod.ts");
      const { peerRemove } = await import("../cluster/peers.ts");
      await peerRemove(loadConfig({ file: o.config }), name);
      process.stdout.write(`removed ${name} from the JetStream meta group\n`);
    });
}
