// The config file's shape, as written by people. It stays transform-free so
// that the same schema yields docs/config.schema.json for editors; turning
// durations and sizes into numbers happens in load.ts.

import { z } from "zod";
import { DURATION_PATTERN, SIZE_PATTERN } from "./units.ts";
import { ACCOUNT_DEFAULTS, IDENTITY_DEFAULTS, budgetIssues } from "./budgets.ts";

export const HOSTNAME_PATTERN = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$";
export const TAG_PATTERN = "^tag:[a-zA-Z][a-zA-Z0-9-]*$";
export const LOG_FORMATS = ["text", "json"] as const;
export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error"] as const;

const DURATION_HINT = 'a duration like "500ms", "10s", "2m", "1h30m"';
// Zod reports a union's own message only when no branch comes close, so each
// branch of a union carries the same message.
const SIZE_ERROR = { error: 'must be a size like "512MB", "1.5GB" (binary units) or a byte count' };
const URL_ERROR = { error: 'must be an http:// or https:// URL, or "" for Tailscale\'s own control plane' };
const SYNC_ERROR = { error: `must be "always" or ${DURATION_HINT}` };

const hostname = z.string().regex(new RegExp(HOSTNAME_PATTERN), {
  error: "must be 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'",
});
const duration = (fallback: string, description: string) =>
  z
    .string({ error: `must be ${DURATION_HINT}` })
    .regex(new RegExp(DURATION_PATTERN), { error: `must be ${DURATION_HINT}` })
    .default(fallback)
    .meta({ description });
const size = (description: string) =>
  z
    .union([z.int(SIZE_ERROR).min(0, SIZE_ERROR), z.string().regex(new RegExp(SIZE_PATTERN), SIZE_ERROR)], SIZE_ERROR)
    .default("")
    .meta({ description });
const port = (fallback: number, description: string, min = 1) =>
  z
    .int({ error: `must be an integer port number ${min}..65535` })
    .min(min, { error: `must be ${min}..65535` })
    .max(65535, { error: `must be ${min}..65535` })
    .default(fallback)
    .meta({ description });
// nats-server refuses names with spaces; other whitespace is no better.
const natsName = (description: string) =>
  z.string().regex(/^\S*$/, { error: "must not contain whitespace" }).default("").meta({ description });
const path = (description: string) => z.string().default("").meta({ description });
const tag = z.string().regex(new RegExp(TAG_PATTERN), {
  error: 'must look like "tag:name" (a letter, then letters, digits or "-")',
});

export const TailnetSchema = z.strictObject({
  control_url: z
    .union([z.literal(""), z.url({ protocol: /^https?$/, ...URL_ERROR })], URL_ERROR)
    .default("")
    .meta({ description: "Coordination server URL (e.g. headscale). Empty: Tailscale's own." }),
  auth_key: z
    .string()
    .default("")
    .meta({ description: "Auth key for first login. Prefer TS_AUTHKEY or auth_key_file over putting it in a file." }),
  auth_key_file: path("File holding the auth key (relative to the config file's directory)."),
  client_secret: z.string().default("").meta({
    description:
      "OAuth client secret (tskey-client-...) that mints the auth key for first login, for a fleet; the key carries exactly `tags`, which must then be set. Prefer TS_CLIENT_SECRET or client_secret_file. A tskey-client- auth key is taken as one too.",
  }),
  client_secret_file: path("File holding the OAuth client secret (relative to the config file's directory)."),
  client_id: z.string().default("").meta({
    description:
      "Workload identity federation: the client ID of the tailnet's federated identity, exchanged with id_token (or id_token_file) or audience for the auth key; the key carries exactly `tags`, which must then be set. TS_CLIENT_ID.",
  }),
  id_token: z.string().default("").meta({
    description: "Workload identity federation: the identity provider's ID token. Prefer TS_ID_TOKEN or id_token_file.",
  }),
  id_token_file: path(
    "Workload identity federation: file holding the ID token (relative to the config file's directory), read at each login, so a rotated token (e.g. a Kubernetes projected service account token) is picked up.",
  ),
  audience: z.string().default("").meta({
    description:
      "Workload identity federation, in place of id_token: the audience of an ID token asked of the platform (GitHub Actions, AWS, GCP). TS_AUDIENCE.",
  }),
  tags: z.array(tag).default([]).meta({
    description:
      "Tags the node requests at login, beyond those its auth key applies. Empty with a tagged key (recommended); list the cluster tag when the key is a user's, or with client_secret or client_id (their key carries exactly these tags).",
  }),
  cluster_tag: tag
    .default("tag:nats-js")
    .meta({ description: "Peers carrying this tag are cluster members; the node refuses to start without it." }),
  cluster_key_file: path(
    "File holding a key every cluster member holds (32+ characters, mode 0600): a second factor beside cluster_tag, so a leaked tagged auth key alone admits no route. Empty: the tag alone.",
  ),
  ephemeral: z
    .boolean()
    .default(false)
    .meta({ description: "Register as an ephemeral node (removed from the tailnet soon after going offline)." }),
  up_timeout: duration("60s", "How long to wait for the node to reach Running on the tailnet."),
});

