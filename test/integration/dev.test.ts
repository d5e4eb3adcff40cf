// `./run dev --tls --websocket` as a newcomer runs it: the lines it prints
// work as printed (the nats CLI over TLS with the printed CA, a WebSocket
// client on the printed URL), and Ctrl-C leaves nothing behind.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { binaryPath, eachLine, exited, REPO_ROOT } from "../../controlplane/src/mod.ts";
import { eventually } from "./helpers.ts";

/** A port free on 127.0.0.1 right now. */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

describe("./run dev --tls --websocket", () => {
  const home = mkdtempSync(join(tmpdir(), "nt-dev-home-"));
  let dev: ReturnType<typeof spawn> | undefined;

  after(async () => {
    if (dev && dev.exitCode === null) {
      dev.kill("SIGTERM");
      await exited(dev);
    }
  });

  test("a --listen port another program holds is refused at once, with its code and no stack trace", async () => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, "127.0.0.1", r));
    const port = (taken.address() as { port: number }).port;
    try {
      const t0 = Date.now();
      const r = spawnSync(process.execPath, [join(REPO_ROOT, "localtailnet", "dev.ts"), "--listen", `127.0.0.1:${port}`], {
        cwd: REPO_ROOT,
        encoding: "utf8",
        timeout: 60_000,
      });
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, /ERR_DEV_LISTEN/);
      assert.match(r.stderr, new RegExp(`127\\.0\\.0\\.1:${port} is already in use`));
      assert.doesNotMatch(r.stderr, /^\s+at /m, "no stack trace");
      assert.doesNotMatch(r.stdout + r.stderr, /headscale/, "nothing was started");
      console.log(`# refused after ${Date.now() - t0} ms`);
    } finally {
      taken.close();
    }
  });

  test("prints ready:, websocket: and ca:, and each works as printed", async () => {
    const port = await freePort();
    dev = spawn(
      process.execPath,
      [join(REPO_ROOT, "localtailnet", "dev.ts"), "--nodes", "1", "--tls", "--websocket", "--listen", `127.0.0.1:${port}`],
      {
        cwd: REPO_ROOT,
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    const out: string[] = [];
    eachLine(dev.stdout!, (l) => out.push(l));
    eachLine(dev.stderr!, () => {});
    const field = (name: string) => out.find((l) => l.startsWith(`${name}: `))?.slice(name.length + 2);
    await eventually(() => field("ready"), 180_000, `dev ready: ${out.slice(-5).join(" | ")}`);
    const [ready, ws, ca] = [field("ready")!, field("websocket")!, field("ca")!];
    assert.equal(ready, `tls://127.0.0.1:${port}`);
    assert.match(ws, /^wss:\/\/127\.0\.0\.1:\d+$/);

    // The printed nats CLI line, with the printed CA, and TLS first too.
    for (const first of [[], ["--tlsfirst"]]) {
      const r = spawnSync(binaryPath("nats"), ["-s", ready, "--tlsca", ca, ...first, "pub", "demo.hello", "hi"], {
        encoding: "utf8",
        timeout: 30_000,
        env: { ...process.env, HOME: home },
      });
      assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
    }
    assert.ok(
      out.some((l) => l.includes(`--tlsca ${ca}`)),
      "the printed examples name the CA",
    );

    // The WebSocket URL, in a process that trusts the printed CA.
    const probe = spawnSync(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `import { wsconnect } from "@nats-io/nats-core";
         const nc = await wsconnect({ servers: ${JSON.stringify(ws)}, ignoreClusterUpdates: true });
         await nc.flush(); console.log("ok " + nc.info.server_name); await nc.close();`,
      ],
      { cwd: REPO_ROOT, encoding: "utf8", timeout: 30_000, env: { ...process.env, NODE_EXTRA_CA_CERTS: ca } },
    );
    assert.match(probe.stdout, /^ok nats-1/m, probe.stderr);

    // Ctrl-C: dev stops everything it started.
    dev.kill("SIGINT");
    assert.equal((await exited(dev)).code, 0);
    const left = spawnSync("ip", ["netns", "list"], { encoding: "utf8" })
      .stdout.split("\n")
      .filter((l) => l.includes(`nt${dev!.pid}x`));
    assert.deepEqual(left, [], "dev's namespaces are gone");
  });
});
