// Each account's budget and ceilings, the identity quota every connection
// starts with, the config errors a budget that cannot hold gives, and that
// nats-server takes the rendered budgets, on start and on reload.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { createAccount, createServer } from "@nats-io/nkeys";
import {
  accountBudgets,
  binaryPath,
  identityQuota,
  loadConfig,
  renderNatsServerConfig,
  type AuthPieces,
  type Config,
  type ConfigInput,
} from "../../controlplane/src/mod.ts";

const tmp = mkdtempSync(join(tmpdir(), "nt-budgets-"));
after(() => rmSync(tmp, { recursive: true, force: true }));
const MB = 2 ** 20;

function config(overrides: ConfigInput = {}): Config {
  return loadConfig({ env: {}, overrides: { hostname: "nats-1", state_dir: join(tmp, "state"), ...overrides } });
}
const noHost = () => {
  throw new Error("the host was asked although the config says everything");
};

describe("account budgets", () => {
  test("an even share of the server's JetStream budget, after the accounts with their own", () => {
    const c = config({
      nats: { jetstream: { max_memory: "64MB", max_file: "1GB" } },
      auth: { accounts: ["APP", "OPS", "TEAM"], account_overrides: { OPS: { max_file: "512MB", max_memory: -1 } } },
    });
    const b = accountBudgets(c, noHost);
    assert.deepEqual([...b.keys()], ["APP", "OPS", "TEAM"]);
    assert.deepEqual(
      [...b.values()].map((x) => [x.maxMemory, x.maxFile]),
      [
        [32 * MB, 256 * MB],
        [-1, 512 * MB],
        [32 * MB, 256 * MB],
      ],
    );
    const app = b.get("APP")!;
    assert.deepEqual(
      [app.maxStreams, app.maxConsumers, app.maxBytesRequired, app.maxConnections, app.maxSubscriptions, app.maxPayload],
      [100, 1000, false, 10_000, 100_000, -1],
    );
  });

  test("mode none budgets APP alone; an explicit zero is zero", () => {
    const c = config({
      nats: { jetstream: { max_file: "1GB", max_memory: "1GB" } },
      auth: { mode: "none", account_limits: { max_memory: 0 } },
    });
    assert.deepEqual(
      [...accountBudgets(c, noHost)].map(([a, x]) => [a, x.maxMemory, x.maxFile]),
      [["APP", 0, 2 ** 30]],
    );
  });

  test("without a server budget, the share is of what nats-server would take on this host", () => {
    const c = config({ auth: { accounts: ["APP", "OPS"] } });
    const b = accountBudgets(c, () => ({ memory: 100 * MB, file: 10 * 2 ** 30 }));
    assert.deepEqual([b.get("OPS")!.maxMemory, b.get("OPS")!.maxFile], [50 * MB, 5 * 2 ** 30]);
    const real = accountBudgets(config()).get("APP")!;
    assert.equal(real.maxMemory, Math.floor(totalmem() / 4) * 3);
    assert.ok(real.maxFile > 0, String(real.maxFile));
  });

  test("ceilings and the rest come from account_limits, per account from account_overrides", () => {
    const c = config({
      nats: { jetstream: { max_memory: "1GB", max_file: "1GB" } },
      auth: {
        accounts: ["APP", "OPS"],
        account_limits: { max_streams: 5, max_connections: 50, max_payload: "64KB", max_bytes_required: true },
        account_overrides: { OPS: { max_streams: -1, max_subscriptions: 10 } },
      },
    });
    const b = accountBudgets(c, noHost);
    assert.deepEqual(
      [b.get("APP")!.maxStreams, b.get("APP")!.maxSubscriptions, b.get("APP")!.maxPayload, b.get("APP")!.maxBytesRequired],
      [5, 100_000, 64 * 1024, true],
    );
    assert.deepEqual([b.get("OPS")!.maxStreams, b.get("OPS")!.maxSubscriptions, b.get("OPS")!.maxConnections], [-1, 10, 50]);
  });

  test("the quota a connection starts with stays under every account's ceiling", () => {
    const c = config({
      auth: { accounts: ["APP", "OPS"], limits: { subs: 5000, payload: -1 }, account_overrides: { OPS: { max_subscriptions: 800 } } },
    });
    assert.deepEqual(identityQuota(c.auth, undefined), { subs: 800, payload: -1 });
    assert.deepEqual(identityQuota(c.auth, "APP"), { subs: 5000, payload: -1 });
    assert.deepEqual(identityQuota(config().auth, undefined), { subs: 1000, payload: MB });
  });
});

