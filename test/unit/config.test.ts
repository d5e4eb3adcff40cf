import assert from "node:assert/strict";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { hostname as osHostname, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, describe, test } from "node:test";
import { configError } from "./helpers.ts";
import {
  configJsonSchema,
  loadConfig,
  redactConfig,
  resolveAuthKey,
  resolveClusterKey,
  sanitizeHostname,
  type Config,
  SCHEMA_FILE,
  schemaFileText,
  issueCert,
} from "../../controlplane/src/mod.ts";

const repoRoot = resolve(import.meta.dirname, "../..");
const tmp = mkdtempSync(join(tmpdir(), "nats-tsnet-config-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

let n = 0;
/** Writes `text` to a fresh directory and returns the file's path. */
function write(text: string, name = "config.yaml"): string {
  const dir = join(tmp, String(n++));
  mkdirSync(dir);
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

const noEnv = {};

describe("loadConfig defaults", () => {
  test("no file: every default, paths against the cwd, frozen", () => {
    const c = loadConfig({ env: noEnv });
    const hostname = sanitizeHostname(osHostname());
    const state = resolve("nats-tsnet-state");
    assert.deepEqual(c, {
      hostname,
      state_dir: state,
      tailnet: {
        control_url: "",
        auth_key: "",
        auth_key_file: "",
        client_secret: "",
        client_secret_file: "",
        client_id: "",
        id_token: "",
        id_token_file: "",
        audience: "",
        tags: [],
        cluster_tag: "tag:nats-js",
        cluster_key_file: "",
        ephemeral: false,
        up_timeout_ms: 60_000,
      },
      nats: {
        server_name: hostname,
        cluster_name: "nats-js",
        client_port: 4222,
        cluster_port: 6222,
        monitor_port: 8222,
        websocket_port: 0,
        websocket_origins: [],
        local_faces: [],
        loopback: { client_port: 14222, cluster_port: 16222, monitor_port: 18222 },
        jetstream: {
          enabled: true,
          store_dir: join(state, "jetstream"),
          sync_interval_ms: "always",
          max_memory_bytes: null,
          max_file_bytes: null,
        },
        device_limits: { max_connections: 256, connect_rate: 20, connect_burst: 100 },
        tls: null,
        include: "",
        lame_duck_duration_ms: 30_000,
        lame_duck_grace_period_ms: 2_000,
        max_payload_bytes: null,
        standalone: false,
        debug: false,
        trace: false,
      },
      log: { format: "text", level: "info" },
      auth: {
        mode: "tailnet",
        operator_dir: "",
        capability: "nats-tsnet.dev/cap/nats",
        accounts: ["APP"],
        rules: [],
        limits: { subs: 1000, payload: "1MB" },
        account_limits: {
          max_memory: "",
          max_file: "",
          max_streams: 100,
          max_consumers: 1000,
          max_bytes_required: false,
          max_connections: 10_000,
          max_subscriptions: 100_000,
          max_payload: "",
        },
        account_overrides: {},
      },
      observe: { loopback_port: 18223 },
      source: { env: [] },
    } satisfies Config);
    assert.ok(Object.isFrozen(c) && Object.isFrozen(c.nats.loopback) && Object.isFrozen(c.tailnet.tags));
    assert.throws(() => {
      (c.nats as { client_port: number }).client_port = 1;
    }, TypeError);
  });

  test("sanitizeHostname keeps only what a device name allows", () => {
    assert.equal(sanitizeHostname("Build_Box.example.com"), "build-box");
    assert.equal(sanitizeHostname("--weird--"), "weird");
    assert.equal(sanitizeHostname("x".repeat(70)), "x".repeat(63));
    assert.equal(sanitizeHostname(`${"a".repeat(62)}_b`), "a".repeat(62));
    assert.equal(sanitizeHostname("___"), "nats-tsnet");
  });

  test("an empty file and empty sections mean defaults", () => {
    const defaults = loadConfig({ env: noEnv });
    const empty = loadConfig({ file: write(""), env: noEnv });
    const sections = loadConfig({ file: write("tailnet:\nnats:\n  jetstream:\n  loopback:\nlog:\n"), env: noEnv });
    for (const c of [empty, sections]) {
      assert.deepEqual(c.tailnet, defaults.tailnet);
      assert.deepEqual(c.log, defaults.log);
      assert.deepEqual({ ...c.nats, jetstream: null }, { ...defaults.nats, jetstream: null });
      assert.deepEqual({ ...c.nats.jetstream, store_dir: "" }, { ...defaults.nats.jetstream, store_dir: "" });
    }
  });
});

describe("config.example.yaml", () => {
  test("loads, and equals the defaults apart from hostname", () => {
    const file = join(repoRoot, "config.example.yaml");
    const example = loadConfig({ file, env: noEnv });
    const defaults = loadConfig({ env: noEnv, overrides: { hostname: "nats-1", state_dir: join(repoRoot, "nats-tsnet-state") } });
    assert.equal(example.hostname, "nats-1");
    assert.equal(example.nats.server_name, "nats-1");
    assert.deepEqual(example.source, { file, env: [] });
    assert.deepEqual({ ...example, source: undefined }, { ...defaults, source: undefined });
  });
});

describe("relative paths", () => {
  test("resolve against the config file's directory", () => {
    const file = write("state_dir: st\ntailnet:\n  auth_key_file: secrets/key\nnats:\n  jetstream:\n    store_dir: ../js\n");
    const dir = resolve(file, "..");
    const c = loadConfig({ file, env: noEnv });
    assert.equal(c.state_dir, join(dir, "st"));
    assert.equal(c.tailnet.auth_key_file, join(dir, "secrets/key"));
    assert.equal(c.nats.jetstream.store_dir, resolve(dir, "../js"));
  });

  test("default state_dir sits next to the config file", () => {
    const file = write("hostname: a\n");
    assert.equal(loadConfig({ file, env: noEnv }).state_dir, join(resolve(file, ".."), "nats-tsnet-state"));
  });
});

describe("environment overrides", () => {
  test("win over the file and are listed in source.env", () => {
    const file = write("hostname: from-file\nstate_dir: /srv/a\ntailnet:\n  control_url: https://file.example\nlog:\n  level: warn\n");
    const c = loadConfig({
      file,
      env: {
        NATS_TSNET_HOSTNAME: "from-env",
        NATS_TSNET_STATE_DIR: "rel/state",
        TS_CONTROL_URL: "https://ts.example",
        NATS_TSNET_CONTROL_URL: "http://127.0.0.1:8080",
        NATS_TSNET_LOG_LEVEL: "debug",
        NATS_TSNET_LOG_FORMAT: "json",
        TS_AUTHKEY: "tskey-auth-xyz",
        NATS_TSNET_UNRELATED: "ignored",
      },
    });
    assert.equal(c.hostname, "from-env");
    assert.equal(c.nats.server_name, "from-env");
    // Env paths are typed relative to where the command runs, not to the file.
    assert.equal(c.state_dir, resolve("rel/state"));
    assert.equal(c.tailnet.control_url, "http://127.0.0.1:8080");
    assert.deepEqual(c.log, { format: "json", level: "debug" });
    assert.equal(c.tailnet.auth_key, "tskey-auth-xyz");
    assert.deepEqual(c.source.env, [
      "TS_AUTHKEY",
      "NATS_TSNET_CONTROL_URL",
      "NATS_TSNET_HOSTNAME",
      "NATS_TSNET_STATE_DIR",
      "NATS_TSNET_LOG_FORMAT",
      "NATS_TSNET_LOG_LEVEL",
    ]);
  });

  test("TS_CONTROL_URL applies when NATS_TSNET_CONTROL_URL is not set; empty variables are ignored", () => {
    const c = loadConfig({ env: { TS_CONTROL_URL: "https://hs.example", NATS_TSNET_CONTROL_URL: "", NATS_TSNET_HOSTNAME: "" } });
    assert.equal(c.tailnet.control_url, "https://hs.example");
    assert.equal(c.hostname, sanitizeHostname(osHostname()));
    assert.deepEqual(c.source.env, ["TS_CONTROL_URL"]);
  });

  test("a TS_AUTHKEY beats the file's auth_key_file", () => {
    const file = write("tailnet:\n  auth_key_file: key.txt\n");
    const c = loadConfig({ file, env: { TS_AUTHKEY: "tskey-env" } });
    assert.equal(c.tailnet.auth_key, "tskey-env");
    assert.equal(c.tailnet.auth_key_file, "");
  });

  test("are validated with the file's rules, naming the variable", () => {
    const level = configError(() => loadConfig({ env: { NATS_TSNET_LOG_LEVEL: "verbose" } }));
    assert.equal(level.code, "ERR_CONFIG_ENV");
    assert.match(level.message, /^NATS_TSNET_LOG_LEVEL \(log\.level\): must be one of "trace", "debug", "info", "warn", "error"$/);
    assert.equal(level.line, undefined);

    const many = configError(() =>
      loadConfig({
        env: { NATS_TSNET_HOSTNAME: "Not_Valid", NATS_TSNET_CONTROL_URL: "ftp://x", NATS_TSNET_LOG_FORMAT: "xml" },
      }),
    );
    assert.equal(many.code, "ERR_CONFIG_ENV");
    const lines = many.message.split("\n");
    assert.equal(lines.length, 3);
    assert.match(many.message, /^NATS_TSNET_HOSTNAME \(hostname\): must be 1-63 characters/m);
    assert.match(many.message, /^NATS_TSNET_CONTROL_URL \(tailnet\.control_url\): must be an http/m);
    assert.match(many.message, /^NATS_TSNET_LOG_FORMAT \(log\.format\): must be one of "text", "json"$/m);
  });

  test("programmatic overrides beat the environment; undefined entries are ignored", () => {
    const c = loadConfig({
      env: { NATS_TSNET_LOG_LEVEL: "debug", NATS_TSNET_HOSTNAME: "env-host" },
      overrides: { hostname: undefined, log: { level: "error" } },
    });
    assert.equal(c.log.level, "error");
    assert.equal(c.hostname, "env-host");
    assert.deepEqual(c.source.env, ["NATS_TSNET_HOSTNAME"]);
    const err = configError(() => loadConfig({ env: noEnv, overrides: { nats: { client_port: 0 } } }));
    assert.equal(err.code, "ERR_CONFIG_INVALID");
    assert.equal(err.message, "override nats.client_port: must be 1..65535");
  });
});

describe("file errors", () => {
  test("a missing file is ERR_CONFIG_READ naming the path", () => {
    const file = join(tmp, "does-not-exist.yaml");
    const err = configError(() => loadConfig({ file, env: noEnv }));
    assert.equal(err.code, "ERR_CONFIG_READ");
    assert.equal(err.file, file);
    assert.ok(err.message.includes(file));
  });

  test("a directory is ERR_CONFIG_READ too", () => {
    const err = configError(() => loadConfig({ file: tmp, env: noEnv }));
    assert.equal(err.code, "ERR_CONFIG_READ");
    assert.ok(err.message.includes(tmp));
  });

  test("YAML syntax errors are ERR_CONFIG_SYNTAX at file:line:col", () => {
    const file = write("hostname: a\nlog:\n  level: info: debug\n");
    const err = configError(() => loadConfig({ file, env: noEnv }));
    assert.equal(err.code, "ERR_CONFIG_SYNTAX");
    assert.deepEqual([err.file, err.line, err.column], [file, 3, 10]);
    assert.equal(err.message, `${file}:3:10: Nested mappings are not allowed in compact mappings`);
    const tab = configError(() => loadConfig({ file: write("hostname: a\n\tlog: x\n"), env: noEnv }));
    assert.deepEqual([tab.code, tab.line, tab.column], ["ERR_CONFIG_SYNTAX", 2, 1]);
  });

  test("duplicate keys are a syntax error at the duplicate", () => {
    const file = write("log:\n  level: info\n  level: debug\n");
    const err = configError(() => loadConfig({ file, env: noEnv }));
    assert.equal(err.code, "ERR_CONFIG_SYNTAX");
    assert.equal(err.line, 3);
    assert.equal(err.column, 3);
  });

  test("a typo'd key is ERR_CONFIG_INVALID at the key, with a suggestion", () => {
    const file = write(
      ["hostname: nats-1", "tailnet:", "  tags: [tag:nats-js]", "nats:", "  jetstream:", "    sync_intervall: always", ""].join("\n"),
    );
    const err = configError(() => loadConfig({ file, env: noEnv }));
    assert.equal(err.code, "ERR_CONFIG_INVALID");
    assert.deepEqual([err.file, err.line, err.column], [file, 6, 5]);
    assert.equal(err.message, `${file}:6:5: nats.jetstream.sync_intervall: unknown key (did you mean "sync_interval"?)`);
  });

  test("an unknown top-level key without a near match gets no suggestion", () => {
    const file = write("hostname: a\nfrobnicate: true\n");
    const err = configError(() => loadConfig({ file, env: noEnv }));
    assert.equal(err.message, `${file}:2:1: frobnicate: unknown key`);
  });

  test("every problem is reported, one per line, in file order; the first sets line/column", () => {
    const file = write(
      [
        "log:", // 1
        "  level: loud", // 2
        "nats:", // 3
        "  client_port: 70000", // 4
        "  monitor_port: -1", // 5
        "  debug: yes please", // 6
        "tailnet:", // 7
        "  up_timeout: 10 seconds", // 8
        "  ephemeral: 1", // 9
        "hostnme: x", // 10
        "",
      ].join("\n"),
    );
    const err = configError(() => loadConfig({ file, env: noEnv }));
    assert.equal(err.code, "ERR_CONFIG_INVALID");
    assert.deepEqual([err.line, err.column], [2, 10]);
    assert.deepEqual(err.message.split("\n"), [
      `${file}:2:10: log.level: must be one of "trace", "debug", "info", "warn", "error"`,
      `${file}:4:16: nats.client_port: must be 1..65535`,
      `${file}:5:17: nats.monitor_port: must be 0..65535`,
      `${file}:6:10: nats.debug: expected a boolean, got a string`,
      `${file}:8:15: tailnet.up_timeout: must be a duration like "500ms", "10s", "2m", "1h30m"`,
      `${file}:9:14: tailnet.ephemeral: expected a boolean, got a number`,
      `${file}:10:1: hostnme: unknown key (did you mean "hostname"?)`,
    ]);
  });

  test("a section of the wrong type points at its value", () => {
    const file = write("hostname: a\nnats: [1, 2]\n");
    const err = configError(() => loadConfig({ file, env: noEnv }));
    assert.equal(err.message, `${file}:2:7: nats: expected a mapping, got a list`);
  });

  test("a bad tag points at the list item", () => {
    const file = write("tailnet:\n  tags:\n    - tag:nats-js\n    - nats\n");
    const err = configError(() => loadConfig({ file, env: noEnv }));
    assert.deepEqual([err.code, err.line, err.column], ["ERR_CONFIG_INVALID", 4, 7]);
    assert.match(err.message, /tailnet\.tags\[1\]: must look like "tag:name"/);
  });

  test("tags are optional: a tagged key carries the cluster tag", () => {
    const c = loadConfig({ file: write("tailnet:\n  cluster_tag: tag:east\n"), env: noEnv });
    assert.deepEqual([c.tailnet.tags, c.tailnet.cluster_tag, c.nats.cluster_name], [[], "tag:east", "east"]);
  });

  test("cluster_name derives from cluster_tag", () => {
    const c = loadConfig({ file: write("tailnet:\n  tags: [tag:web, tag:js-east]\n  cluster_tag: tag:js-east\n"), env: noEnv });
    assert.equal(c.nats.cluster_name, "js-east");
  });

  test("control_url must be http(s)", () => {
    const err = configError(() => loadConfig({ file: write("tailnet:\n  control_url: headscale.local\n"), env: noEnv }));
    assert.deepEqual([err.line, err.column], [2, 16]);
    assert.match(err.message, /tailnet\.control_url: must be an http:\/\/ or https:\/\/ URL/);
  });

  test("auth_key and auth_key_file together in one file is an error", () => {
    const file = write("tailnet:\n  auth_key: tskey-a\n  auth_key_file: key\n");
    const err = configError(() => loadConfig({ file, env: noEnv }));
    assert.deepEqual([err.line, err.column], [3, 18]);
    assert.match(err.message, /tailnet\.auth_key_file: set either auth_key or auth_key_file, not both/);
  });
});

describe("durations, sizes and ports", () => {
  test("durations parse to milliseconds; sync_interval defaults to always", () => {
    const c = loadConfig({
      file: write(
        "tailnet:\n  up_timeout: 1m30s\nnats:\n  lame_duck_duration: 2m\n  lame_duck_grace_period: 1.5s\n  jetstream:\n    sync_interval: 500ms\n",
      ),
      env: noEnv,
    });
    assert.equal(c.tailnet.up_timeout_ms, 90_000);
    assert.equal(c.nats.lame_duck_duration_ms, 120_000);
    assert.equal(c.nats.lame_duck_grace_period_ms, 1_500);
    assert.equal(c.nats.jetstream.sync_interval_ms, 500);
    assert.equal(loadConfig({ env: noEnv }).nats.jetstream.sync_interval_ms, "always");
  });

  test("bad durations are rejected where they are", () => {
    for (const [value, why] of [
      ["10", /must be a duration/],
      ["5 min", /must be a duration/],
      ["0s", /must be longer than 0/],
      ["30", /must be a duration/],
    ] as const) {
      const file = write(`tailnet:\n  up_timeout: ${value}\n`);
      const err = configError(() => loadConfig({ file, env: noEnv }));
      assert.deepEqual([err.code, err.line, err.column], ["ERR_CONFIG_INVALID", 2, 15], value);
      assert.match(err.message, why, value);
    }
  });

  test("sync_interval accepts only always or a duration", () => {
    const err = configError(() => loadConfig({ file: write("nats:\n  jetstream:\n    sync_interval: sometimes\n"), env: noEnv }));
    assert.deepEqual([err.line, err.column], [3, 20]);
    assert.match(err.message, /nats\.jetstream\.sync_interval: must be "always" or a duration/);
  });

  test("lame duck timing follows nats-server's own rules", () => {
    const short = configError(() => loadConfig({ file: write("nats:\n  lame_duck_duration: 10s\n"), env: noEnv }));
    assert.deepEqual([short.line, short.column], [2, 23]);
    assert.match(short.message, /nats\.lame_duck_duration: must be at least 30s/);
    const grace = configError(() =>
      loadConfig({ file: write("nats:\n  lame_duck_duration: 30s\n  lame_duck_grace_period: 30s\n"), env: noEnv }),
    );
    assert.equal(grace.line, 3);
    assert.match(grace.message, /nats\.lame_duck_grace_period: must be shorter than nats\.lame_duck_duration/);
  });

  test("sizes parse to bytes with binary units", () => {
    const c = loadConfig({
      file: write("nats:\n  max_payload: 2MB\n  jetstream:\n    max_memory: 1.5gb\n    max_file: 1048576\n"),
      env: noEnv,
    });
    assert.equal(c.nats.max_payload_bytes, 2 * 2 ** 20);
    assert.equal(c.nats.jetstream.max_memory_bytes, 1.5 * 2 ** 30);
    assert.equal(c.nats.jetstream.max_file_bytes, 2 ** 20);
    const err = configError(() => loadConfig({ file: write("nats:\n  max_payload: 2 XB\n"), env: noEnv }));
    assert.deepEqual([err.line, err.column], [2, 16]);
    assert.match(err.message, /nats\.max_payload: must be a size like "512MB"/);
    const big = configError(() => loadConfig({ file: write("nats:\n  max_payload: 2GB\n"), env: noEnv }));
    assert.match(big.message, /nats\.max_payload: must be below 2GB/);
  });

  test("ports are range-checked; loopback ports must be distinct", () => {
    const range = configError(() => loadConfig({ file: write("nats:\n  loopback:\n    client_port: 0\n"), env: noEnv }));
    assert.deepEqual([range.line, range.column], [3, 18]);
    assert.match(range.message, /nats\.loopback\.client_port: must be 1\.\.65535/);
    const frac = configError(() => loadConfig({ file: write("nats:\n  client_port: 42.5\n"), env: noEnv }));
    assert.match(frac.message, /nats\.client_port: must be an integer port number 1\.\.65535/);
    const dup = configError(() =>
      loadConfig({ file: write("nats:\n  loopback:\n    client_port: 15000\n    monitor_port: 15000\n"), env: noEnv }),
    );
    assert.deepEqual([dup.line, dup.column], [4, 19]);
    assert.match(dup.message, /nats\.loopback\.monitor_port: port 15000 is already used by nats\.loopback\.client_port/);
  });

  test("monitor_port 0 keeps monitoring off the tailnet", () => {
    assert.equal(loadConfig({ file: write("nats:\n  monitor_port: 0\n"), env: noEnv }).nats.monitor_port, 0);
  });
});

describe("nats.include", () => {
  test("resolves against the config directory and must exist", () => {
    const file = write("nats:\n  include: user.conf\n");
    writeFileSync(join(resolve(file, ".."), "user.conf"), "max_connections: 10\n");
    assert.equal(loadConfig({ file, env: noEnv }).nats.include, join(resolve(file, ".."), "user.conf"));
  });

  test("a missing include is ERR_CONFIG_INVALID at its line", () => {
    const file = write("hostname: a\nnats:\n  include: missing.conf\n");
    const err = configError(() => loadConfig({ file, env: noEnv }));
    assert.deepEqual([err.code, err.file, err.line, err.column], ["ERR_CONFIG_INVALID", file, 3, 12]);
    assert.equal(err.message, `${file}:3:12: nats.include: no such file: ${join(resolve(file, ".."), "missing.conf")}`);
  });
});

describe("nats.tls", () => {
  // Real certificates, from the bridge's private CA (issueCert).
  const pki = join(tmp, "pki");
  const server = issueCert({ dir: pki, name: "server", cn: "nats-1", dns: ["nats-1"] });
  const other = issueCert({ dir: pki, name: "other", cn: "nats-2" });
  const expired = issueCert({ dir: pki, name: "expired", cn: "nats-3", valid: "-1h" });
  const tlsFile = (tls: string) => write(`hostname: a\nnats:\n  tls:\n${tls.replace(/^/gm, "    ")}\n`);
  const problem = (tls: string) => {
    const err = configError(() => loadConfig({ file: tlsFile(tls), env: noEnv }));
    assert.equal(err.code, "ERR_CONFIG_INVALID");
    return err.message;
  };

  test("off unless set; files resolved against the config directory, checked, with their defaults", () => {
    assert.equal(loadConfig({ env: noEnv }).nats.tls, null);
    const file = tlsFile(`cert_file: ../pki/server.pem\nkey_file: ${server.key}\nclient_ca_file: ${server.ca}\nrevoked: ["serial:2A"]`);
    const t = loadConfig({ file, env: noEnv }).nats.tls;
    assert.deepEqual(t, {
      cert_file: join(resolve(file, ".."), "../pki/server.pem"),
      key_file: server.key,
      tailnet_cert: false,
      min_version: "1.2",
      client_ca_file: server.ca,
      revoked: ["serial:2A"],
    });
    assert.equal(loadConfig({ file: tlsFile("tailnet_cert: true\nmin_version: '1.3'"), env: noEnv }).nats.tls?.tailnet_cert, true);
  });

  test("each mistake named at its key", () => {
    assert.match(problem("{}"), /nats\.tls\.cert_file: TLS needs cert_file and key_file, or tailnet_cert: true/);
    assert.match(problem(`cert_file: ${server.cert}`), /nats\.tls\.key_file: cert_file needs key_file/);
    assert.match(
      problem(`cert_file: ${server.cert}\nkey_file: ${server.key}\ntailnet_cert: true`),
      /nats\.tls\.tailnet_cert: set cert_file/,
    );
    assert.match(problem(`cert_file: ${server.cert}\nkey_file: ${other.key}`), /nats\.tls\.key_file: .* is not the key of the certificate/);
    assert.match(problem(`cert_file: ${server.key}\nkey_file: ${server.key}`), /nats\.tls\.cert_file: .* is not a usable PEM file/);
    assert.match(
      problem(`cert_file: ${server.cert}\nkey_file: /nonexistent.key`),
      /nats\.tls\.key_file: cannot read \/nonexistent\.key: ENOENT/,
    );
    assert.match(problem(`cert_file: ${expired.cert}\nkey_file: ${expired.key}`), /nats\.tls\.cert_file: the certificate in .* expired/);
    assert.match(
      problem(`cert_file: ${server.cert}\nkey_file: ${server.key}\nmin_version: "1.1"`),
      /nats\.tls\.min_version: must be one of "1\.2", "1\.3"/,
    );
    assert.match(
      problem(`cert_file: ${server.cert}\nkey_file: ${server.key}\nrevoked: ["serial:2a"]`),
      /nats\.tls\.revoked: revoked needs client_ca_file/,
    );
    assert.match(
      problem(`cert_file: ${server.cert}\nkey_file: ${server.key}\nclient_ca_file: ${server.ca}\nrevoked: ["bob"]`),
      /nats\.tls\.revoked\[0\]: must be a certificate's SHA-256 fingerprint/,
    );
  });

  test("a rule naming certificates needs client certificates", () => {
    const file = write("hostname: a\nauth:\n  rules:\n    - certs: [CN=billing]\n      pub: { allow: [billing.>] }\n");
    assert.match(
      configError(() => loadConfig({ file, env: noEnv })).message,
      /auth\.rules\[0\]\.certs: names client certificates, which need nats\.tls\.client_ca_file/,
    );
    const bad = write("hostname: a\nauth:\n  rules:\n    - certs: [billing]\n");
    assert.match(
      configError(() => loadConfig({ file: bad, env: noEnv })).message,
      /auth\.rules\[0\]\.certs\[0\]: must name a client certificate/,
    );
  });
});

describe("local faces", () => {
  const issue = (yaml: string, env: Record<string, string> = {}) =>
    configError(() => loadConfig({ file: write(`hostname: a\n${yaml}`), env }));

  test("addresses of this host, named; NATS_TSNET_CLIENT_BIND_HOST adds one on the client port", () => {
    const c = loadConfig({
      file: write(
        "hostname: a\nnats:\n  local_faces: [{ name: docker, listen: 172.17.0.1:4222 }, { name: v6, listen: '[fd00::1]:4300' }]\n",
      ),
      env: { NATS_TSNET_CLIENT_BIND_HOST: "10.88.0.1" },
    });
    assert.deepEqual(c.nats.local_faces, [
      { name: "docker", listen: "172.17.0.1:4222" },
      { name: "v6", listen: "[fd00::1]:4300" },
      { name: "client-bind-host", listen: "10.88.0.1:4222" },
    ]);
  });

  test("loopback, every interface and host names are refused, each at its key", () => {
    for (const [listen, why] of [
      ["127.0.0.1:4222", /is loopback, which stays closed to clients/],
      ["'[::1]:4222'", /is loopback/],
      ["0.0.0.0:4222", /would listen on every interface/],
      ["'[::]:4222'", /would listen on every interface/],
      ["docker0:4222", /is not an IP address and port/],
    ] as const) {
      const err = issue(`nats:\n  local_faces: [{ name: d, listen: ${listen} }]\n`);
      assert.equal(err.code, "ERR_CONFIG_INVALID");
      assert.match(err.message, /nats\.local_faces\[0\]\.listen: /);
      assert.match(err.message, why);
    }
    const env = issue("", { NATS_TSNET_CLIENT_BIND_HOST: "127.0.0.1" });
    assert.equal(env.code, "ERR_CONFIG_ENV");
    assert.match(env.message, /NATS_TSNET_CLIENT_BIND_HOST/);
  });

  test("NATS_TSNET_CLUSTER_BIND_HOST is refused with the reason", () => {
    const err = issue("", { NATS_TSNET_CLUSTER_BIND_HOST: "172.17.0.1" });
    assert.equal(err.code, "ERR_CONFIG_ENV");
    assert.match(err.message, /NATS_TSNET_CLUSTER_BIND_HOST.*routes run only over the tailnet/);
  });

  test("rules for local faces: known faces, no tailnet names, sources as CIDRs", () => {
    const faces = "nats:\n  local_faces: [{ name: docker, listen: 172.17.0.1:4222 }]\n";
    assert.equal(
      loadConfig({
        file: write(`hostname: a\n${faces}auth:\n  rules: [{ faces: [docker], sources: [172.17.0.0/16], pub: { allow: [x] } }]\n`),
        env: {},
      }).auth.rules[0]!.faces[0],
      "docker",
    );
    assert.match(issue(`${faces}auth:\n  rules: [{ faces: [podman] }]\n`).message, /no local face named podman/);
    assert.match(issue(`${faces}auth:\n  rules: [{ faces: [docker], tags: ["tag:svc"] }]\n`).message, /names no users, tags or certs/);
    assert.match(issue(`${faces}auth:\n  rules: [{ faces: [docker], sources: [172.17.0.0/99] }]\n`).message, /is not a CIDR/);
    assert.match(issue(`${faces}auth:\n  rules: [{ sources: [172.17.0.0/16] }]\n`).message, /sources narrows a rule for local faces/);
  });
});

describe("secrets", () => {
  test("redactConfig hides the auth key and leaves the original alone", () => {
    const c = loadConfig({ env: { TS_AUTHKEY: "tskey-auth-secret" } });
    const r = redactConfig(c);
    assert.equal(r.tailnet.auth_key, "<redacted>");
    assert.equal(c.tailnet.auth_key, "tskey-auth-secret");
    assert.ok(!JSON.stringify(r).includes("tskey-auth-secret"));
    assert.deepEqual({ ...r, tailnet: { ...r.tailnet, auth_key: "" } }, { ...c, tailnet: { ...c.tailnet, auth_key: "" } });
    const none = loadConfig({ env: noEnv });
    assert.equal(redactConfig(none).tailnet.auth_key, "");
  });

  test("resolveAuthKey prefers auth_key, else the trimmed key file", () => {
    assert.equal(resolveAuthKey(loadConfig({ env: { TS_AUTHKEY: "tskey-a" } })), "tskey-a");
    assert.equal(resolveAuthKey(loadConfig({ env: noEnv })), undefined);
    const file = write("tailnet:\n  auth_key_file: key.txt\n");
    writeFileSync(join(resolve(file, ".."), "key.txt"), "  tskey-from-file\n");
    assert.equal(resolveAuthKey(loadConfig({ file, env: noEnv })), "tskey-from-file");
  });

  test("resolveAuthKey: an unreadable or empty key file is ERR_CONFIG_READ naming it", () => {
    const file = write("tailnet:\n  auth_key_file: nope.txt\n");
    const keyFile = join(resolve(file, ".."), "nope.txt");
    const c = loadConfig({ file, env: noEnv });
    const missing = configError(() => resolveAuthKey(c));
    assert.equal(missing.code, "ERR_CONFIG_READ");
    assert.ok(missing.message.includes(keyFile));
    writeFileSync(keyFile, "\n");
    const empty = configError(() => resolveAuthKey(c));
    assert.equal(empty.code, "ERR_CONFIG_READ");
    assert.match(empty.message, /is empty/);
  });

  test("resolveClusterKey: none without a file; a key file must be private and long enough (ERR_CLUSTER_KEY)", () => {
    assert.equal(resolveClusterKey(loadConfig({ env: noEnv })), undefined);
    const file = write("tailnet:\n  cluster_key_file: cluster.key\n");
    const keyFile = join(resolve(file, ".."), "cluster.key");
    const c = loadConfig({ file, env: noEnv });
    assert.equal(c.tailnet.cluster_key_file, keyFile, "relative to the config file");
    assert.equal(configError(() => resolveClusterKey(c)).code, "ERR_CLUSTER_KEY", "missing");
    const key = "k".repeat(32);
    writeFileSync(keyFile, `${key}\n`, { mode: 0o644 });
    chmodSync(keyFile, 0o644);
    assert.equal(configError(() => resolveClusterKey(c)).code, "ERR_CLUSTER_KEY", "readable by others");
    chmodSync(keyFile, 0o600);
    assert.equal(resolveClusterKey(c), key);
    writeFileSync(keyFile, "short\n");
    assert.equal(configError(() => resolveClusterKey(c)).code, "ERR_CLUSTER_KEY", "too short");
  });

  test("validation messages never echo an env value", () => {
    const err = configError(() => loadConfig({ env: { NATS_TSNET_HOSTNAME: "Secretish_Value" } }));
    assert.ok(!err.message.includes("Secretish_Value"));
  });
});

describe("JSON Schema", () => {
  test("docs/config.schema.json is up to date (regenerate: node controlplane/src/config/write-schema.ts)", () => {
    assert.equal(readFileSync(SCHEMA_FILE, "utf8"), schemaFileText());
  });

  test("describes the file: strict objects and defaults", () => {
    const schema = configJsonSchema() as {
      additionalProperties: boolean;
      properties: {
        nats: { additionalProperties: boolean; properties: { jetstream: { properties: { sync_interval: { default: string } } } } };
      };
    };
    assert.equal(schema.additionalProperties, false);
    assert.equal(schema.properties.nats.additionalProperties, false);
    assert.equal(schema.properties.nats.properties.jetstream.properties.sync_interval.default, "always");
  });
});
