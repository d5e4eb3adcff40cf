package main

import (
	"encoding/json"
	"flag"
	"net"
	"os"
	"strings"
	"time"

	"github.com/nats-tsnet/nats-tsnet/dataplane/bridge"
)

// runCert is `nats-tsnet-bridge cert --dir D --name N --cn CN [--dns a,b]
// [--ip x,y] [--client] [--valid 8760h]`: one certificate from the private
// CA in D (made on first use); prints where the files are, as JSON.
func runCert(args []string) {
	fs := flag.NewFlagSet("cert", flag.ExitOnError)
	var r bridge.CertRequest
	var dns, ips string
	fs.StringVar(&r.Dir, "dir", "", "directory of the CA (ca.pem, ca.key; made when absent) and of the new pair")
	fs.StringVar(&r.Name, "name", "", "file name of the new pair: <name>.pem and <name>.key")
	fs.StringVar(&r.CN, "cn", "", "subject common name")
	fs.StringVar(&dns, "dns", "", "comma-separated DNS names")
	fs.StringVar(&ips, "ip", "", "comma-separated IP addresses")
	fs.BoolVar(&r.Client, "client", false, "a client certificate (mTLS) instead of a server certificate")
	fs.DurationVar(&r.Valid, "valid", 365*24*time.Hour, "validity from now (negative: already expired, for tests)")
	_ = fs.Parse(args)
	for _, d := range strings.Split(dns, ",") {
		if d != "" {
			r.DNS = append(r.DNS, d)
		}
	}
	for _, s := range strings.Split(ips, ",") {
		if s == "" {
			continue
		}
		ip := net.ParseIP(s)
		if ip == nil {
			fatalf(exitUsage, bridge.ErrUsage, "cert: bad IP address %q", s)
		}
		r.IPs = append(r.IPs, ip)
	}
	files, err := bridge.IssueCert(r)
	if err != nil {
		fatalf(exitUsage, bridge.ErrUsage, "cert: %v", err)
	}
	_ = json.NewEncoder(os.Stdout).Encode(files)
}
