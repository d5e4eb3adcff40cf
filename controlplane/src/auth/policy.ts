// Tailnet identity -> NATS permissions. Pure: the callout feeds it a WhoIs
// answer and the grants found there; unit tests feed it the same shapes.
//
// Deny by default: no grant and no matching rule means no connection, and
// a permission with no allow list denies everything (in NATS an empty
// allow list would mean "everything").
import { createHash } from "node:crypto";
import { BlockList, isIP } from "node:net";
import { GrantSchema } from "../config/schema.ts";
import { identityQuota, limitBytes, parseDuration, type AuthConfig, type IdentityQuota } from "../config/mod.ts";
import type { WhoIs } from "../bridge-client/client.ts";

export interface Identity {
  /** Login for a person's device; empty for a tagged device. */
  user: string;
  tags: string[];
  device: string;
  /** What /connz and the logs show. */
  label: string;
}

export function identityOf(w: WhoIs): Identity {
  const tags = w.device.tags ?? [];
  const user = tags.length ? "" : (w.user ?? w.device.user ?? "");
  const device = w.device.name || w.device.hostName;
  // The label comes from the bridge, which names connections with the same text.
  return { user, tags, device, label: w.label };
}

/**
 * The inbox prefix an identity's requests and JetStream consumers must use
 * (nats.js `inboxPrefix`, nats.go `CustomInboxPrefix`, natscli
 * `--inbox-prefix`). Every identity may subscribe to its own only, so one
 * user cannot read another's replies as with a shared `_INBOX.>`.
 * The encoding is injective: letters, digits and '-' stay, every other byte
 * becomes '_' and two hex digits ('@' -> _40, '.' -> _2e, '_' -> _5f).
 */
export function inboxPrefix(id: Pick<Identity, "user" | "tags">): string {
  const who = id.tags.length ? [...id.tags].sort().join(",") : id.user;
  const token = [...new TextEncoder().encode(who)]
    .map((b) => (/[A-Za-z0-9-]/.test(String.fromCharCode(b)) && b < 0x80 ? String.fromCharCode(b) : `_${b.toString(16).padStart(2, "0")}`))
    .join("");
  return `_INBOX_${token}`;
}

/**
 * The JetStream API subjects that using (and, with manage, administering)
 * the named streams needs, and no others: `$JS.API.>` would open every
 * stream in the account.
 */
export function jetstreamSubjects(streams: readonly string[], manage: boolean): string[] {
  const out = ["$JS.API.INFO"];
  for (const s of streams) {
    out.push(
      `$JS.API.STREAM.INFO.${s}`,
      `$JS.API.STREAM.MSG.GET.${s}`,
      `$JS.API.DIRECT.GET.${s}`,
      `$JS.API.DIRECT.GET.${s}.>`,
      `$JS.API.CONSUMER.CREATE.${s}`,
      `$JS.API.CONSUMER.CREATE.${s}.>`,
      `$JS.API.CONSUMER.DURABLE.CREATE.${s}.>`,
      `$JS.API.CONSUMER.INFO.${s}.>`,
      `$JS.API.CONSUMER.DELETE.${s}.>`,
      `$JS.API.CONSUMER.LIST.${s}`,
      `$JS.API.CONSUMER.NAMES.${s}`,
      `$JS.API.CONSUMER.MSG.NEXT.${s}.>`,
      // Acknowledgements and flow-control replies go to subjects named after the stream.
      `$JS.ACK.${s}.>`,
      `$JS.FC.${s}.>`,
    );
    if (manage) {
      out.push(
        `$JS.API.STREAM.CREATE.${s}`,
        `$JS.API.STREAM.UPDATE.${s}`,
        `$JS.API.STREAM.DELETE.${s}`,
        `$JS.API.STREAM.PURGE.${s}`,
        `$JS.API.STREAM.MSG.DELETE.${s}`,
      );
    }
  }
  return out;
}

export interface NatsPermission {
  allow: string[];
  deny: string[];
}
export interface Allowed {
  allow: true;
  account: string;
  pub: NatsPermission;
  sub: NatsPermission;
  resp?: { max: number; ttl: number };
  /**
   * What each of its connections may hold. nats-server ignores a callout
   * user's limits, so the callout hands these to the bridge (`quota`),
   * which enforces them; the account's own limits stay in force behind it.
   */
  limits: IdentityQuota;
  /** Changes whenever what the identity may do changes. */
  key: string;
}
export interface Denied {
  allow: false;
  reason: string;
}
export type Decision = Allowed | Denied;