export const LoopbackSchema = z
  .strictObject({
    client_port: port(14222, "nats-server client listener on 127.0.0.1 (the bridge forwards tailnet clients here)."),
    cluster_port: port(16222, "nats-server route listener on 127.0.0.1. Keep identical on every node."),
    monitor_port: port(18222, "nats-server monitoring listener on 127.0.0.1 (health checks)."),
  })
  .meta({ description: "nats-server's own listeners; always bound to 127.0.0.1 by design." });

export const JetStreamSchema = z.strictObject({
  enabled: z.boolean().default(true).meta({ description: "Off: plain core NATS, no streams." }),
  store_dir: path("JetStream storage directory. Empty: <state_dir>/jetstream."),
  sync_interval: z
    .union([z.literal("always", SYNC_ERROR), z.string().regex(new RegExp(DURATION_PATTERN), SYNC_ERROR)], SYNC_ERROR)
    .default("always")
    .meta({ description: '"always" fsyncs every write (durable across correlated crashes); a duration trades that for speed.' }),
  max_memory: size("Memory storage limit. Empty: nats-server's own default."),
  max_file: size("File storage limit. Empty: nats-server's own default."),
});

const count = (fallback: number, min: number, description: string) =>
  z
    .int({ error: `must be a whole number, ${min} or more` })
    .min(min, { error: `must be ${min} or more` })
    .default(fallback)
    .meta({ description });
export const DeviceLimitsSchema = z
  .strictObject({
    max_connections: count(256, 0, "Connections one device may have open at once, those being set up included. 0: no limit."),
    connect_rate: z
      .number({ error: "must be a number of connections per second, 0 or more" })
      .min(0, { error: "must be 0 or more" })
      .default(20)
      .meta({ description: "New connections per second one device may open, sustained. 0: no limit." }),
    connect_burst: count(100, 1, "New connections one device may open at once before connect_rate applies."),
  })
  .meta({
    description:
      "Limits per client device on the tailnet client port, so that one device (a reconnect loop, a flood) cannot keep everyone else's connections out. A connection past them is closed before nats-server sees it.",
  });

export const REVOKED_PATTERN = "^(serial:[0-9a-fA-F]{1,40}|[0-9a-fA-F]{2}(:?[0-9a-fA-F]{2}){31})$";
export const TlsSchema = z
  .strictObject({
    cert_file: path("PEM certificate chain served to clients (relative to the config file's directory); read again whenever it changes."),
    key_file: path("The certificate's private key, PEM; read again whenever it changes."),
    tailnet_cert: z.boolean().default(false).meta({
      description:
        "Serve the node's own certificate for its MagicDNS name, issued through the control server (Tailscale's HTTPS certificates; headscale has none). Instead of cert_file and key_file.",
    }),
    min_version: z.enum(["1.2", "1.3"]).default("1.2").meta({
      description: "Oldest TLS version offered. With 1.2 only forward-secret AEAD suites (ECDHE with AES-GCM or ChaCha20-Poly1305).",
    }),
    client_ca_file: path(
      "mTLS: every client must present a certificate that chains to this PEM bundle and is meant for client authentication; read again whenever it changes.",
    ),
    revoked: z
      .array(
        z.string().regex(new RegExp(REVOKED_PATTERN), {
          error: 'must be a certificate\'s SHA-256 fingerprint (64 hex digits, colons allowed) or "serial:" and its serial number in hex',
        }),
      )
      .default([])
      .meta({ description: "Client certificates refused although they chain to client_ca_file: SHA-256 fingerprints or serial:<hex>." }),
  })
  .meta({
    description:
      "TLS on the tailnet client port, terminated by the node (WireGuard already encrypts; this is for policies and clients that insist on TLS, and for client certificates). Clients may start TLS after INFO or at once (TLS first). Leave it out to keep plain NATS.",
  });

