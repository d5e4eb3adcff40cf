// Command nats-tsnet-bridge is the data plane of nats-tsnet. It is started
// and driven by the nats-tsnet control plane; see package bridge.
//
//	nats-tsnet-bridge node   ...  a cluster node's tailnet face
//	nats-tsnet-bridge client ...  an untagged device exposing a tailnet
//	                              host:port on a local port (and SOCKS5)
//	nats-tsnet-bridge cert ...    a certificate from a private CA (TLS face)
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"tailscale.com/feature/buildfeatures"
	"time"

	"tailscale.com/envknob"
	"tailscale.com/net/socks5"

	"github.com/nats-tsnet/nats-tsnet/dataplane/bridge"
)

const (
	exitUsage   = 2
	exitControl = 3
	exitTailnet = 4
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	mode, args := os.Args[1], os.Args[2:]
	switch mode {
	case "confine":
		runConfine(args)
		return
	case "cert":
		runCert(args)
		return
	}
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	var (
		o         bridge.Options
		tags      string
		authFile  string
		loginFD   = fs.Int("login-fd", -1, "read the login (JSON: authKey, clientSecret, clientId, idToken, audience) from this inherited file descriptor, then close it")
		logUpload bool
		cf        clientFlags
		pprofAddr string
		upTimeout = fs.Duration("up-timeout", 60*time.Second, "how long to wait for the tailnet")
		port      = fs.Int("port", 0, "WireGuard UDP port (0 = any)")
	)
	fs.StringVar(&o.Hostname, "hostname", "", "tailnet device name")
	fs.StringVar(&o.Dir, "dir", "", "tsnet state directory")
	fs.StringVar(&o.ControlURL, "control-url", os.Getenv("TS_CONTROL_URL"), "control server URL (empty: Tailscale's)")
	fs.StringVar(&tags, "tags", "", "comma-separated tags to advertise")
	fs.StringVar(&authFile, "auth-key-file", "", "file holding the auth key or OAuth client secret (else TS_AUTHKEY, TS_CLIENT_SECRET, TS_CLIENT_ID with TS_ID_TOKEN or TS_AUDIENCE)")
	fs.BoolVar(&o.Ephemeral, "ephemeral", false, "register as an ephemeral device")
	fs.BoolVar(&o.Verbose, "verbose", false, "log tsnet's own lines")
	fs.BoolVar(&logUpload, "log-upload", false, "allow tsnet to upload logs to Tailscale (off by default)")
	fs.StringVar(&cf.listen, "listen", "127.0.0.1:4222", "client mode: local address, or fd:N for an inherited listening socket")
	fs.StringVar(&cf.to, "to", "", "client mode: tailnet host:port to forward to")
	fs.StringVar(&cf.socksAddr, "socks5", "", "client mode: also serve SOCKS5 on this local address (or fd:N)")
	fs.StringVar(&cf.socksAllow, "socks5-allow", "", "client mode: SOCKS5 destinations, comma-separated ports (on cluster-tagged peers) or host:port (default: the port of --to)")
	fs.StringVar(&cf.clusterTag, "cluster-tag", "tag:nats-js", "client mode: the tag that makes a peer a cluster node, for SOCKS5")
	fs.StringVar(&cf.socksUser, "socks5-user", "", "client mode: SOCKS5 username (the password comes from --socks5-password-file or "+socksPasswordEnv+")")
	fs.StringVar(&cf.socksPassFile, "socks5-password-file", "", "client mode: file holding the SOCKS5 password")
	fs.StringVar(&pprofAddr, "pprof", os.Getenv("NATS_TSNET_BRIDGE_PPROF"), "serve Go pprof on this loopback address (profiling only)")
	_ = fs.Parse(args)
	if pprofAddr != "" {
		startPprof(pprofAddr)
	}

	if !logUpload {
		// Privacy by default, and the offline test tailnet must never try
		// to reach Tailscale's log servers.
		envknob.SetNoLogsNoSupport()
	}
	o.UpTimeout = *upTimeout
	o.Port = uint16(*port)
	if tags != "" {
		o.Tags = strings.Split(tags, ",")
	}
	o.Login = readLogin(authFile, *loginFD)
	if o.Hostname == "" || o.Dir == "" {
		fatalf(exitUsage, bridge.ErrUsage, "--hostname and --dir are required")
	}

	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level(o.Verbose)}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	// Whether a key came along and of what kind, never the key: with state
	// in --dir the control plane passes none.
	keyState := "none"
	if o.Login != (bridge.Login{}) {
		keyState = "provided"
	}
	// peerAPI says whether tsnet's peerAPI server is in this binary: it
	// answers every tailnet peer whatever the ACL, so release builds omit it
	// (scripts/build.sh, ts_omit_peerapiserver) and the tests check this field.
	log.Info("bridge starting", "mode", mode, "hostname", o.Hostname, "authKey", keyState, "login", o.Login.Method(), "peerAPI", buildfeatures.HasPeerAPIServer,
		"memoryLimit", applyMemoryLimit())

	ch := bridge.NewChannel(os.Stdout)
	switch mode {
	case "node":
		runNode(ctx, ch, o, log)
	case "client":
		runClient(ctx, ch, o, log, cf)
	default:
		usage()
	}
}

