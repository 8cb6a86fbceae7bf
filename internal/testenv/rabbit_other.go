//go:build !linux

package testenv

import "syscall"

// nodeProcAttr starts the node in its own process group.
func nodeProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
