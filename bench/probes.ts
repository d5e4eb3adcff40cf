// Measurement helpers that run inside a lab namespace (started with
// `ip netns exec <ns> node bench/probes.ts <mode> ...`), so that every byte
// of load stays inside the lab. Each prints one JSON line.
import { createServer, connect as tcpConnect } from "node:net";
import { connect } from "@nats-io/transport-node";
import { wsconnect, type NatsConnection } from "@nats-io/nats-core";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";

const [mode, ...args] = process.argv.slice(2);

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}
const summary = (lat: number[]) => {
  const s = [...lat].sort((a, b) => a - b);
  return { n: s.length, p50_ms: +pct(s, 50).toFixed(3), p99_ms: +pct(s, 99).toFixed(3), max_ms: +s[s.length - 1]!.toFixed(3) };
};
const opts = { ignoreClusterUpdates: true, timeout: 10_000 };

/**
 * A connection by URL scheme: nats:// and tls:// over TCP (tls:// trusts
 * the CA in BENCH_CA), ws:// and wss:// over WebSocket (wss:// trusts
 * NODE_EXTRA_CA_CERTS, which the benchmark sets to the same CA).
 */
function dial(url: string): Promise<NatsConnection> {
  if (/^wss?:/.test(url)) return wsconnect({ servers: url, ...opts });
  const ca = process.env.BENCH_CA;
  return connect({ servers: url, ...opts, ...(url.startsWith("tls:") && ca && { tls: { caFile: ca } }) });
}

if (mode === "rr") {
  // rr <requester-url> <responder-url> <count>
  const [reqUrl, repUrl, count] = [args[0]!, args[1]!, Number(args[2])];
  const rep = await dial(repUrl);
  rep.subscribe("bench.rr", {
    callback: (_e, m) => {
      m.respond(m.data);
    },
  });
  await rep.flush();
  const req = await dial(reqUrl);
  const payload = new Uint8Array(128);
  for (let i = 0; i < 50; i++) await req.request("bench.rr", payload, { timeout: 5000 }); // warm-up
  const lat: number[] = [];
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    await req.request("bench.rr", payload, { timeout: 5000 });
    lat.push(performance.now() - t0);
  }
  console.log(JSON.stringify(summary(lat)));
  await Promise.all([req.close(), rep.close()]);
} else if (mode === "jspub") {
  // jspub <url> <stream> <count>: sequential acked publishes to an R3 stream
  const [url, stream, count] = [args[0]!, args[1]!, Number(args[2])];
  const nc = await connect({ servers: url, ...opts });
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: stream, subjects: [`${stream}.>`], num_replicas: 3 });
  const js = jetstream(nc);
  const payload = new Uint8Array(256);
  const lat: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const t = performance.now();
    await js.publish(`${stream}.x`, payload);
    lat.push(performance.now() - t);
  }
  const secs = (performance.now() - t0) / 1000;
  console.log(JSON.stringify({ ...summary(lat), msgs_per_s: Math.round(count / secs) }));
  await nc.close();
} else if (mode === "sink") {
  // sink <port> <bytes>: accept one connection, count bytes, report rate
  const [port, want] = [Number(args[0]), Number(args[1])];
  const srv = createServer((s) => {
    let got = 0;
    let t0 = 0;
    s.on("data", (d) => {
      if (!t0) t0 = performance.now();
      got += d.length;
      if (got >= want) {
        const secs = (performance.now() - t0) / 1000;
        console.log(JSON.stringify({ bytes: got, mb_per_s: +(got / secs / 1e6).toFixed(1) }));
        s.destroy();
        srv.close();
      }
    });
  });
  srv.listen(port, "127.0.0.1", () => console.error("listening"));
} else if (mode === "send") {
  // send <port> <bytes>
  const [port, total] = [Number(args[0]), Number(args[1])];
  const s = tcpConnect(port, "127.0.0.1");
  const chunk = Buffer.alloc(64 * 1024, 7);
  let sent = 0;
  const pump = () => {
    while (sent < total) {
      sent += chunk.length;
      if (!s.write(chunk)) return void s.once("drain", pump);
    }
    s.end();
  };
  s.on("connect", pump);
  s.on("close", () => process.exit(0));
  s.on("error", (e) => {
    console.error(e.message);
    process.exit(1);
  });
} else {
  console.error("usage: probes.ts rr|jspub|sink|send ...");
  process.exit(2);
}
