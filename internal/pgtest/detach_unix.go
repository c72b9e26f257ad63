//go:build unix

package pgtest

import "syscall"

// detached makes a child its own session leader, so it survives the test
// binary and its process group.
func detached() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} }