export const NatsSchema = z.strictObject({
  server_name: natsName("NATS server_name (unique, stable: it identifies the JetStream peer). Empty: hostname."),
  cluster_name: natsName('NATS cluster name. Empty: cluster_tag without the "tag:" prefix.'),
  client_port: port(4222, "Tailnet-facing client port."),
  cluster_port: port(6222, "Tailnet-facing cluster (route) port."),
  monitor_port: port(8222, "Tailnet-facing monitoring port; 0 keeps monitoring off the tailnet.", 0),
  websocket_port: port(
    0,
    "Tailnet-facing WebSocket port for browsers and wsconnect clients (wss:// when nats.tls is set); 0: off. The same identity rules as the client port.",
    0,
  ),
  websocket_origins: z
    .array(
      z
        .string()
        .regex(/^(?!\*$)[^/\s]+$/, { error: "must be a host or host:port pattern (* matches any run of characters; never * alone)" })
        .min(1),
    )
    .default([])
    .meta({
      description:
        "Web pages that may connect to the WebSocket port besides pages served from the node's own address: host or host:port patterns like app.example or *.apps.example. A browser sends its page's origin; any other is refused, so a web page a tailnet user happens to visit cannot connect with that user's identity.",
    }),
  local_faces: z
    .array(
      z.strictObject({
        name: z
          .string()
          .regex(/^[a-z0-9][a-z0-9-]{0,31}$/, { error: "must be 1-32 characters of a-z, 0-9 and '-'" })
          .meta({ description: "What auth.rules[].faces call it." }),
        listen: z.string().meta({ description: 'An address of this host and a port, e.g. "172.17.0.1:4222" (a docker bridge).' }),
      }),
    )
    .default([])
    .meta({
      description:
        "The client port served on addresses of this host too, for callers that are not tailnet devices (containers on a docker bridge). They are admitted only by auth.rules naming the face (or, in operator mode, by their credentials). Loopback and 0.0.0.0 are refused.",
    }),
  client_bind_host: z.string().default("").meta({
    description:
      "An address of this host where the client port (client_port) is served too: a local face named client-bind-host. The reference design's NATS_TSNET_CLIENT_BIND_HOST, which sets it.",
  }),
  cluster_bind_host: z.string().default("").meta({
    description:
      "Refused: routes run only over the tailnet, where each peer's device and cluster tag are checked. The reference design's NATS_TSNET_CLUSTER_BIND_HOST.",
  }),
  loopback: LoopbackSchema.prefault({}),
  jetstream: JetStreamSchema.prefault({}),
  device_limits: DeviceLimitsSchema.prefault({}),
  tls: TlsSchema.optional(),
  include: path("nats-server config fragment included last (relative to the config file's directory)."),
  lame_duck_duration: duration("30s", "How long lame-duck mode spreads client disconnects on shutdown; at least 30s."),
  lame_duck_grace_period: duration("2s", "Wait before lame-duck mode starts closing clients; must be below lame_duck_duration."),
  max_payload: size("Largest message payload. Empty: nats-server's default (1MB)."),
  standalone: z.boolean().default(false).meta({
    description:
      "Run without a cluster (one host only). A clustered JetStream needs at least one live route to serve; a standalone node serves JetStream alone. Changing it needs a restart.",
  }),
  debug: z.boolean().default(false).meta({ description: "nats-server debug logging." }),
  trace: z.boolean().default(false).meta({ description: "nats-server protocol tracing; very verbose." }),
});

export const LogSchema = z.strictObject({
  format: z.enum(LOG_FORMATS).default("text").meta({ description: "text for people, json for log collectors." }),
  level: z.enum(LOG_LEVELS).default("info"),
});

// Limits: -1 is "no limit"; sizes as elsewhere in the file, or byte counts.
const COUNT_ERROR = { error: "must be a whole number, or -1 for no limit" };
const BYTES_ERROR = { error: 'must be a size like "512MB", a byte count, or -1 for no limit' };
const countLimit = z.int(COUNT_ERROR).min(-1, COUNT_ERROR);
const bytesLimit = z.union([z.int(BYTES_ERROR).min(-1, BYTES_ERROR), z.string().regex(new RegExp(SIZE_PATTERN), BYTES_ERROR)], BYTES_ERROR);

/** What one identity may hold on one connection; a grant's limits replace auth.limits. */
const identityLimits = {
  subs: countLimit.meta({ description: "Subscriptions one connection may hold at once; -1: up to the account's max_subscriptions." }),
  payload: bytesLimit.meta({
    description: "Largest message one connection may publish (headers included); -1: the account's or server's max_payload.",
  }),
};
export const IdentityLimitsSchema = z
  .strictObject({
    subs: identityLimits.subs.default(IDENTITY_DEFAULTS.subs),
    payload: identityLimits.payload.default(IDENTITY_DEFAULTS.payload),
  })
  .meta({
    description:
      "Modes tailnet and none: what one identity may hold on one connection, enforced by the bridge. A grant's or rule's `limits` replace these for its identity.",
  });

