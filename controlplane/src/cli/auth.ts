// `nats-tsnet auth ...`: auth mode operator's store (operator, accounts,
// users and their .creds files) and pushing it to a running cluster.
import type { Command } from "commander";
import { loadConfig } from "../config/mod.ts";
import { ConfigError } from "../errors.ts";
import { addAccount, addUser, importNsc, initStore, pushAccounts } from "../auth/operator.ts";
import { CONFIG_OPTION, commaList, duration, limit } from "./options.ts";

const DIR_OPTION = ["--dir <dir>", "the auth store", "nats-tsnet-auth"] as const;

export function registerAuth(program: Command): void {
  const auth = program.command("auth").description("auth mode operator: operator, accounts, users and .creds files");
  registerInit(auth);
  registerAccountAdd(auth.command("account").description("accounts"));
  registerUserAdd(auth.command("user").description("users"));
  registerPush(auth);
  registerImportNsc(auth);
}

function registerInit(auth: Command): void {
  auth
    .command("init")
    .description("make an operator with its system account and an admin user")
    .option(...DIR_OPTION)
    .option("--operator <name>", "operator name", "nats-tsnet")
    .action(async (o: { dir: string; operator: string }) => {
      const s = await initStore(o.dir, o.operator);
      process.stdout.write(`operator ${s.operator.name} (${s.operator.pub}) with system account ${s.systemAccount.pub} in ${o.dir}\n`);
    });
}

interface AccountFlags {
  dir: string;
  maxConns?: number;
  maxSubs?: number;
  maxPayload?: number;
  maxData?: number;
  jsMemory?: number;
  jsDisk?: number;
  maxStreams?: number;
}

function registerAccountAdd(account: Command): void {
  account
    .command("add <name>")
    .description("add or edit an account")
    .option(...DIR_OPTION)
    .option("--max-conns <n>", "connections", limit)
    .option("--max-subs <n>", "subscriptions", limit)
    .option("--max-payload <n>", "bytes per message", limit)
    .option("--max-data <n>", "bytes in flight", limit)
    .option("--js-memory <n>", "JetStream memory bytes", limit)
    .option("--js-disk <n>", "JetStream disk bytes", limit)
    .option("--max-streams <n>", "JetStream streams", limit)
    .action(async (name: string, o: AccountFlags) => {
      const pub = await addAccount(o.dir, name, {
        conns: o.maxConns,
        subs: o.maxSubs,
        payload: o.maxPayload,
        data: o.maxData,
        jsMemory: o.jsMemory,
        jsDisk: o.jsDisk,
        streams: o.maxStreams,
      });
      process.stdout.write(`account ${name} (${pub}); push it to the cluster with 'nats-tsnet auth push'\n`);
    });
}

interface UserFlags {
  account: string;
  dir: string;
  pubAllow?: string[];
  pubDeny?: string[];
  subAllow?: string[];
  subDeny?: string[];
  respMax?: number;
  respTtl?: number;
  expiry?: number;
  bearer?: boolean;
  proxyRequired: boolean;
}

function registerUserAdd(user: Command): void {
  user
    .command("add <name>")
    .description("add a user and write its .creds file")
    .requiredOption("--account <name>", "the user's account")
    .option(...DIR_OPTION)
    .option("--pub-allow <subjects>", "comma-separated", commaList)
    .option("--pub-deny <subjects>", "comma-separated", commaList)
    .option("--sub-allow <subjects>", "comma-separated", commaList)
    .option("--sub-deny <subjects>", "comma-separated", commaList)
    .option("--resp-max <n>", "replies allowed per request received", limit)
    .option("--resp-ttl <duration>", "time allowed for those replies", duration)
    .option("--expiry <duration>", "the credentials expire after this", duration)
    .option("--bearer", "bearer token (no nonce signing)")
    .option("--no-proxy-required", "also usable without a node's tailnet face (not recommended)")
    .action(async (name: string, o: UserFlags) => {
      const path = await addUser(o.dir, o.account, name, {
        pubAllow: o.pubAllow,
        pubDeny: o.pubDeny,
        subAllow: o.subAllow,
        subDeny: o.subDeny,
        respMax: o.respMax,
        respTtlMs: o.respTtl,
        expiresInMs: o.expiry,
        bearer: o.bearer,
        proxyRequired: o.proxyRequired,
      });
      process.stdout.write(`${path}\n`);
    });
}

function registerPush(auth: Command): void {
  auth
    .command("push")
    .description("push every account to the cluster through this host's node (the full resolver spreads them)")
    .option(...CONFIG_OPTION)
    .action(async (o: { config?: string }) => {
      const c = loadConfig({ file: o.config });
      if (c.auth.mode !== "operator")
        throw new ConfigError("ERR_AUTH_MODE", `auth push needs auth.mode operator (the node runs ${c.auth.mode})`);
      for (const r of await pushAccounts(c.auth.operator_dir, c.nats.loopback.client_port))
        process.stdout.write(`${r.account}: ${r.result}\n`);
    });
}

function registerImportNsc(auth: Command): void {
  auth
    .command("import-nsc")
    .description("take over an operator made with nsc")
    .requiredOption("--operator-dir <dir>", "nsc's store directory of the operator (…/stores/<operator>)")
    .requiredOption("--nkeys-dir <dir>", "nsc's nkeys directory")
    .option(...DIR_OPTION)
    .action(async (o: { operatorDir: string; nkeysDir: string; dir: string }) => {
      const s = await importNsc({ operatorDir: o.operatorDir, nkeysDir: o.nkeysDir, dest: o.dir });
      process.stdout.write(`imported operator ${s.operator.name} with ${s.accounts.length} accounts into ${o.dir}\n`);
    });
}
