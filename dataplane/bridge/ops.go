package bridge

import (
	"context"
	"encoding/json"
)

// HandleOps registers the control ops a node serves on ch. ctx bounds the
// ops that wait on tailscaled (status, whois).
func (n *Node) HandleOps(ctx context.Context, ch *Channel) {
	handle(ch, "status", func(StatusArgs) (any, error) { return n.Status(ctx) })
	handle(ch, "whois", func(a WhoisArgs) (any, error) { return n.WhoIs(ctx, a.Addr) })
	handle(ch, "observe", func(a ObserveArgs) (any, error) { return n.Observe(ctx, a) })
	handle(ch, "listen", func(a ListenArgs) (any, error) { return n.Listen(a) })
	handle(ch, "forward", func(a ForwardArgs) (any, error) { return n.Forward(a) })
	handle(ch, "close", func(a CloseArgs) (any, error) {
		if err := n.CloseListener(a.Name, a.Drain); err != nil {
			return nil, err
		}
		return struct{}{}, nil
	})
	handle(ch, "denied", func(a DeniedArgs) (any, error) {
		n.Denials.Add(a.IP, a.Reason)
		return struct{}{}, nil
	})
	handle(ch, "quota", func(a QuotaArgs) (any, error) {
		n.Quotas.Set(a.IP, Quota{Subs: a.Subs, Payload: a.Payload})
		return struct{}{}, nil
	})
}

// handle registers op with args decoded strictly (DecodeArgs) into A, so
// no op can forget to refuse unknown fields or skip validation.
func handle[A any](ch *Channel, op string, do func(A) (any, error)) {
	ch.Handle(op, func(raw json.RawMessage) (any, error) {
		var a A
		if err := DecodeArgs(raw, &a); err != nil {
			return nil, err
		}
		return do(a)
	})
}
