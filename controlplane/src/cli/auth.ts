// `nats-tsnet auth ...`: auth mode operator's store (operator, accounts,
// signing keys, roles, users and their .creds files) and pushing it to a
// running cluster.
import { InvalidArgumentError, type Command } from "commander";
import { ConfigError } from "../errors.ts";
import type { UserSpec } from "../auth/operator.ts";
import { CONFIG_OPTION, commaList, duration, limit } from "./options.ts";

// The operator code (nkeys, JWTs, a NATS client) loads when an auth command runs, not with every command.
const operator = () => import("../auth/operator.ts");

const DIR_OPTION = ["--dir <dir>", "the auth store", "nats-tsnet-auth"] as const;
const out = (line: string): void => {
  process.stdout.write(line + "\n");
};

export function registerAuth(program: Command): void {
  const auth = program.command("auth").description("auth mode operator: operator, accounts, users and .creds files");
  registerInit(auth);
  registerAccountAdd(auth.command("account").description("accounts"));
  registerKeys(auth.command("key").description("an account's signing keys (rotation)"));
  registerRoleAdd(auth.command("role").description("roles: scoped signing keys whose template is their users' permissions"));
  const user = auth.command("user").description("users");
  registerUserAdd(user);
  registerUserList(user);
  registerUserReissue(user);
  registerUserRevoke(user);
  registerPush(auth);
  registerImportNsc(auth);
}

