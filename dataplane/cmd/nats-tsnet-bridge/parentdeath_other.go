//go:build !linux

package main

// dieWithParent: other kernels have no parent-death signal; the node's own
// supervision (and its exit) is all there is.
func dieWithParent() {}
