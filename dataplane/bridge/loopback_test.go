package bridge

import (
	"errors"
	"testing"
)

func TestIsLoopbackHostPort(t *testing.T) {
	tests := []struct {
		in   string
		want bool
		code string // mustLoopback's code when refused
	}{
		{"127.0.0.1:4222", true, ""},
		{"127.0.0.1:0", true, ""},
		{"127.100.64.7:16222", true, ""}, // route aliases live all over 127/8
		{"[::1]:8080", true, ""},
		{"[::ffff:127.0.0.1]:80", true, ""}, // v4-mapped loopback is still loopback
		{"localhost:4222", false, ErrNotLoopback},
		{"example.com:80", false, ErrNotLoopback},
		{"0.0.0.0:4222", false, ErrNotLoopback},
		{"[::]:4222", false, ErrNotLoopback},
		{"100.64.0.1:4222", false, ErrNotLoopback},
		{"192.168.1.10:4222", false, ErrNotLoopback},
		{"[fe80::1%lo]:80", false, ErrNotLoopback},
		{"[::1%lo]:80", false, ErrNotLoopback}, // zones refused even on ::1
		{":4222", false, ErrNotLoopback},       // empty host is every interface
		{"127.0.0.1", false, ErrBadArgs},
		{"::1:80", false, ErrBadArgs},
		{"127.0.0.1:http", false, ErrBadArgs}, // service names need the resolver
		{"127.0.0.1:", false, ErrBadArgs},
		{"127.0.0.1:65536", false, ErrBadArgs},
		{"127.0.0.1:-1", false, ErrBadArgs},
		{"", false, ErrBadArgs},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := IsLoopbackHostPort(tt.in); got != tt.want {
				t.Errorf("IsLoopbackHostPort(%q) = %v, want %v", tt.in, got, tt.want)
			}
			err := mustLoopback(tt.in)
			var ce *CodedError
			switch {
			case tt.code == "" && err != nil:
				t.Errorf("mustLoopback(%q) = %v, want nil", tt.in, err)
			case tt.code != "" && (!errors.As(err, &ce) || ce.Code != tt.code):
				t.Errorf("mustLoopback(%q) = %v, want code %s", tt.in, err, tt.code)
			}
		})
	}
}
