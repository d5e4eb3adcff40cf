package bridge

// Stable error codes. The control plane branches on these and the README
// lists them, so a code string never changes once shipped; add new ones
// instead. They travel in ErrorBody.Code, in responses and "fatal" events.
const (
	// ErrBadRequest: a control line that is not a JSON request.
	ErrBadRequest = "ERR_BAD_REQUEST"
	// ErrUnknownOp: a request whose op has no handler.
	ErrUnknownOp = "ERR_UNKNOWN_OP"
	// ErrFailed: a handler failed without a more specific code.
	ErrFailed = "ERR_FAILED"
	// ErrBadArgs: a request's args are malformed, incomplete or contradictory.
	ErrBadArgs = "ERR_BAD_ARGS"
	// ErrNotLoopback: an address that must be on loopback is not.
	ErrNotLoopback = "ERR_NOT_LOOPBACK"
	// ErrListen: a tailnet or loopback listener could not be opened.
	ErrListen = "ERR_LISTEN"
	// ErrExists: listen/forward with a name already in use.
	ErrExists = "ERR_EXISTS"
	// ErrNotFound: close of a name that is not open.
	ErrNotFound = "ERR_NOT_FOUND"
	// ErrWhois: the tailnet could not say who is behind an address.
	ErrWhois = "ERR_WHOIS"
	// ErrKey: the in-memory trusted-proxy key could not be made.
	ErrKey = "ERR_KEY"
	// ErrTailnet: a tailnet failure at start-up with no finer diagnosis.
	ErrTailnet = "ERR_TAILNET"
	// ErrTailnetStart: tsnet itself failed to start or to join.
	ErrTailnetStart = "ERR_TAILNET_START"
	// ErrTailnetAuth: the control server refused the auth key or wants a human login.
	ErrTailnetAuth = "ERR_TAILNET_AUTH"
	// ErrTailnetControlUnreachable: the control server (or, to mint an auth
	// key, Tailscale's API) could not be reached in time.
	ErrTailnetControlUnreachable = "ERR_TAILNET_CONTROL_UNREACHABLE"
	// ErrTailnetUpTimeout: not Running within the up timeout, cause unknown.
	ErrTailnetUpTimeout = "ERR_TAILNET_UP_TIMEOUT"
	// ErrUsage: bad command line (fatal event from main).
	ErrUsage = "ERR_USAGE"
	// ErrAuthKeyFile: --auth-key-file or --login-fd could not be read (fatal event from main).
	ErrAuthKeyFile = "ERR_AUTH_KEY_FILE"
	// ErrOAuthTags: an OAuth client secret or workload identity, which mint
	// an auth key carrying exactly the advertised tags, with no tags.
	ErrOAuthTags = "ERR_OAUTH_TAGS"
	// ErrTLS: the client face's TLS certificate, key or client CA could not
	// be loaded when the listener was opened.
	ErrTLS = "ERR_TLS"
	// ErrSocksRefused: the client proxy's SOCKS5 port refused a destination
	// (logged with the reason; the SOCKS5 client gets a failure reply).
	ErrSocksRefused = "ERR_SOCKS_REFUSED"
	// The client face's refusals, logged as the code of the refusal's line
	// (the caller gets a NATS -ERR line); none is ever an exit:
	// ErrDeviceRate: a device opened connections faster than its rate.
	ErrDeviceRate = "ERR_DEVICE_RATE"
	// ErrDeviceConnections: a device already held its most connections.
	ErrDeviceConnections = "ERR_DEVICE_CONNECTIONS"
	// ErrNoGrant: auth mode tailnet, and no grant or rule could admit the
	// caller (or the tailnet does not know it); refused before nats-server
	// asked the auth callout.
	ErrNoGrant = "ERR_NO_GRANT"
	// ErrClientHandshake: the caller broke the NATS handshake (no CONNECT,
	// a line too long, silence).
	ErrClientHandshake = "ERR_CLIENT_HANDSHAKE"
	// ErrClientCert: a client on a face with a client CA presented no
	// certificate, or one that is expired, from another CA, not for client
	// authentication or revoked by configuration.
	ErrClientCert = "ERR_CLIENT_CERT"
	// ErrWebSocketRefused: the WebSocket face refused an upgrade: a page
	// from an origin not in nats.websocket_origins, a Host that is not the
	// node's, or not a WebSocket request.
	ErrWebSocketRefused = "ERR_WEBSOCKET_REFUSED"
	// ErrLocalFromHost: a local face refused a caller whose source is an
	// address of the node's own host (a local process, not a container).
	ErrLocalFromHost = "ERR_LOCAL_FROM_HOST"
	// ErrQuotaSubs: a client connection went past its identity's
	// subscriptions (the SUB is dropped; the client reads nats-server's own
	// 'maximum subscriptions exceeded').
	ErrQuotaSubs = "ERR_QUOTA_SUBS"
	// ErrQuotaPayload: a client connection published past its identity's
	// largest message (it is closed after nats-server's own 'Maximum
	// Payload Violation').
	ErrQuotaPayload = "ERR_QUOTA_PAYLOAD"
)
