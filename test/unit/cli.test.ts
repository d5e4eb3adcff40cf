import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { describe, test } from "node:test";
import { ExitCode, isErrorCode } from "../../controlplane/src/mod.ts";
import { CLI } from "../../localtailnet/mod.ts";
import { parseListen } from "../../localtailnet/dev.ts";

function cli(args: string[]): { status: number | null; code?: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8" });
  return { status: r.status, code: /^nats-tsnet: (ERR_[A-Z_]+):/m.exec(r.stderr)?.[1] };
}

describe("command line", () => {
  test("an installed nats-tsnet has no dev: usage exit code and ERR_DEV_NOT_HERE", () => {
    assert.deepEqual(cli(["dev", "--nodes", "3"]), { status: ExitCode.usage, code: "ERR_DEV_NOT_HERE" });
  });

  test("a failure prints its stable code, which is one of the closed set", () => {
    const r = cli(["config", "check", "--config", "/nonexistent/nats-tsnet.yaml"]);
    assert.equal(r.status, ExitCode.config);
    assert.equal(r.code, "ERR_CONFIG_READ");
    assert.ok(isErrorCode(r.code!));
  });

  test("dev --listen: any 127.x.x.x:port is taken as given; anything else is ERR_DEV_LISTEN", () => {
    assert.deepEqual(parseListen("127.2.3.4:5000"), { host: "127.2.3.4", port: 5000 });
    assert.deepEqual(parseListen("127.0.0.1:0"), { host: "127.0.0.1", port: 0 });
    for (const bad of ["10.0.0.1:4222", "0.0.0.0:4222", "localhost:4222", "127.0.0.300:1", "127.0.0.1:70000", "127.0.0.1"]) {
      assert.throws(() => parseListen(bad), { code: "ERR_DEV_LISTEN", exitCode: ExitCode.usage }, bad);
    }
  });
});
