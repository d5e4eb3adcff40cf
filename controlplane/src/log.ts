// Structured logs, one line per event. pino does the structure; the text
// format is a small formatter over pino's JSON so that a human reading a
// terminal sees `time level [component] message key=value` while machines
// can ask for the JSON itself.
import { pino, type Logger } from "pino";
import type { Writable } from "node:stream";

export type { Logger };
export type LogFormat = "text" | "json";

const LEVELS: Record<number, string> = { 10: "TRACE", 20: "DEBUG", 30: "INFO", 40: "WARN", 50: "ERROR", 60: "FATAL" };
const SKIP = new Set(["level", "time", "msg", "pid", "hostname", "component"]);

function fmtValue(v: unknown): string {
  if (typeof v === "string") return /^[\w./:@+-]+$/.test(v) ? v : JSON.stringify(v);
  return JSON.stringify(v);
}

export function formatText(line: string): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(line);
  } catch {
    return line;
  }
  const t = new Date(Number(o.time)).toISOString().slice(11, 23);
  const lvl = (LEVELS[Number(o.level)] ?? String(o.level)).padEnd(5);
  const comp = o.component ? `[${o.component}] ` : "";
  const rest = Object.entries(o)
    .filter(([k]) => !SKIP.has(k))
    .map(([k, v]) => `${k}=${fmtValue(v)}`)
    .join(" ");
  return `${t} ${lvl} ${comp}${o.msg ?? ""}${rest ? " " + rest : ""}\n`;
}

export function createLogger(opts: { level?: string; format?: LogFormat; dest?: Writable; name?: string } = {}): Logger {
  const dest = opts.dest ?? process.stderr;
  const stream =
    opts.format === "json"
      ? dest
      : {
          write: (s: string) => {
            for (const l of s.split("\n")) if (l) dest.write(formatText(l));
          },
        };
  return pino(
    { level: opts.level ?? "info", base: opts.name ? { component: opts.name } : {}, timestamp: pino.stdTimeFunctions.epochTime },
    stream as pino.DestinationStream,
  );
}
