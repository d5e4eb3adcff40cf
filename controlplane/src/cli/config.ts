// `nats-tsnet config check|render`: what a node would run with, without running it.
import type { Command } from "commander";
import { CONFIG_OPTION } from "./options.ts";

export function registerConfig(program: Command): void {
  const cfg = program.command("config").description("check or show configuration");
  cfg
    .command("check")
    .description("validate a config file; prints the effective config with secrets redacted")
    .option(...CONFIG_OPTION)
    .action(async (o: { config?: string }) => {
      const { loadConfig, redactConfig } = await import("../config/mod.ts");
      const c = loadConfig({ file: o.config });
      process.stdout.write(JSON.stringify(redactConfig(c), null, 2) + "\n");
    });
  cfg
    .command("render")
    .description("print the nats-server config a node would run with (without its secrets and peers)")
    .option(...CONFIG_OPTION)
    .action(async (o: { config?: string }) => {
      const { loadConfig, natsServerConfPath, renderNatsServerConfig } = await import("../config/mod.ts");
      const c = loadConfig({ file: o.config });
      process.stdout.write(renderNatsServerConfig(c, { confPath: natsServerConfPath(c) }));
    });
}
