package main

import (
	_ "tailscale.com/tsnet"
	_ "github.com/pires/go-proxyproto"
)

func main() {}
