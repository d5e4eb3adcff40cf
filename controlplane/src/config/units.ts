// Durations and sizes as people write them in the config file, and as
// nats-server reads them back. Kept apart from the schema so the renderer can
// use the same rules without depending on the loader.

// Go-style: one or more <number><unit> parts ("1m30s", "1.5h", "500ms").
// Units stop at milliseconds because every consumer works in milliseconds.
export const DURATION_PATTERN = "^(\\d+(\\.\\d+)?(ms|s|m|h))+$";
const DURATION_PART = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 } as const;

/** Milliseconds for a string matching DURATION_PATTERN; undefined if it does not. */
export function parseDuration(text: string): number | undefined {
  if (!new RegExp(DURATION_PATTERN).test(text)) return undefined;
  let ms = 0;
  for (const [, n, unit] of text.matchAll(DURATION_PART)) ms += Number(n) * UNIT_MS[unit as keyof typeof UNIT_MS];
  return Math.round(ms);
}

/** Go's time.Duration.String() shape ("1h0m0s", "1m30s", "1.5s", "500ms"), which nats-server parses. */
export function formatDuration(ms: number): string {
  if (!Number.isInteger(ms) || ms < 0) throw new RangeError(`not a duration in ms: ${ms}`);
  if (ms === 0) return "0s";
  if (ms < 1_000) return `${ms}ms`;
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor((ms % 3_600_000) / 60_000);
  const s = (ms % 60_000) / 1_000;
  return `${h ? `${h}h` : ""}${h || m ? `${m}m` : ""}${s}s`;
}

// Case-insensitive by character class (not a flag) so the pattern survives
// into the JSON Schema unchanged. Empty means "unset".
export const SIZE_PATTERN = "^(\\d+(\\.\\d+)?\\s*([kKmMgGtT]?[bB]|[kKmMgGtT])?)?$";
const SIZE_PARTS = /^(\d+(?:\.\d+)?)\s*([kmgt]?)b?$/i;
const UNIT_BYTES = { "": 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 } as const;

/**
 * Bytes for a size ("512MB", "1.5g", 1048576); null when unset ("" or 0 bytes
 * is never meant literally). Units are binary, as in NATS's own "1GB".
 * We render plain byte counts because nats-server reads quoted and unquoted
 * sizes differently ("1G" quoted is 2^30, unquoted 10^9; "1.5GB" not at all).
 */
export function parseSize(value: string | number): number | null | undefined {
  if (typeof value === "number") return Number.isSafeInteger(value) && value >= 0 ? value || null : undefined;
  if (value === "") return null;
  const m = SIZE_PARTS.exec(value);
  if (!m) return undefined;
  return Math.floor(Number(m[1]) * UNIT_BYTES[m[2]!.toLowerCase() as keyof typeof UNIT_BYTES]) || null;
}