describe("budgets that cannot hold are config errors", () => {
  const refused = (overrides: ConfigInput, re: RegExp) =>
    assert.throws(
      () => config(overrides),
      (e: Error & { code?: string }) => {
        assert.equal(e.code, "ERR_CONFIG_INVALID");
        assert.match(e.message, re);
        return true;
      },
    );

  test("overrides name accounts clients land in, never SYS", () => {
    refused({ auth: { account_overrides: { OPS: { max_streams: 1 } } } }, /account_overrides\.OPS: no such account/);
    refused({ auth: { accounts: ["APP", "OPS"], account_overrides: { SYS: {} } } }, /account_overrides\.SYS: no such account/);
    refused({ auth: { mode: "none", accounts: ["X"], account_overrides: { X: {} } } }, /account_overrides\.X/);
    config({ auth: { mode: "none", accounts: ["X"], account_overrides: { APP: { max_streams: 1 } } } });
  });

  test("a standalone server's budget is not promised twice; a share is never left at nothing", () => {
    const js = { max_memory: "1GB", max_file: "1GB" };
    refused(
      { nats: { standalone: true, jetstream: js }, auth: { accounts: ["APP", "OPS"], account_limits: { max_file: "600MB" } } },
      /max_file add up to .* more than nats\.jetstream\.max_file/,
    );
    refused(
      { nats: { jetstream: js }, auth: { accounts: ["APP", "OPS"], account_overrides: { APP: { max_memory: "1GB" } } } },
      /leave nothing of nats\.jetstream\.max_memory for OPS/,
    );
    // A cluster's budgets count every replica on every node: more than one node's budget is fine.
    config({ nats: { jetstream: js }, auth: { accounts: ["APP", "OPS"], account_limits: { max_file: "3GB" } } });
  });

  test("limits are whole numbers or sizes, -1 for none", () => {
    refused({ auth: { limits: { subs: -2 } } }, /auth\.limits\.subs: must be a whole number, or -1/);
    refused({ auth: { account_limits: { max_file: "lots" } } }, /max_file: must be a size/);
    refused({ auth: { account_limits: { max_payload: "3GB" } } }, /max_payload must be below 2GB/);
    refused({ auth: { account_limits: { max_conns: 1 } as never } }, /unknown key/);
  });
});

describe("nats-server takes the rendered budgets", () => {
  const natsServer = (() => {
    try {
      return binaryPath("nats-server");
    } catch {
      return undefined;
    }
  })();
  const proxyKey = createServer().getPublicKey();
  const sys = { user: "sys", password: "sys-pw" };

  /** A standalone nats-server on free loopback ports, run from the config rendered for c. */
  function serve(name: string, input: (port: number) => ConfigInput, auth: AuthPieces) {
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    const conf = join(tmp, name, "nats-server.conf");
    mkdirSync(join(tmp, name), { recursive: true });
    const write = (c: ConfigInput) => writeFileSync(conf, renderNatsServerConfig(config(c), { auth }));
    write(input(port));
    const child = spawn(natsServer!, ["-c", conf], { stdio: ["ignore", "pipe", "pipe"] });
    let log = "";
    child.stdout.on("data", (d) => (log += d));
    child.stderr.on("data", (d) => (log += d));
    after(() => child.kill("SIGKILL"));
    /** An account's JetStream figures: a standalone server shows each account's budget as its reservation. */
    const account = async (acc: string) => {
      const r = await fetch(`http://127.0.0.1:${port + 2}/jsz?accounts=true`);
      const jsz = (await r.json()) as { account_details?: Array<{ name: string } & Record<string, unknown>> };
      return jsz.account_details?.find((a) => a.name === acc);
    };
    const until = async (acc: string, want: Record<string, unknown>) => {
      let last: unknown;
      for (let i = 0; i < 100; i++) {
        last = await account(acc).catch((e: Error) => e.message);
        if (last && typeof last === "object" && Object.entries(want).every(([k, v]) => (last as Record<string, unknown>)[k] === v)) return;
        await sleep(200);
      }
      assert.fail(`${acc}'s JetStream account ${JSON.stringify(last)} never showed ${JSON.stringify(want)}; log:\n${log}`);
    };
    const reload = (c: ConfigInput) => {
      write(c);
      child.kill("SIGHUP");
    };
    return { port, until, reload, log: () => log, text: () => renderNatsServerConfig(config(input(port)), { auth }) };
  }
  const ports = (port: number) => ({ client_port: port, cluster_port: port + 1, monitor_port: port + 2 });

  test("on start and on reload (built by scripts/build.sh)", { skip: !natsServer }, async () => {
    const base = (port: number): ConfigInput => ({
      hostname: "budget-1",
      state_dir: join(tmp, "serve"),
      nats: { standalone: true, loopback: ports(port), jetstream: { max_memory: "64MB", max_file: "256MB" } },
      auth: { mode: "none" },
    });
    const s = serve("serve", base, { mode: "none", proxyKey, sys, appPassword: "x" });
    await s.until("APP", { reserved_memory: 64 * MB, reserved_storage: 256 * MB });
    s.reload({ ...base(s.port), auth: { mode: "none", account_limits: { max_file: "128MB" } } });
    await s.until("APP", { reserved_memory: 64 * MB, reserved_storage: 128 * MB });
  });

  test(
    "without a server budget: the host's, written down beside the shares, so a standalone server takes both and reloads",
    {
      skip: !natsServer,
    },
    async () => {
      const input = (port: number): ConfigInput => ({
        hostname: "budget-2",
        state_dir: join(tmp, "serve-host"),
        nats: { standalone: true, loopback: ports(port) },
        auth: { accounts: ["APP", "OPS", "TEAM"] },
      });
      const auth: AuthPieces = {
        mode: "tailnet",
        proxyKey,
        sys,
        callout: { user: "auth", password: "auth-pw", issuer: createAccount().getPublicKey() },
      };
      const s = serve("serve-host", input, auth);
      const text = s.text();
      const memory = Number(/^ {2}max_memory_store: (\d+)$/m.exec(text)?.[1]);
      const file = Number(/^ {2}max_file_store: (\d+)$/m.exec(text)?.[1]);
      assert.equal(memory, Math.floor(totalmem() / 4) * 3);
      assert.ok(file > 0);
      const share = { reserved_memory: Math.floor(memory / 3), reserved_storage: Math.floor(file / 3) };
      for (const acc of ["APP", "OPS", "TEAM"]) await s.until(acc, share);
      s.reload(input(s.port));
      await sleep(1000);
      for (const acc of ["APP", "OPS", "TEAM"]) await s.until(acc, share);
      assert.doesNotMatch(s.log(), /insufficient|Error enabling jetstream/i);
    },
  );
});
