// GET from an HTTP port on loopback (nats-server's monitoring), over a plain
// TCP socket. fetch() would do the same, but it loads undici and with it web
// streams, zlib and http2: several MiB that an idle node would carry for the
// sake of /healthz. HTTP/1.0 keeps the answer simple: no chunks, no
// keep-alive; the server closes the connection after the body.
import { connect } from "node:net";

export interface LocalResponse {
  status: number;
  body: string;
}

export function localGet(port: number, path: string, timeoutMs: number): Promise<LocalResponse> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = connect({ host: "127.0.0.1", port });
    const timer = setTimeout(() => s.destroy(new Error(`GET 127.0.0.1:${port}${path}: no answer within ${timeoutMs}ms`)), timeoutMs);
    // Not end(): a server may take a half-closed connection for a client gone.
    s.on("connect", () => s.write(`GET ${path} HTTP/1.0\r\nHost: 127.0.0.1:${port}\r\n\r\n`));
    s.on("data", (c: Buffer) => chunks.push(c));
    s.on("error", reject);
    s.on("close", (hadError) => {
      clearTimeout(timer);
      if (hadError) return;
      const text = Buffer.concat(chunks).toString("utf8");
      const status = /^HTTP\/1\.[01] (\d{3}) /.exec(text);
      const head = text.indexOf("\r\n\r\n");
      if (!status || head < 0) return reject(new Error(`GET 127.0.0.1:${port}${path}: not an HTTP response`));
      resolve({ status: Number(status[1]), body: text.slice(head + 4) });
    });
  });
}
