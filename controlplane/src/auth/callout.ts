// The auth-callout service: nats-server asks it about every client
// connection, it answers from the caller's tailnet identity. It runs in the
// node process, talks to nats-server on loopback as the callout account's
// user, and signs with an account key that exists only in this process.
import type { Counters } from "../observe/counters.ts";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { createAccount, type KeyPair } from "@nats-io/nkeys";
import { encodeAuthorizationResponse, encodeUser, type AuthorizationRequest } from "@nats-io/jwt";
import type { Logger } from "pino";
import type { AuthConfig } from "../config/mod.ts";
import type { Bridge } from "../bridge-client/client.ts";
import { certLabel, decide, decideLocal, identityOf, type CertIdentity, type Decision } from "./policy.ts";
import { decodeVerified, nativeSigner } from "./signer.ts";
import { localGet } from "../util/http.ts";

export const AUTH_USER = "nats-tsnet-auth";
const AUTH_SUBJECT = "$SYS.REQ.USER.AUTH";

interface Tracked {
  ip: string;
  /** The client certificate the bridge verified, if the face asks for one. */
  cert?: CertIdentity;
  /** The local face it came through; undefined on the tailnet. */
  face?: string;
  serverId: string;
  key: string;
  label: string;
}

interface ConnectEvent {
  server?: { name?: string };
  client?: { kind?: string; host?: string; id?: number; acc?: string; name?: string };
  reason?: string;
}

export interface CalloutOptions {
  auth: AuthConfig;
  serverName: string;
  clientPort: number;
  monitorPort: number;
  authPassword: string;
  sys: { user: string; password: string };
  bridge: () => Bridge;
  log: Logger;
  /** Decisions are counted here (auth_decisions, by decision) for /metrics. */
  counters?: Counters;
}

export class AuthCallout {
  // Signs in node:crypto: the callout signs twice per connection attempt.
  readonly issuer: KeyPair = nativeSigner(createAccount());
  private nc?: NatsConnection;
  private sys?: NatsConnection;
  private readonly tracked = new Map<number, Tracked>();
  private readonly o: CalloutOptions;
  private timer?: NodeJS.Timeout;
  private reevaluating = false;

  constructor(o: CalloutOptions) {
    this.o = o;
  }

  issuerPublicKey(): string {
    return this.issuer.getPublicKey();
  }

  async start(): Promise<void> {
    const base = {
      servers: `127.0.0.1:${this.o.clientPort}`,
      ignoreClusterUpdates: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
    };
    this.nc = await connect({ ...base, user: AUTH_USER, pass: this.o.authPassword, name: "nats-tsnet auth callout" });
    this.sys = await connect({ ...base, user: this.o.sys.user, pass: this.o.sys.password, name: "nats-tsnet auth housekeeping" });
    const sub = this.nc.subscribe(AUTH_SUBJECT);
    void (async () => {
      for await (const m of sub) {
        void this.answer(m.data)
          .then((r) => r && m.respond(r))
          .catch((e) => this.o.log.error({ err: (e as Error).message }, "auth callout failed"));
      }
    })();
    this.watchConnects(this.sys);
    // Grants can change without a netmap event reaching us in time (or at
    // all, if the bridge restarts): re-check on a timer as well.
    this.timer = setInterval(() => void this.reevaluate("timer"), 15_000);
  }

  /**
   * The audit trail of who is connected comes from nats-server itself: its
   * connect and disconnect events in the system account, for this server's
   * clients only (every node hears the whole cluster's events). A forged or
   * refused connection never produces one.
   */
  private watchConnects(sys: NatsConnection): void {
    const sub = sys.subscribe("$SYS.ACCOUNT.*.*");
    void (async () => {
      for await (const m of sub) {
        const kind = m.subject.split(".").at(-1);
        if (kind !== "CONNECT" && kind !== "DISCONNECT") continue;
        let ev: ConnectEvent;
        try {
          ev = m.json<ConnectEvent>();
        } catch {
          continue;
        }
        if (ev.server?.name !== this.o.serverName || ev.client?.kind !== "Client") continue;
        const c = ev.client;
        // Our own service connections (no PROXY header) are not clients' business.
        if (!/^(100\.|fd7a:)/i.test(c.host ?? "") && !String(c.name ?? "").startsWith("local:")) continue;
        // The bridge prefixes every client's name with its tailnet identity (the event's tags stay empty for callout users).
        const fields = { who: c.name, account: c.acc, cid: c.id, ip: c.host };
        if (kind === "CONNECT") this.o.log.info(fields, "connected");
        else this.o.log.info({ ...fields, reason: ev.reason }, "disconnected");
      }
    })();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await Promise.allSettled([this.nc?.close(), this.sys?.close()]);
  }