/** Every account's limits (modes tailnet and none); fields left out of an override keep auth.account_limits. */
const accountLimitFields = {
  max_memory: bytesLimit.meta({
    description:
      "JetStream memory storage. Empty: an even share of nats.jetstream.max_memory (75% of the host's memory when unset) among the accounts without their own.",
  }),
  max_file: bytesLimit.meta({
    description:
      "JetStream file storage, every replica counted. Empty: an even share of nats.jetstream.max_file (what nats-server would take on this host when unset: 75% of the free disk plus of what the store holds) among the accounts without their own.",
  }),
  max_streams: countLimit.meta({ description: "JetStream streams." }),
  max_consumers: countLimit.meta({ description: "JetStream consumers." }),
  max_bytes_required: z.boolean().meta({ description: "Every stream must set max_bytes, so that it reserves its size up front." }),
  max_connections: countLimit.meta({ description: "Client connections in the account, across the cluster." }),
  max_subscriptions: countLimit.meta({ description: "Subscriptions per connection: the most any grant can give." }),
  max_payload: bytesLimit.meta({
    description: "Largest message per connection: the most any grant can give. Empty: the server's max_payload.",
  }),
};
type AccountLimitKey = keyof typeof accountLimitFields;
export const AccountLimitsSchema = z
  .strictObject(
    Object.fromEntries(
      Object.entries(accountLimitFields).map(([k, v]) => [k, (v as z.ZodType).default(ACCOUNT_DEFAULTS[k as AccountLimitKey])]),
    ) as { [K in AccountLimitKey]: z.ZodDefault<(typeof accountLimitFields)[K]> },
  )
  .meta({ description: "Every account's budget and ceilings (modes tailnet and none; SYS keeps none)." });
export const AccountOverrideSchema = z.strictObject(
  Object.fromEntries(Object.entries(accountLimitFields).map(([k, v]) => [k, (v as z.ZodType).optional()])) as {
    [K in AccountLimitKey]: z.ZodOptional<(typeof accountLimitFields)[K]>;
  },
);

const subjects = z.array(z.string().min(1)).default([]);
export const PermissionSchema = z.strictObject({
  allow: subjects.meta({ description: "Subjects (wildcards allowed) that are allowed." }),
  deny: subjects.meta({ description: "Subjects that are denied even if allowed." }),
});
export const GrantSchema = z.strictObject({
  pub: PermissionSchema.optional(),
  sub: PermissionSchema.optional(),
  resp: z
    .strictObject({
      max: z.number().int().min(1).default(1),
      // The config file's duration rules (units.ts), so "1d", "-5s" or "abc" is refused, not read as 0.
      ttl: z
        .union([z.literal(""), z.string().regex(new RegExp(DURATION_PATTERN))], { error: `must be ${DURATION_HINT}, or "" for no limit` })
        .default(""),
    })
    .optional()
    .meta({ description: "Allow publishing replies to requests received (max replies, within ttl)." }),
  account: z
    .string()
    .regex(/^[A-Za-z0-9_-]+$/, { error: "must be an account name from auth.accounts (or SYS)" })
    .optional(),
  jetstream: z
    .strictObject({
      streams: z
        .array(z.string().regex(/^[^\s.*>]+$/, { error: "must be a stream name (no spaces, '.', '*' or '>')" }))
        .min(1)
        .meta({ description: "Streams this grant may use: info, get, consumers, acks. Nothing else in $JS.API." }),
      manage: z.boolean().default(false).meta({
        description:
          "Also create, update, purge and delete these streams. Whoever creates a stream chooses its subjects: grant this only to identities you would let read those subjects.",
      }),
    })
    .optional()
    .meta({ description: "JetStream scoped to named streams, in place of the whole account's $JS.API.>." }),
  limits: z.strictObject({ subs: identityLimits.subs.optional(), payload: identityLimits.payload.optional() }).optional().meta({
    description:
      "Replaces auth.limits for this identity (several grants: the largest wins), up to its account's max_subscriptions and max_payload.",
  }),
});
export const CERT_NAME_PATTERN = "^(CN|DNS|EMAIL|URI|SHA256)=.+$";
export const RuleSchema = z
  .strictObject({
    users: z.array(z.string().min(1)).default([]).meta({ description: "Tailnet login names, e.g. alice@example.com." }),
    tags: z.array(tag).default([]).meta({ description: "Device tags, for services." }),
    certs: z
      .array(
        z.string().regex(new RegExp(CERT_NAME_PATTERN), {
          error:
            'must name a client certificate: "CN=<common name>", "DNS=<name>", "EMAIL=<address>", "URI=<uri>" or "SHA256=<fingerprint>"',
        }),
      )
      .default([])
      .meta({
        description:
          "Client certificates (nats.tls.client_ca_file): a rule naming certs matches a connection whose verified certificate has one of these names, from any device it lists in users or tags (none listed: any device the tailnet lets connect). When such a rule matches, it alone decides; otherwise the device's grants and rules do.",
      }),
    faces: z.array(z.string().min(1)).default([]).meta({
      description:
        "Local faces (nats.local_faces) by name: the rule admits callers there, which are not tailnet devices. Such a rule names no users, tags or certs.",
    }),
    sources: z
      .array(z.string().regex(/^[0-9a-fA-F.:]+\/\d{1,3}$/, { error: 'must be a CIDR like "172.17.0.0/16"' }))
      .default([])
      .meta({ description: "With faces: only callers from these source addresses (CIDRs); none listed: any caller on the face." }),
  })
  .extend(GrantSchema.shape);

