module github.com/nats-tsnet/nats-tsnet/upstream/headscale

go 1.26.4
