// Shared by the unit tests.
import assert from "node:assert/strict";
import { ConfigError, ExitCode } from "../../controlplane/src/mod.ts";

/** Runs fn, which must throw a ConfigError (exit code 3); returns it for its code. */
export function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.equal(err.exitCode, ExitCode.config);
    return err;
  }
  assert.fail("expected a ConfigError");
}
