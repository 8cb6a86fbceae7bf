package server

import (
	"sync"
	"syscall"
)

// wsPoller parks idle sockets: one goroutine waits for input on all of
// them (an epoll set of its own beside the runtime's), so that an idle
// socket holds no goroutine and no stack. A socket registers once, when
// it is accepted, and arms the poller each time it parks (one-shot, so
// an event wakes it once); the kernel drops a closed socket's entry.
// Events name sockets by an id, never by fd: an fd is reused once closed.
// The waiting goroutine runs only while some socket is registered.
type wsPoller struct {
	epfd         int
	wakeR, wakeW int // a pipe: a byte on it makes wait look at the set

	mu      sync.Mutex
	conns   map[uint64]*wsConn
	next    uint64 // the last id given; 0 is the pipe's
	running bool   // wait is running
}

// wsPoll is the process's poller; nil when epoll is unavailable, and
// sockets then wait on a goroutine each.
var wsPoll = sync.OnceValue(func() *wsPoller {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil
	}
	var pipe [2]int
	if err := syscall.Pipe2(pipe[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		_ = syscall.Close(epfd)
		return nil
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN} // id 0
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, pipe[0], &ev); err != nil {
		_ = syscall.Close(epfd)
		_ = syscall.Close(pipe[0])
		_ = syscall.Close(pipe[1])
		return nil
	}
	return &wsPoller{epfd: epfd, wakeR: pipe[0], wakeW: pipe[1], conns: map[uint64]*wsConn{}}
})

// add registers c and returns its id.
func (p *wsPoller) add(c *wsConn) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next++
	p.conns[p.next] = c
	if !p.running {
		p.running = true
		go p.wait()
	}
	return p.next
}

// remove forgets a socket that ended; wait ends with the last one.
func (p *wsPoller) remove(id uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, id)
	if len(p.conns) == 0 && p.running {
		_, _ = syscall.Write(p.wakeW, []byte{0}) // full: wait has a byte to read already
	}
}

// arm asks for one event when fd has input (or hangs up); first is the
// socket's first arming (the kernel adds it, else re-arms it).
func (p *wsPoller) arm(fd int, id uint64, first bool) error {
	ev := syscall.EpollEvent{
		Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT,
		Fd:     int32(uint32(id)), Pad: int32(uint32(id >> 32)),
	}
	op := syscall.EPOLL_CTL_MOD
	if first {
		op = syscall.EPOLL_CTL_ADD
	}
	return syscall.EpollCtl(p.epfd, op, fd, &ev)
}

// wait hands each event to its socket, until no socket is registered.
func (p *wsPoller) wait() {
	events := make([]syscall.EpollEvent, 128)
	var drain [64]byte
	for {
		n, err := syscall.EpollWait(p.epfd, events, -1)
		if err != nil { // EINTR; nothing else can fail on a valid set
			continue
		}
		for _, ev := range events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if id == 0 {
				for {
					if n, _ := syscall.Read(p.wakeR, drain[:]); n <= 0 {
						break
					}
				}
				p.mu.Lock()
				if len(p.conns) == 0 {
					p.running = false
					p.mu.Unlock()
					return
				}
				p.mu.Unlock()
				continue
			}
			p.mu.Lock()
			c := p.conns[id]
			p.mu.Unlock()
			if c != nil {
				c.wake()
			}
		}
	}
}