type Grant = ReturnType<typeof GrantSchema.parse>;

function union(a: string[], b: string[] | undefined): string[] {
  return [...new Set([...a, ...(b ?? [])])].sort();
}

/** The largest limits any grant gives (-1, no limit, is the largest); unset where none sets one. */
function grantedLimits(grants: Grant[]): Partial<IdentityQuota> {
  const out: Partial<IdentityQuota> = {};
  const larger = (a: number | undefined, b: number) => (a === undefined ? b : a < 0 || b < 0 ? -1 : Math.max(a, b));
  for (const g of grants) {
    if (g.limits?.subs !== undefined) out.subs = larger(out.subs, g.limits.subs);
    const payload = limitBytes(g.limits?.payload);
    if (payload !== undefined) out.payload = larger(out.payload, payload);
  }
  return out;
}

/**
 * What a client certificate verified by the bridge says (tlsface.go
 * CertIdentity): its common name, subject alternative names and SHA-256.
 */
export interface CertIdentity {
  cn?: string;
  dns?: string[];
  email?: string[];
  uri?: string[];
  sha256: string;
}

/** The names a rule's `certs` may use for this certificate ("CN=billing", ...). */
export function certNames(c: CertIdentity): string[] {
  return [
    ...(c.cn ? [`CN=${c.cn}`] : []),
    ...(c.dns ?? []).map((d) => `DNS=${d}`),
    ...(c.email ?? []).map((e) => `EMAIL=${e}`),
    ...(c.uri ?? []).map((u) => `URI=${u}`),
    `SHA256=${c.sha256}`,
  ];
}

/** How logs and /connz name a certificate (the bridge's CertIdentity.name). */
export function certLabel(c: CertIdentity): string {
  return c.cn ? `CN=${c.cn}` : `SHA256=${c.sha256}`;
}

type Rule = AuthConfig["rules"][number];

/** Whether a rule's users or tags name this device; a cert rule naming none takes any. */
function ruleNamesDevice(r: Rule, id: Identity): boolean {
  if (r.certs.length && !r.users.length && !r.tags.length) return true;
  return Boolean(id.user && r.users.includes(id.user)) || id.tags.some((t) => r.tags.includes(t));
}

/**
 * The grants that decide a connection. With a verified client certificate
 * that a rule names (and from a device that rule admits), those rules
 * alone: the certificate says which service on a shared, tagged host is
 * calling, which the device's tag cannot. Otherwise the device's grants
 * and the rules that name the device but no certificate; a certificate no
 * rule names only had to be valid. A rule naming a certificate never
 * matches without it: its tags do not admit the device alone.
 */
function grantsFor(id: Identity, cert: CertIdentity | undefined, auth: AuthConfig): { byCert: Rule[]; byDevice: Rule[] } {
  const names = cert ? certNames(cert) : [];
  const byCert = auth.rules.filter((r) => r.certs.some((c) => names.includes(c)) && ruleNamesDevice(r, id));
  const byDevice = auth.rules.filter((r) => !r.certs.length && ruleNamesDevice(r, id));
  return { byCert, byDevice };
}

/** Grants from the caller's capability map plus the config rules that match it (see grantsFor). */
export function decide(id: Identity, caps: unknown[] | undefined, auth: AuthConfig, cert?: CertIdentity): Decision {
  const { byCert, byDevice } = grantsFor(id, cert, auth);
  if (byCert.length) return decideGrants(id, byCert, auth);
  const grants: Grant[] = [];
  for (const [i, raw] of (caps ?? []).entries()) {
    const g = GrantSchema.safeParse(raw);
    if (!g.success) {
      const issue = g.error.issues[0];
      const where = issue?.path.length ? `${issue.path.join(".")}: ` : "";
      return {
        allow: false,
        reason: `grant ${i + 1} of ${auth.capability} for ${id.label} is malformed: ${where}${issue?.message ?? "invalid"}`,
      };
    }
    grants.push(g.data);
  }
  grants.push(...byDevice);
  if (!grants.length) {
    const unnamed = cert ? ` (its certificate ${certLabel(cert)} is named by no rule)` : "";
    return { allow: false, reason: `no grant of ${auth.capability} for ${id.label}${unnamed}` };
  }
  return decideGrants(id, grants, auth);
}

