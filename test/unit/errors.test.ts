import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import {
  BridgeError,
  CODES,
  ConfigError,
  EXIT_CODE_OF,
  ExitCode,
  REPO_ROOT,
  TailnetError,
  UsageError,
  errorFromCode,
  isErrorCode,
} from "../../controlplane/src/mod.ts";

/** The README's "| Exit | Codes |" table: exit code -> the codes listed in its row. */
function readmeTable(): Map<number, Set<string>> {
  const text = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
  const start = text.indexOf("| Exit | Codes |");
  assert.ok(start >= 0, "README has no '| Exit | Codes |' table");
  const rows = new Map<number, Set<string>>();
  for (const line of text.slice(start).split("\n").slice(2)) {
    const m = /^\| (\d+) \| (.*) \|$/.exec(line);
    if (!m) break;
    rows.set(Number(m[1]), new Set(m[2]!.match(/`(ERR_[A-Z_]+)`/g)!.map((c) => c.slice(1, -1))));
  }
  return rows;
}

describe("errors: one closed set", () => {
  test("every code belongs to exactly one class", () => {
    const all = Object.values(CODES).flat();
    assert.equal(new Set(all).size, all.length, "a code appears in two rows");
    assert.equal(EXIT_CODE_OF.size, all.length);
  });

  test("the README's table of codes is the map, exit code by exit code", () => {
    const readme = readmeTable();
    const fromMap = new Map<number, Set<string>>();
    for (const [code, exit] of EXIT_CODE_OF) fromMap.set(exit, (fromMap.get(exit) ?? new Set()).add(code));
    assert.deepEqual([...readme.keys()].sort(), [...fromMap.keys()].sort(), "exit codes with codes");
    for (const [exit, codes] of fromMap) assert.deepEqual([...readme.get(exit)!].sort(), [...codes].sort(), `exit ${exit}`);
  });

  test("every code the bridge declares (dataplane/bridge/codes.go) is in the map", () => {
    const go = readFileSync(join(REPO_ROOT, "dataplane", "bridge", "codes.go"), "utf8");
    const declared = [...go.matchAll(/^\s*Err\w+\s*=\s*"(ERR_[A-Z_]+)"/gm)].map((m) => m[1]!);
    assert.ok(declared.length >= 10, `found only ${declared.length} Go codes`);
    for (const code of declared) assert.ok(isErrorCode(code), `${code} is declared in Go but missing from CODES`);
  });

  test("a class fixes the exit code", () => {
    assert.equal(new UsageError("ERR_USAGE", "x").exitCode, ExitCode.usage);
    assert.equal(new ConfigError("ERR_CONFIG_READ", "x").exitCode, ExitCode.config);
    assert.equal(new TailnetError("ERR_TAILNET_AUTH", "x").exitCode, ExitCode.tailnet);
    assert.equal(new BridgeError("ERR_WHOIS", "x").exitCode, ExitCode.failure);
  });

  test("a code from the bridge becomes its own class; an unknown one is ERR_BRIDGE", () => {
    const auth = errorFromCode("ERR_TAILNET_AUTH", "refused");
    assert.ok(auth instanceof TailnetError);
    assert.equal(auth.code, "ERR_TAILNET_AUTH");
    const listen = errorFromCode("ERR_LISTEN", "taken");
    assert.ok(listen instanceof UsageError);
    assert.equal(listen.exitCode, ExitCode.usage);
    const odd = errorFromCode("ERR_SOMETHING_NEW", "what");
    assert.ok(odd instanceof BridgeError);
    assert.equal(odd.code, "ERR_BRIDGE");
    assert.match(odd.message, /ERR_SOMETHING_NEW/);
  });
});