// loginEnv is every variable tsnet would read a login from by itself.
var loginEnv = []string{"TS_AUTHKEY", "TS_AUTH_KEY", "TS_CLIENT_SECRET", "TS_CLIENT_ID", "TS_ID_TOKEN", "TS_AUDIENCE"}

// readLogin reads how to log in to the tailnet: from --login-fd (the
// control plane's way: a pipe, so no secret is ever in /proc/<pid>/environ
// or on a command line), else an auth key or client secret from
// --auth-key-file, else the environment for people running the bridge by
// hand. The environment is read only when neither flag is given, and
// cleared either way, so that tsnet, which reads these variables itself,
// uses only what was read here (that cannot scrub /proc/<pid>/environ,
// which keeps the initial environment: callers must not put secrets there).
func readLogin(file string, fd int) bridge.Login {
	env := map[string]string{}
	for _, k := range loginEnv {
		env[k] = os.Getenv(k)
		// No secret may leak into anything tsnet or a child might log.
		os.Unsetenv(k)
	}
	switch {
	case fd >= 0 && file != "":
		fatalf(exitUsage, bridge.ErrUsage, "--login-fd and --auth-key-file exclude each other")
	case fd >= 0:
		if fd <= 2 {
			fatalf(exitUsage, bridge.ErrUsage, "--login-fd %d: stdin, stdout and stderr carry the control protocol", fd)
		}
		f := os.NewFile(uintptr(fd), "login")
		if f == nil {
			fatalf(exitUsage, bridge.ErrAuthKeyFile, "--login-fd %d is not an open file descriptor", fd)
		}
		defer f.Close()
		l, err := decodeLogin(io.LimitReader(f, 64*1024))
		if err != nil {
			fatalf(exitUsage, bridge.ErrAuthKeyFile, "reading the login from fd %d: %v", fd, err)
		}
		return l
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			fatalf(exitUsage, bridge.ErrAuthKeyFile, "reading auth key file: %v", err)
		}
		return bridge.Login{AuthKey: strings.TrimSpace(string(b))}
	}
	key := env["TS_AUTHKEY"]
	if key == "" {
		key = env["TS_AUTH_KEY"]
	}
	return bridge.Login{
		AuthKey:      key,
		ClientSecret: env["TS_CLIENT_SECRET"],
		ClientID:     env["TS_CLIENT_ID"],
		IDToken:      env["TS_ID_TOKEN"],
		Audience:     env["TS_AUDIENCE"],
	}
}

// decodeLogin reads one JSON login object; an unknown field is refused, so
// that a control plane newer than this bridge cannot be half understood.
func decodeLogin(r io.Reader) (bridge.Login, error) {
	var l bridge.Login
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	err := dec.Decode(&l)
	return l, err
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: nats-tsnet-bridge node|client|confine [flags]")
	os.Exit(exitUsage)
}