function registerInit(auth: Command): void {
  auth
    .command("init")
    .description("make an operator (with a signing key) with its system account and an admin user")
    .option(...DIR_OPTION)
    .option("--operator <name>", "operator name", "nats-tsnet")
    .option("--no-strict", "let identity keys sign too (NATS recommends strict signing-key usage)")
    .action(async (o: { dir: string; operator: string; strict: boolean }) => {
      const { initStore } = await operator();
      const s = await initStore(o.dir, o.operator, { strict: o.strict });
      out(`operator ${s.operator.name} (${s.operator.pub}) with system account ${s.systemAccount.pub} in ${o.dir}`);
      if (s.operator.strict) out(`strict signing keys: operator.nk and accounts/*/account.nk can be moved off this host`);
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
    .description("add an account (with a signing key), or edit its limits")
    .option(...DIR_OPTION)
    .option("--max-conns <n>", "connections", limit)
    .option("--max-subs <n>", "subscriptions", limit)
    .option("--max-payload <n>", "bytes per message", limit)
    .option("--max-data <n>", "bytes in flight", limit)
    .option("--js-memory <n>", "JetStream memory bytes", limit)
    .option("--js-disk <n>", "JetStream disk bytes", limit)
    .option("--max-streams <n>", "JetStream streams", limit)
    .action(async (name: string, o: AccountFlags) => {
      const { addAccount } = await operator();
      const pub = await addAccount(o.dir, name, {
        conns: o.maxConns,
        subs: o.maxSubs,
        payload: o.maxPayload,
        data: o.maxData,
        jsMemory: o.jsMemory,
        jsDisk: o.jsDisk,
        streams: o.maxStreams,
      });
      out(`account ${name} (${pub}); push it to the cluster with 'nats-tsnet auth push'`);
    });
}

function registerKeys(key: Command): void {
  key
    .command("add")
    .description("add a signing key to an account; new and re-issued users are signed with it")
    .requiredOption("--account <name>", "the account")
    .option(...DIR_OPTION)
    .action(async (o: { account: string; dir: string }) => {
      const { addSigningKey } = await operator();
      out(await addSigningKey(o.dir, o.account));
    });
  key
    .command("remove <public-key>")
    .description("remove a signing key from an account and delete its seed; users it signed are refused after a push")
    .requiredOption("--account <name>", "the account")
    .option(...DIR_OPTION)
    .action(async (pub: string, o: { account: string; dir: string }) => {
      const { removeSigningKey } = await operator();
      await removeSigningKey(o.dir, o.account, pub);
      out(`removed ${pub} from ${o.account}; push it with 'nats-tsnet auth push'`);
    });
}

/** The permission flags shared by users and roles. */
function permissionFlags(cmd: Command): Command {
  return cmd
    .option("--pub-allow <subjects>", "comma-separated", commaList)
    .option("--pub-deny <subjects>", "comma-separated", commaList)
    .option("--sub-allow <subjects>", "comma-separated", commaList)
    .option("--sub-deny <subjects>", "comma-separated", commaList)
    .option("--resp-max <n>", "replies allowed per request received", limit)
    .option("--resp-ttl <duration>", "time allowed for those replies", duration)
    .option("--bearer", "bearer token (no nonce signing)")
    .option("--no-proxy-required", "also usable without a node's tailnet face (not recommended)");
}

interface PermissionFlags {
  pubAllow?: string[];
  pubDeny?: string[];
  subAllow?: string[];
  subDeny?: string[];
  respMax?: number;
  respTtl?: number;
  bearer?: boolean;
  proxyRequired: boolean;
}

const specOf = (o: PermissionFlags): UserSpec => ({
  pubAllow: o.pubAllow,
  pubDeny: o.pubDeny,
  subAllow: o.subAllow,
  subDeny: o.subDeny,
  respMax: o.respMax,
  respTtlMs: o.respTtl,
  bearer: o.bearer,
  proxyRequired: o.proxyRequired,
});

function registerRoleAdd(role: Command): void {
  permissionFlags(
    role
      .command("add <role>")
      .description(
        "add a role, or replace its permissions; subjects may use {{name()}}, {{tag(key)}} and the other templates of nats-server",
      )
      .requiredOption("--account <name>", "the account")
      .option(...DIR_OPTION),
  ).action(async (name: string, o: PermissionFlags & { account: string; dir: string }) => {
    const { addRole, permissionsOf } = await operator();
    const key = await addRole(o.dir, o.account, name, permissionsOf(specOf(o)));
    out(`role ${name} of ${o.account} (scoped signing key ${key}); push it with 'nats-tsnet auth push'`);
  });
}

interface UserFlags extends PermissionFlags {
  account: string;
  dir: string;
  expiry?: number;
  role?: string;
  signingKey?: string;
  tag?: string[];
}

function registerUserAdd(user: Command): void {
  permissionFlags(
    user
      .command("add <name>")
      .description("add a user and write its .creds file")
      .requiredOption("--account <name>", "the user's account")
      .option(...DIR_OPTION)
      .option("--role <role>", "take the permissions of this role (no permission flags then)")
      .option("--signing-key <public-key>", "sign with this signing key of the account")
      .option("--tag <key:value>", "a JWT tag (repeatable), read by a role's {{tag(key)}}", (v, acc: string[] = []) => [...acc, v])
      .option("--expiry <duration>", "the credentials expire after this", duration),
  ).action(async (name: string, o: UserFlags) => {
    // commander sets proxyRequired true by default: only an explicit --no-proxy-required counts for a role's user.
    const spec = specOf(o);
    if (o.role && o.proxyRequired) delete spec.proxyRequired;
    const { addUser } = await operator();
    out(await addUser(o.dir, o.account, name, { ...spec, role: o.role, signingKey: o.signingKey, tags: o.tag, expiresInMs: o.expiry }));
  });
}

function registerUserList(user: Command): void {
  user
    .command("list")
    .description("the users with .creds in the store, and whether nats-server would accept them (ok, expired, revoked, unknown-signer)")
    .requiredOption("--account <name>", "the account")
    .option(...DIR_OPTION)
    .action(async (o: { account: string; dir: string }) => {
      const { listUsers } = await operator();
      for (const u of await listUsers(o.dir, o.account))
        out(
          [u.name, u.pub, u.state, u.role ? `role=${u.role}` : `signer=${u.signer}`, u.expires ? `expires=${u.expires.toISOString()}` : ""]
            .join("\t")
            .trimEnd(),
        );
    });
}

function registerUserReissue(user: Command): void {
  user
    .command("reissue [names...]")
    .description("sign users again with the account's current signing key (all users without names); their .creds change")
    .requiredOption("--account <name>", "the account")
    .option(...DIR_OPTION)
    .action(async (names: string[], o: { account: string; dir: string }) => {
      const { reissueUsers } = await operator();
      for (const u of await reissueUsers(o.dir, o.account, names.length ? names : undefined)) out(`${u.path}\t${u.signer}`);
    });
}

/** The store named by --config (and a node to push through), else --dir. */
async function storeOf(o: { dir: string; config?: string }): Promise<{ dir: string; port?: number }> {
  if (!o.config) return { dir: o.dir };
  const { loadConfig } = await import("../config/mod.ts");
  const c = loadConfig({ file: o.config });
  if (c.auth.mode !== "operator") throw new ConfigError("ERR_AUTH_MODE", `this needs auth.mode operator (the node runs ${c.auth.mode})`);
  return { dir: c.auth.operator_dir, port: c.nats.loopback.client_port };
}

function epochSeconds(v: string): number {
  const ms = v === "now" ? Date.now() : Date.parse(v);
  if (Number.isNaN(ms)) throw new InvalidArgumentError('must be "now" or a date like 2026-01-31T12:00:00Z');
  return Math.floor(ms / 1000);
}

function registerUserRevoke(user: Command): void {
  user
    .command("revoke [user]")
    .description("revoke a user (a name in the store or a public key U...), or with --all-before every user issued until then")
    .requiredOption("--account <name>", "the account")
    .option(...DIR_OPTION)
    .option(CONFIG_OPTION[0], "push the account through this node right away (its operator_dir is the store)")
    .option("--all-before <time>", '"now" or an ISO date', epochSeconds)
    .action(async (who: string | undefined, o: { account: string; dir: string; config?: string; allBefore?: number }) => {
      if (!who && o.allBefore === undefined) throw new InvalidArgumentError("name a user or give --all-before");
      const s = await storeOf(o);
      const { pushAccounts, revokeAllBefore, revokeUser } = await operator();
      if (who) out(`revoked ${await revokeUser(s.dir, o.account, who)}`);
      if (o.allBefore !== undefined) {
        await revokeAllBefore(s.dir, o.account, o.allBefore);
        out(`revoked every user of ${o.account} issued until ${new Date(o.allBefore * 1000).toISOString()}`);
      }
      if (s.port === undefined) {
        out(`push it with 'nats-tsnet auth push' to take effect`);
        return;
      }
      for (const r of await pushAccounts(s.dir, s.port, [o.account])) out(`${r.account}: ${r.result}`);
    });
}

function registerPush(auth: Command): void {
  auth
    .command("push")
    .description("push every account to the cluster through this host's node (the full resolver spreads them)")
    .option(...CONFIG_OPTION)
    .option("--account <name>", "only this account")
    .action(async (o: { config?: string; account?: string }) => {
      const [{ loadConfig }, { pushAccounts }] = await Promise.all([import("../config/mod.ts"), operator()]);
      const c = loadConfig({ file: o.config });
      if (c.auth.mode !== "operator")
        throw new ConfigError("ERR_AUTH_MODE", `auth push needs auth.mode operator (the node runs ${c.auth.mode})`);
      for (const r of await pushAccounts(c.auth.operator_dir, c.nats.loopback.client_port, o.account ? [o.account] : undefined))
        out(`${r.account}: ${r.result}`);
    });
}

function registerImportNsc(auth: Command): void {
  auth
    .command("import-nsc")
    .description("take over an operator made with nsc (strict or not, with its signing keys and roles)")
    .requiredOption("--operator-dir <dir>", "nsc's store directory of the operator (…/stores/<operator>)")
    .requiredOption("--nkeys-dir <dir>", "nsc's nkeys directory")
    .option(...DIR_OPTION)
    .action(async (o: { operatorDir: string; nkeysDir: string; dir: string }) => {
      const { importNsc } = await operator();
      const s = await importNsc({ operatorDir: o.operatorDir, nkeysDir: o.nkeysDir, dest: o.dir });
      out(`imported operator ${s.operator.name} with ${s.accounts.length} accounts into ${o.dir}`);
      for (const k of s.missing) out(`note: no seed for signing key ${k} under ${o.nkeysDir}: what it signs cannot be done here`);
    });
}
