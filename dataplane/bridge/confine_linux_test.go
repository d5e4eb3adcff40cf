package bridge

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
)

// The confinement is tested in a child process: it cannot be undone.
func TestConfineConnect(t *testing.T) {
	if os.Getenv("CONFINE_CHILD") != "" {
		confinedChild(t)
		return
	}
	allowed, _ := net.Listen("tcp", "127.0.0.1:0")
	other, _ := net.Listen("tcp", "127.0.0.1:0")
	defer allowed.Close()
	defer other.Close()
	cmd := exec.Command(os.Args[0], "-test.run", "^TestConfineConnect$", "-test.v")
	cmd.Env = append(os.Environ(), "CONFINE_CHILD=1", "ALLOWED="+allowed.Addr().String(), "OTHER="+other.Addr().String())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

func confinedChild(t *testing.T) {
	_, p, _ := net.SplitHostPort(os.Getenv("ALLOWED"))
	port, _ := strconv.Atoi(p)
	if err := ConfineConnect([]uint16{uint16(port)}); err != nil {
		t.Skipf("no Landlock network rules on this kernel: %v", err)
	}
	c, err := net.Dial("tcp", os.Getenv("ALLOWED"))
	if err != nil {
		t.Fatalf("the allowed port was refused: %v", err)
	}
	c.Close()
	if c, err := net.Dial("tcp", os.Getenv("OTHER")); err == nil {
		c.Close()
		t.Fatal("a port outside the confinement was reached")
	}
	// Listening is not restricted: nats-server must still open its listeners.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("binding was restricted too: %v", err)
	}
	ln.Close()
}