export const AUTH_MODES = ["tailnet", "operator", "none"] as const;
export const AuthSchema = z.strictObject({
  mode: z.enum(AUTH_MODES).default("tailnet").meta({
    description:
      "tailnet: the caller's tailnet identity decides (auth callout); operator: NATS decentralized JWT auth with credentials files (see operator_dir); none: every tailnet client the ACL admits gets full access to account APP.",
  }),
  operator_dir: z.string().default("").meta({
    description: "mode operator: the store made by `nats-tsnet auth init` (relative to the config file). The same on every node.",
  }),
  capability: z
    .string()
    .regex(/^[a-z0-9.-]+\/cap\/[a-z0-9_-]+$/, { error: 'must look like "example.com/cap/nats"' })
    .refine((c) => !c.startsWith("tailscale.com/"), { error: "names under tailscale.com/ are reserved" })
    .default("nats-tsnet.dev/cap/nats")
    .meta({ description: "App-capability name read from the tailnet policy's grants." }),
  accounts: z
    .array(z.string().regex(/^[A-Za-z0-9_-]+$/))
    .min(1)
    .default(["APP"])
    .meta({ description: "NATS accounts identities may be placed in; the first is the default. SYS is always there." }),
  rules: z
    .array(RuleSchema)
    .default([])
    .meta({ description: "Permissions by user or tag, for control servers without grants; merged with grants." }),
  limits: IdentityLimitsSchema.prefault({}),
  account_limits: AccountLimitsSchema.prefault({}),
  account_overrides: z
    .record(z.string().regex(/^[A-Za-z0-9_-]+$/), AccountOverrideSchema)
    .default({})
    .meta({ description: "Per account, by name: the fields of account_limits that differ for it." }),
});

export const ObserveSchema = z
  .strictObject({
    loopback_port: port(
      18223,
      "The node's status and Prometheus metrics on 127.0.0.1 (/status, /metrics): what `nats-tsnet status` reads and a local scraper scrapes; 0: off.",
      0,
    ),
  })
  .meta({ description: "What the node shows about the cluster: `nats-tsnet status` and /metrics." });

export const ConfigSchema = z
  .strictObject({
    hostname: hostname
      .optional()
      .meta({ description: "Tailnet device name and default NATS server_name. Default: the OS hostname, sanitized." }),
    state_dir: z
      .string()
      .min(1, { error: "must not be empty" })
      .default("./nats-tsnet-state")
      .meta({ description: "Holds tailscale/ (node identity), jetstream/ and the rendered nats-server.conf." }),
    tailnet: TailnetSchema.prefault({}),
    nats: NatsSchema.prefault({}),
    log: LogSchema.prefault({}),
    auth: AuthSchema.prefault({}),
    observe: ObserveSchema.prefault({}),
  })
  .superRefine((p, ctx) => {
    for (const { path, message } of budgetIssues(p)) ctx.addIssue({ code: "custom", path, message });
  })
  .meta({ title: "nats-tsnet configuration" });

/** What a config file (or `overrides`) may contain: everything optional. */
export type ConfigInput = z.input<typeof ConfigSchema>;
export type ParsedInput = z.output<typeof ConfigSchema>;

/** JSON Schema of the config file, for editors (yaml-language-server) and docs. */
export function configJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(ConfigSchema, { io: "input", target: "draft-2020-12" });
}