  /** Returns the signed response, or undefined when another node's server asked. */
  private async answer(data: Uint8Array): Promise<string | undefined> {
    const req = decodeVerified<{ nats: AuthorizationRequest }>(new TextDecoder().decode(data)).nats;
    // Every node's callout hears every request in a cluster; each answers
    // only its own server (the response must carry that server's issuer).
    if (req.server_id.name !== this.o.serverName) return undefined;
    const ip = req.client_info.host ?? "";
    const cid = req.client_info.id ?? 0;
    const { cert, face } = assertionOf(req.connect_opts?.auth_token);
    const d = face ? this.decideLocal(face, ip) : await this.decideFor(ip, cert);
    const respond = (body: { jwt?: string; error?: string }) =>
      encodeAuthorizationResponse(req.user_nkey, req.server_id.id, this.issuer, body, {});
    if (!d.decision.allow) {
      this.o.log.warn({ decision: "deny", who: d.label, ip, cid, reason: d.decision.reason }, "auth decision");
      this.o.counters?.inc("auth_decisions", { decision: "deny" });
      // The bridge shows the client this reason in place of the bare violation.
      await this.o
        .bridge()
        .denied(ip, d.decision.reason)
        .catch(() => {});
      return respond({ error: d.decision.reason });
    }
    const a = d.decision;
    // Before nats-server hears the answer: the bridge holds this identity's
    // connections to its limits (nats-server ignores them in the JWT below).
    // If the bridge cannot be told, they keep the default quota, which is
    // the safe side.
    await this.o
      .bridge()
      .quota(ip, a.limits)
      .catch((e) => this.o.log.warn({ ip, cid, err: (e as Error).message }, "could not give the bridge this identity's limits"));
    const user = {
      pub: a.pub,
      sub: a.sub,
      ...(a.resp ? { resp: a.resp } : {}),
      // Ignored by nats-server v2.14 for callout users; kept so the JWT says what holds.
      subs: a.limits.subs,
      payload: a.limits.payload,
      // Only the bridge can vouch (proxy_sig): a local process is refused
      // even if it somehow got this far.
      proxy_required: true,
      // Who this is, for /connz and `nats server report connections`.
      tags: d.tags,
    };
    // The JWT's name stays empty on purpose: nats-server makes a named
    // callout user the connection's username, and on every config reload
    // (each membership change) it closes connections whose username is not
    // in its config. Unnamed, they are re-authorized through us instead.
    // Who is connected shows in /connz all the same: the bridge prefixes
    // each connection's name with its tailnet identity.
    const jwt = await encodeUser("", req.user_nkey, this.issuer, user as never, { aud: a.account });
    this.tracked.set(cid, { ip, cert, face, serverId: req.server_id.id, key: a.key, label: d.label });
    // A decision, not a connection: nats-server still checks the bridge's
    // signature (proxy_required) after this, and "connected" is logged only
    // from its own connect event (watchConnects).
    this.o.counters?.inc("auth_decisions", { decision: "allow" });
    this.o.log.info(
      { decision: "allow", who: d.label, ip, cid, account: a.account, pub: a.pub.allow, sub: a.sub.allow, limits: a.limits },
      "auth decision",
    );
    return respond({ jwt });
  }

