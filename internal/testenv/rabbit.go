package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Rabbit is a private RabbitMQ node for one test, for tests that stop,
// kill or restart the broker (never do that to the shared one). Its data
// lives in a temporary directory, so queues and persistent messages
// survive Stop/Start and Kill/Start like on a real server.
type Rabbit struct {
	URL string // amqp://guest:guest@127.0.0.1:PORT/
	Log string // the node's log file

	server string   // rabbitmq-server script
	env    []string // the node's environment

	mu     sync.Mutex
	proc   *exec.Cmd     // nil while stopped
	exited chan struct{} // closed when proc has exited
}

// StartRabbit starts a private node and stops it at cleanup. A node takes
// about 5 s to start here. It skips (fails under CI) when rabbitmq-server
// is not installed. TEST_RABBITMQ_SERVER names the server script if it is
// elsewhere.
func StartRabbit(t testing.TB) *Rabbit {
	t.Helper()
	server := rabbitServer()
	if server == "" {
		Missing(t, "rabbitmq-server binary (apt-get install rabbitmq-server)")
		return nil
	}
	dir := t.TempDir()
	port, distPort, err := freePorts()
	if err != nil {
		t.Fatalf("private RabbitMQ: %v", err)
	}
	node := fmt.Sprintf("cctest-%d-%d@localhost", os.Getpid(), port)
	r := &Rabbit{
		URL:    fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", port),
		Log:    filepath.Join(dir, "node.log"),
		server: server,
		env: append(environ(),
			"HOME="+dir, // holds the node's own Erlang cookie
			"RABBITMQ_NODENAME="+node,
			"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
			"RABBITMQ_NODE_PORT="+strconv.Itoa(port),
			"RABBITMQ_DIST_PORT="+strconv.Itoa(distPort),
			"RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"),
			"RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"),
			"RABBITMQ_LOGS=-", // to stdout, which goes to Log
			"RABBITMQ_PID_FILE="+filepath.Join(dir, "pid"),
			// Keep the machine's configuration and plugins out.
			"RABBITMQ_CONF_ENV_FILE="+filepath.Join(dir, "rabbitmq-env.conf"),
			"RABBITMQ_CONFIG_FILE="+filepath.Join(dir, "rabbitmq"),
			"RABBITMQ_ADVANCED_CONFIG_FILE="+filepath.Join(dir, "advanced.config"),
			"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(dir, "enabled_plugins"),
			"RABBITMQ_ENABLED_PLUGINS=",
		),
	}
	t.Cleanup(r.Kill)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	if err := r.Start(ctx); err != nil {
		t.Fatalf("private RabbitMQ: %v", err)
	}
	t.Logf("private RabbitMQ %s started in %v", node, time.Since(start).Round(time.Millisecond))
	return r
}

func rabbitServer() string {
	if s := os.Getenv("TEST_RABBITMQ_SERVER"); s != "" {
		return s
	}
	// Debian's /usr/sbin wrapper insists on root or the rabbitmq user;
	// the script behind it runs as anyone.
	if _, err := os.Stat("/usr/lib/rabbitmq/bin/rabbitmq-server"); err == nil {
		return "/usr/lib/rabbitmq/bin/rabbitmq-server"
	}
	s, _ := exec.LookPath("rabbitmq-server")
	return s
}

// environ is the process environment without RabbitMQ settings.
func environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RABBITMQ_") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	return env
}

// freePorts picks two free ports below the ephemeral range: a client
// polling a port inside that range can be handed the same port as its own
// source and connect to itself, which blocks the node's listener.
func freePorts() (port, distPort int, err error) {
	for range 100 {
		p := 20000 + rand.IntN(12000)
		if free(p) && free(p+1) {
			return p, p + 1, nil
		}
	}
	return 0, 0, errors.New("no free ports")
}

func free(port int) bool {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// Start starts the node if it is stopped and waits until it accepts AMQP
// connections.
func (r *Rabbit) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc != nil {
		return nil
	}
	log, err := os.OpenFile(r.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(r.server)
	cmd.Env = r.env
	cmd.Stdout, cmd.Stderr = log, log
	// Its own process group, so that Kill reaches the Erlang VM behind the
	// script.
	cmd.SysProcAttr = nodeProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", r.server, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	r.proc, r.exited = cmd, exited

	for {
		select {
		case <-exited:
			r.proc = nil
			return fmt.Errorf("node exited while starting; log %s:\n%s", r.Log, r.logTail())
		case <-ctx.Done():
			r.killLocked()
			return fmt.Errorf("node not ready: %w; log %s:\n%s", ctx.Err(), r.Log, r.logTail())
		case <-time.After(100 * time.Millisecond):
		}
		// Nothing signals readiness: poll until a client can connect.
		if conn, err := amqp.DialConfig(r.URL, amqp.Config{Dial: amqp.DefaultDial(time.Second)}); err == nil {
			conn.Close()
			return nil
		}
	}
}

// Stop shuts the node down cleanly (SIGTERM) and waits until it is gone.
func (r *Rabbit) Stop(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc == nil {
		return nil
	}
	if err := r.proc.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-r.exited:
	case <-ctx.Done():
		r.killLocked()
		return fmt.Errorf("node did not stop: %w", ctx.Err())
	}
	r.killLocked() // helpers left behind
	return nil
}

// Kill ends the node at once (SIGKILL), like a crash or power loss.
func (r *Rabbit) Kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.killLocked()
}

// Restart stops the node cleanly and starts it again.
func (r *Rabbit) Restart(ctx context.Context) error {
	if err := r.Stop(ctx); err != nil {
		return err
	}
	return r.Start(ctx)
}

func (r *Rabbit) killLocked() {
	if r.proc == nil {
		return
	}
	syscall.Kill(-r.proc.Process.Pid, syscall.SIGKILL)
	<-r.exited
	r.proc = nil
}

func (r *Rabbit) logTail() string {
	b, _ := os.ReadFile(r.Log)
	if i := len(b) - 4000; i > 0 {
		b = b[i:]
		b = b[bytes.IndexByte(b, '\n')+1:]
	}
	return string(b)
}

// DeleteQueues deletes a test's queue and its dead-letter queue (name and
// name+".dead") from the broker at url when the test ends, so durable test
// queues don't pile up on the shared broker.
func DeleteQueues(t testing.TB, url, name string) {
	t.Cleanup(func() {
		conn, err := amqp.Dial(url)
		if err != nil {
			t.Errorf("deleting test queues: %v", err)
			return
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			t.Errorf("deleting test queues: %v", err)
			return
		}
		for _, q := range []string{name, name + ".dead"} {
			if _, err := ch.QueueDelete(q, false, false, false); err != nil {
				t.Errorf("deleting %s: %v", q, err)
			}
		}
	})
}
