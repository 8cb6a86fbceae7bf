package testenv

import "syscall"

// nodeProcAttr starts the node in its own process group, and has it stop
// (SIGTERM to the start script, which passes it on) if the test process
// dies without its cleanup, say on a test timeout.
func nodeProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
