package ferret

import (
	"bufio"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// fakeBackend stands in for FerretDB: it reports each command it gets and
// answers it when told to.
type fakeBackend struct {
	ln   net.Listener
	got  chan received
	done chan struct{} // closed when the test ends
	wg   sync.WaitGroup
	mu   sync.Mutex
	conn []net.Conn
}

type received struct {
	command string
	reply   chan<- struct{} // close to answer
}

func startFakeBackend(t *testing.T) *fakeBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &fakeBackend{ln: ln, got: make(chan received, 10), done: make(chan struct{})}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conn = append(b.conn, c)
			b.mu.Unlock()
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				b.serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		close(b.done)
		ln.Close()
		b.mu.Lock()
		for _, c := range b.conn {
			c.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
	return b
}

func (b *fakeBackend) serve(c net.Conn) {
	r := bufio.NewReader(c)
	for {
		m, err := readMessage(r)
		if err != nil {
			return
		}
		msg, err := parseOpMsg(m)
		if err != nil {
			return
		}
		answer := make(chan struct{})
		b.got <- received{command: msg.command(), reply: answer}
		select {
		case <-answer:
		case <-b.done:
			return
		}
		reply, _ := newCommand(1, bson.D{{Key: "ok", Value: 1.0}})
		reply.setResponseTo(m.requestID())
		if _, err := c.Write(reply); err != nil {
			return
		}
	}
}

func (m message) setResponseTo(id int32) {
	m[8], m[9], m[10], m[11] = byte(id), byte(id>>8), byte(id>>16), byte(id>>24)
}

func (b *fakeBackend) next(t *testing.T) received {
	t.Helper()
	select {
	case r := <-b.got:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("the backend got no command")
		return received{}
	}
}

func send(t *testing.T, addr string, cmd bson.D) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	m, err := newCommand(7, cmd)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(m); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestWireProxySerialisesWrites(t *testing.T) {
	backend := startFakeBackend(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := startWireProxy(ln, backend.ln.Addr().String(), t.TempDir(), slog.New(slog.DiscardHandler))
	defer p.close()
	addr := ln.Addr().String()
	insert := bson.D{{Key: "insert", Value: "c"}, {Key: "$db", Value: "d"}}

	// A's write holds the lock; then A goes away without waiting.
	a := send(t, addr, insert)
	first := backend.next(t)
	a.Close()

	// Reads still pass.
	send(t, addr, bson.D{{Key: "find", Value: "c"}, {Key: "$db", Value: "d"}})
	if r := backend.next(t); r.command != "find" {
		t.Fatalf("backend got %q, want the find", r.command)
	} else {
		close(r.reply)
	}

	// B's write waits until FerretDB has answered A's.
	b := send(t, addr, insert)
	select {
	case r := <-backend.got:
		t.Fatalf("backend got %q while another write was in flight", r.command)
	case <-time.After(200 * time.Millisecond):
	}
	close(first.reply)
	second := backend.next(t)
	if second.command != "insert" {
		t.Fatalf("backend got %q, want B's insert", second.command)
	}
	close(second.reply)
	b.SetReadDeadline(time.Now().Add(30 * time.Second))
	reply, err := readMessage(bufio.NewReader(b))
	if err != nil {
		t.Fatalf("B's reply: %v", err)
	}
	if reply.responseTo() != 7 {
		t.Errorf("B's reply answers request %d, want 7", reply.responseTo())
	}
}
