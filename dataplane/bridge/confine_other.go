//go:build !linux

package bridge

import "errors"

// ConfineConnect needs Landlock, which only Linux has.
func ConfineConnect(ports []uint16) error {
	return errors.New("outbound confinement needs Linux (Landlock)")
}
