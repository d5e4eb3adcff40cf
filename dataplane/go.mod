module github.com/nats-tsnet/nats-tsnet/dataplane

go 1.26.4
