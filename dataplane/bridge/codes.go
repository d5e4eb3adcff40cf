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
	// ErrTailnetControlUnreachable: the control server could not be reached in time.
	ErrTailnetControlUnreachable = "ERR_TAILNET_CONTROL_UNREACHABLE"
	// ErrTailnetUpTimeout: not Running within the up timeout, cause unknown.
	ErrTailnetUpTimeout = "ERR_TAILNET_UP_TIMEOUT"
	// ErrUsage: bad command line (fatal event from main).
	ErrUsage = "ERR_USAGE"
	// ErrAuthKeyFile: --auth-key-file or --auth-key-fd could not be read (fatal event from main).
	ErrAuthKeyFile = "ERR_AUTH_KEY_FILE"
)
