//go:build !linux

package server

// wsPoller is Linux's (epoll); elsewhere each socket waits on a
// goroutine of its own.
type wsPoller struct{}

var wsPoll = func() *wsPoller { return nil }

func (*wsPoller) add(*wsConn) uint64          { return 0 }
func (*wsPoller) remove(uint64)               {}
func (*wsPoller) arm(int, uint64, bool) error { return nil }
