// `nats-tsnet dev` belongs to the repository, not to the node: it runs a
// local tailnet (headscale in network namespaces), which an installed node
// must never carry. The command is named here only to say where it lives.
import type { Command } from "commander";
import { UsageError } from "../errors.ts";

export function registerDev(program: Command): void {
  program
    .command("dev", { hidden: true })
    .allowUnknownOption()
    .allowExcessArguments()
    .description("(in a checkout: ./run dev)")
    .action(() => {
      throw new UsageError(
        "ERR_DEV_NOT_HERE",
        "dev runs a local tailnet and lives in the nats-tsnet repository: run ./run dev in a checkout",
      );
    });
}