func level(verbose bool) slog.Level {
	if verbose {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// fatalf reports a fatal error both as a control event (for the control
// plane to map to its own error) and on stderr (for a human), then exits.
func fatalf(code int, errCode, format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	b, _ := json.Marshal(bridge.Event{Event: bridge.EventFatal, Data: bridge.ErrorBody{Code: errCode, Message: msg}})
	fmt.Fprintln(os.Stdout, string(b))
	fmt.Fprintln(os.Stderr, "nats-tsnet-bridge: "+msg)
	os.Exit(code)
}

func up(ctx context.Context, ch *bridge.Channel, o bridge.Options, log *slog.Logger) *bridge.Node {
	n, err := bridge.Up(ctx, o, log)
	if err != nil {
		var ce *bridge.CodedError
		code := bridge.ErrTailnet
		if errors.As(err, &ce) {
			code = ce.Code
		}
		fatalf(exitTailnet, code, "%v", err)
	}
	st, err := n.Status(ctx)
	if err != nil {
		fatalf(exitTailnet, bridge.ErrTailnet, "status after join: %v", err)
	}
	// A failed write breaks the channel; Serve then returns it and
	// serveControl exits, so events need no error handling of their own.
	_ = ch.Emit(bridge.EventUp, st)
	return n
}

func serveControl(ctx context.Context, ch *bridge.Channel, n *bridge.Node, stop func()) {
	n.HandleOps(ctx, ch)
	go func() {
		err := ch.Serve(os.Stdin)
		var we *bridge.WriteError
		if errors.As(err, &we) {
			// The control plane is gone or deaf; there is nobody left to
			// serve, and no clean way to tell anyone.
			fmt.Fprintf(os.Stderr, "control channel write failed: %v\n", we.Err)
			os.Exit(exitControl)
		}
		// Stdin closed: our supervisor is gone. Never run unsupervised.
		stop()
	}()
}

func runNode(ctx context.Context, ch *bridge.Channel, o bridge.Options, log *slog.Logger) {
	ctx, stop := context.WithCancel(ctx)
	n := up(ctx, ch, o, log)
	serveControl(ctx, ch, n, stop)
	go n.WatchPeers(ctx, func(st *bridge.Status) { _ = ch.Emit(bridge.EventPeers, st) }, func() { _ = ch.Emit(bridge.EventNetmap, nil) })
	<-ctx.Done()
	n.CloseAll()
	time.Sleep(100 * time.Millisecond) // let the FINs leave before the netstack goes
	_ = n.Srv.Close()
}

// localListener opens a client-mode listener. Whatever the spec, the
// listener must end up on loopback: the proxy's ports act as its device's
// owner, so only this host may reach them.
func localListener(spec string) (net.Listener, error) {
	if fd, ok := strings.CutPrefix(spec, "fd:"); ok {
		// An inherited socket lets a parent in another network namespace
		// hand us a listener on its own loopback.
		num, err := strconv.Atoi(fd)
		if err != nil || num <= 2 {
			// 0-2 carry the control protocol; a negative fd is no file.
			return nil, fmt.Errorf("bad fd %q", spec)
		}
		f := os.NewFile(uintptr(num), "listener")
		defer f.Close()
		ln, err := net.FileListener(f)
		if err != nil {
			return nil, err
		}
		// The parent's word is not enough: the promise is loopback only.
		if !bridge.IsLoopbackHostPort(ln.Addr().String()) {
			ln.Close()
			return nil, fmt.Errorf("inherited %s is bound to %s, not a loopback address", spec, ln.Addr())
		}
		return ln, nil
	}
	if !bridge.IsLoopbackHostPort(spec) {
		return nil, fmt.Errorf("%s is not a loopback address", spec)
	}
	return net.Listen("tcp", spec)
}

// socksPasswordEnv holds the SOCKS5 password when no file is given; never
// a flag, which every local user could read in /proc/<pid>/cmdline.
const socksPasswordEnv = "NATS_TSNET_SOCKS5_PASSWORD"

// clientFlags are client mode's own flags.
type clientFlags struct {
	listen, to, socksAddr    string
	socksAllow, clusterTag   string
	socksUser, socksPassFile string
}

// socksSetup is the SOCKS5 server's configuration, checked before the
// device joins the tailnet so that a flag error costs no login.
type socksSetup struct {
	policy     *bridge.SocksPolicy
	user, pass string
}

func newSocksSetup(cf clientFlags, log *slog.Logger) socksSetup {
	p := &bridge.SocksPolicy{ClusterTag: cf.clusterTag}
	var err error
	if cf.socksAllow != "" {
		p.Allow, err = bridge.ParseSocksAllow(cf.socksAllow)
	} else {
		p.Allow, err = bridge.DefaultSocksAllow(cf.to)
	}
	if err != nil {
		fatalf(exitUsage, bridge.ErrUsage, "%v", err)
	}
	pass := socksPassword(cf.socksPassFile)
	switch {
	case cf.socksUser == "" && pass != "":
		fatalf(exitUsage, bridge.ErrUsage, "a SOCKS5 password needs --socks5-user")
	case cf.socksUser != "" && pass == "":
		fatalf(exitUsage, bridge.ErrUsage, "--socks5-user needs a password: --socks5-password-file or %s", socksPasswordEnv)
	case len(cf.socksUser) > 255 || len(pass) > 255:
		fatalf(exitUsage, bridge.ErrUsage, "SOCKS5 username and password are at most 255 bytes each (RFC 1929)")
	}
	allow := make([]string, len(p.Allow))
	for i, r := range p.Allow {
		allow[i] = r.String()
	}
	log.Info("socks5 policy", "allow", allow, "clusterTag", p.ClusterTag, "auth", cf.socksUser != "")
	return socksSetup{policy: p, user: cf.socksUser, pass: pass}
}

// server is tailscale's SOCKS5 server with a dialer that goes through the
// policy and dials only tailnet peers.
func (s socksSetup) server(n *bridge.Node, log *slog.Logger) *socks5.Server {
	return &socks5.Server{
		Logf:     func(string, ...any) {}, // refusals are logged by the dialer
		Dialer:   bridge.SocksDialer(s.policy, n.Status, n.Srv.Dial, log),
		Username: s.user,
		Password: s.pass,
	}
}

// socksPassword reads the SOCKS5 password from file, else from the
// environment, which is cleared so that nothing tsnet starts inherits it.
func socksPassword(file string) string {
	env := os.Getenv(socksPasswordEnv)
	os.Unsetenv(socksPasswordEnv)
	if file == "" {
		return env
	}
	b, err := os.ReadFile(file)
	if err != nil {
		fatalf(exitUsage, bridge.ErrUsage, "reading the SOCKS5 password file: %v", err)
	}
	pass := strings.TrimRight(string(b), "\r\n")
	if pass == "" {
		fatalf(exitUsage, bridge.ErrUsage, "the SOCKS5 password file %s is empty", file)
	}
	return pass
}

func runClient(ctx context.Context, ch *bridge.Channel, o bridge.Options, log *slog.Logger, cf clientFlags) {
	ctx, stop := context.WithCancel(ctx)
	if cf.to == "" {
		fatalf(exitUsage, bridge.ErrUsage, "client mode needs --to host:port")
	}
	if cf.socksAddr == "" && (cf.socksAllow != "" || cf.socksUser != "" || cf.socksPassFile != "") {
		fatalf(exitUsage, bridge.ErrUsage, "--socks5-allow, --socks5-user and --socks5-password-file need --socks5")
	}
	ln, err := localListener(cf.listen)
	if err != nil {
		fatalf(exitUsage, bridge.ErrListen, "listen %s: %v", cf.listen, err)
	}
	var socksLn net.Listener
	var socks socksSetup
	if cf.socksAddr != "" {
		if socksLn, err = localListener(cf.socksAddr); err != nil {
			fatalf(exitUsage, bridge.ErrListen, "socks5 listen %s: %v", cf.socksAddr, err)
		}
		socks = newSocksSetup(cf, log)
	}
	n := up(ctx, ch, o, log)
	serveControl(ctx, ch, n, stop)
	f := &bridge.Forwarder{
		Name:     "client",
		Listener: ln,
		Log:      log,
		Dial: func(ctx context.Context, _ net.Conn) (net.Conn, error) {
			return n.Srv.Dial(ctx, "tcp", cf.to)
		},
	}
	go f.Serve()
	ready := bridge.ReadyEvent{Listen: ln.Addr().String(), To: cf.to}
	if socksLn != nil {
		s := socks.server(n, log)
		go func() { _ = s.Serve(socksLn) }()
		ready.Socks5 = socksLn.Addr().String()
	}
	_ = ch.Emit(bridge.EventReady, ready)
	<-ctx.Done()
	f.Close()
	if socksLn != nil {
		_ = socksLn.Close()
	}
	_ = n.Srv.Close()
}
