// The node's own HTTP port on 127.0.0.1: /status (JSON, what `nats-tsnet
// status` reads) and /metrics (Prometheus). Read-only, and loopback only:
// the same host's processes can already read nats-server's monitoring
// port. A Host header that is not a loopback address is refused, so that
// a web page in a browser on this host cannot rebind its own name to
// 127.0.0.1 and read who is connected.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Logger } from "pino";
import { OperationError } from "../errors.ts";

export interface ObserveHandlers {
  status(): Promise<unknown>;
  metrics(): Promise<string>;
}

const LOOPBACK_HOST = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|localhost|\[::1\])(:\d+)?$/;

export async function serveObserve(port: number, h: ObserveHandlers, log: Logger): Promise<Server> {
  const server = createServer((req, res) => void handle(req, res, h, log));
  // Scrapers keep connections open; none may hold the node's stop.
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", (e: NodeJS.ErrnoException) =>
      reject(
        new OperationError(
          "ERR_OBSERVE_PORT",
          `observe.loopback_port ${port} on 127.0.0.1: ${e.code === "EADDRINUSE" ? "already in use by another program" : e.message}; choose another port or 0 for none`,
          { cause: e },
        ),
      ),
    );
    server.listen(port, "127.0.0.1", () => resolve());
  });
  return server;
}

async function handle(req: IncomingMessage, res: ServerResponse, h: ObserveHandlers, log: Logger): Promise<void> {
  const send = (code: number, type: string, body: string) => {
    res.writeHead(code, { "content-type": type, "cache-control": "no-store" });
    res.end(body);
  };
  if (!LOOPBACK_HOST.test(req.headers.host ?? "")) return send(421, "text/plain", "this port answers only to a loopback Host\n");
  if (req.method !== "GET" && req.method !== "HEAD") return send(405, "text/plain", "GET only\n");
  const path = (req.url ?? "/").split("?")[0];
  try {
    if (path === "/metrics") return send(200, "text/plain; version=0.0.4; charset=utf-8", await h.metrics());
    if (path === "/status") return send(200, "application/json", JSON.stringify(await h.status()));
    return send(404, "text/plain", "try /status or /metrics\n");
  } catch (e) {
    log.warn({ path, err: (e as Error).message }, "observe: could not answer");
    return send(503, "text/plain", `the node could not look at the cluster: ${(e as Error).message}\n`);
  }
}