/**
 * A caller on a local face (nats.local_faces): not a tailnet device, so
 * only rules naming that face can admit it, narrowed by their sources.
 * Its identity is the face: every caller there shares its rights and its
 * inbox prefix (`_INBOX_local_3a<face>`).
 */
export function decideLocal(face: string, ip: string, auth: AuthConfig): { decision: Decision; id: Identity } {
  const id: Identity = { user: `local:${face}`, tags: [], device: ip, label: `local:${face} (${ip})` };
  const grants = auth.rules.filter((r) => r.faces.includes(face) && (!r.sources.length || inSources(ip, r.sources)));
  if (!grants.length) return { id, decision: { allow: false, reason: `no rule admits ${id.label}: name the face in auth.rules[].faces` } };
  return { id, decision: decideGrants(id, grants, auth) };
}

function inSources(ip: string, cidrs: readonly string[]): boolean {
  const list = new BlockList();
  for (const c of cidrs) {
    const [net, bits] = c.split("/");
    list.addSubnet(net!, Number(bits), isIP(net!) === 6 ? "ipv6" : "ipv4");
  }
  const family = isIP(ip) === 6 ? "ipv6" : "ipv4";
  return isIP(ip) !== 0 && list.check(ip, family);
}

function decideGrants(id: Identity, grants: Grant[], auth: AuthConfig): Decision {
  // A grant without an account is a grant in the default account. Grants
  // are never merged across accounts: a narrow SYS grant beside a general
  // one must not lift the general rights into SYS.
  const accounts = [...new Set(grants.map((g) => g.account ?? auth.accounts[0]!))].sort();
  if (accounts.length > 1) {
    return {
      allow: false,
      reason: `grants place ${id.label} in several accounts (${accounts.join(", ")}); a connection is in one account, so give this identity grants in one`,
    };
  }
  const account = accounts[0]!;
  if (account !== "SYS" && !auth.accounts.includes(account)) {
    return { allow: false, reason: `grant names account ${account}, which is not in auth.accounts` };
  }

  let pub: NatsPermission = { allow: [], deny: [] };
  let sub: NatsPermission = { allow: [], deny: [] };
  let resp: Allowed["resp"];
  for (const g of grants) {
    const js = g.jetstream ? jetstreamSubjects(g.jetstream.streams, g.jetstream.manage) : [];
    pub = { allow: union(pub.allow, [...(g.pub?.allow ?? []), ...js]), deny: union(pub.deny, g.pub?.deny) };
    sub = { allow: union(sub.allow, g.sub?.allow), deny: union(sub.deny, g.sub?.deny) };
    if (g.resp) {
      // Nanoseconds, as NATS wants them in a user JWT; the schema admitted only valid durations.
      const ttl = (parseDuration(g.resp.ttl) ?? 0) * 1_000_000;
      resp = { max: Math.max(resp?.max ?? 0, g.resp.max), ttl: Math.max(resp?.ttl ?? 0, ttl) };
    }
  }
  // Its own inbox, always: replies to its requests and its JetStream consumers arrive there.
  sub = { allow: union(sub.allow, [`${inboxPrefix(id)}.>`]), deny: sub.deny };
  // NATS reads an empty allow list as "allow all"; here it means nothing.
  if (!pub.allow.length) pub = { allow: [], deny: [">"] };
  const limits = identityQuota(auth, account, grantedLimits(grants));
  const body = { account, pub, sub, resp, limits };
  const key = createHash("sha256").update(JSON.stringify(body)).digest("base64url").slice(0, 16);
  return { allow: true, ...body, key };
}

/**
 * What the bridge needs to refuse, before nats-server asks the callout,
 * every caller that decide could only refuse with "no grant": the
 * capability whose grants count, and the logins and tags the config rules
 * name. Whatever passes is still decided here (a malformed grant, say).
 */
export function grantGate(
  auth: Pick<AuthConfig, "capability" | "rules">,
): { capability: string; users: string[]; tags: string[] } | undefined {
  // A certificate rule for any device: who may connect is known only after TLS, so the callout decides.
  if (auth.rules.some((r) => r.certs.length && !r.users.length && !r.tags.length)) return undefined;
  const sorted = (xs: string[]) => [...new Set(xs)].sort();
  return {
    capability: auth.capability,
    users: sorted(auth.rules.flatMap((r) => r.users)),
    tags: sorted(auth.rules.flatMap((r) => r.tags)),
  };
}
