package bridge

import (
	"github.com/landlock-lsm/go-landlock/landlock"
	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
)

// ConfineConnect lets the calling process, and every program it then
// executes, open outbound TCP connections only to the given ports
// (Landlock, Linux 6.7 and later; binds and everything else stay as they
// were). The node runs nats-server under it: nats-server's only
// outbound connections are its routes, all to the loopback cluster port,
// so a route gossip that slipped past the bridge could still not make it
// dial a monitor port, another local service or anything elsewhere. It
// fails rather than half-applies where the kernel lacks Landlock's
// network rules.
func ConfineConnect(ports []uint16) error {
	cfg := landlock.MustConfig(landlock.AccessNetSet(ll.AccessNetConnectTCP))
	rules := make([]landlock.Rule, 0, len(ports))
	for _, p := range ports {
		rules = append(rules, landlock.ConnectTCP(p))
	}
	return cfg.RestrictNet(rules...)
}