  /** A caller on a local face: the rules naming that face decide (policy.ts decideLocal). */
  private decideLocal(face: string, ip: string): { decision: Decision; label: string; tags: string[] } {
    const { decision, id } = decideLocal(face, ip, this.o.auth);
    return { decision, label: id.label, tags: [`local-face:${face}`] };
  }

  private async decideFor(ip: string, cert?: CertIdentity): Promise<{ decision: Decision; label: string; tags: string[] }> {
    if (!/^(100\.|fd7a:)/i.test(ip)) {
      return {
        decision: { allow: false, reason: `connection from ${ip || "an unknown address"} did not come through the tailnet` },
        label: ip || "unknown",
        tags: [],
      };
    }
    try {
      const w = await this.o.bridge().whois(ip);
      const id = identityOf(w);
      const tags = [id.user ? `user:${id.user}` : "", ...id.tags.map((t) => `device-tag:${t.slice(4)}`), `device:${id.device}`].filter(
        Boolean,
      );
      const label = cert ? `${id.label} with certificate ${certLabel(cert)}` : id.label;
      if (cert) tags.push(`cert:${certLabel(cert)}`);
      return { decision: decide(id, w.caps?.[this.o.auth.capability], this.o.auth, cert), label, tags };
    } catch (e) {
      return { decision: { allow: false, reason: `${ip} is not a device on this tailnet (${(e as Error).message})` }, label: ip, tags: [] };
    }
  }

  /**
   * Policy changed (or may have): decide again for every open connection
   * and disconnect those whose rights changed. They reconnect and meet the
   * new policy in the callout; a denied one stays out.
   */
  async reevaluate(why: string): Promise<void> {
    if (this.reevaluating || !this.sys) return;
    this.reevaluating = true;
    try {
      await this.prune();
      for (const [cid, t] of this.tracked) {
        const d = t.face ? this.decideLocal(t.face, t.ip) : await this.decideFor(t.ip, t.cert);
        const now = d.decision.allow ? d.decision.key : "denied";
        if (now === t.key) continue;
        this.tracked.delete(cid);
        this.o.log.info(
          { who: t.label, cid, why, now: d.decision.allow ? "different rights" : d.decision.reason },
          "policy changed: disconnecting to re-authorize",
        );
        await this.sys
          .request(`$SYS.REQ.SERVER.${t.serverId}.KICK`, JSON.stringify({ cid }), { timeout: 5000 })
          .catch((e) => this.o.log.warn({ cid, err: (e as Error).message }, "kick failed"));
      }
    } finally {
      this.reevaluating = false;
    }
  }

  /** Forgets connections that are gone. */
  private async prune(): Promise<void> {
    try {
      const r = await localGet(this.o.monitorPort, "/connz?limit=100000", 5000);
      if (r.status !== 200) return;
      const live = new Set((JSON.parse(r.body) as { connections?: Array<{ cid: number }> }).connections?.map((c) => c.cid) ?? []);
      for (const cid of this.tracked.keys()) if (!live.has(cid)) this.tracked.delete(cid);
    } catch {
      // monitoring unavailable for a moment: keep everything, try next time
    }
  }
}

/**
 * What the bridge vouches for about a connection (dataplane/bridge
 * tlsface.go Assertion): a client certificate it verified, the local face
 * the caller came through. The bridge owns CONNECT's auth_token on every
 * client face (a client's own is dropped) and writes this prefix only for
 * what it checked; nats-server still checks the bridge's signature
 * (proxy_required) after this answer, so a local process that wrote one
 * itself gets nowhere.
 */
const ASSERTION = "nats-tsnet:";
export function assertionOf(token: string | undefined): { cert?: CertIdentity; face?: string } {
  if (!token?.startsWith(ASSERTION)) return {};
  try {
    const a = JSON.parse(token.slice(ASSERTION.length)) as { cert?: CertIdentity; face?: string };
    const cert = typeof a.cert?.sha256 === "string" && /^[0-9a-f]{64}$/.test(a.cert.sha256) ? a.cert : undefined;
    const face = typeof a.face === "string" && a.face ? a.face : undefined;
    return { cert, face };
  } catch {
    return {};
  }
}
