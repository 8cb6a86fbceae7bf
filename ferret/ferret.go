// Package ferret is the embedded MongoDB-wire server, the store's default:
// FerretDB v1 on SQLite in this process, behind a wire proxy that fixes
// what FerretDB lacks for the store (atomic guarded writes, the _id index
// of its SQLite tables). Package mongo, the store, talks to it as to any
// MongoDB server.
package ferret

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"

	"github.com/FerretDB/FerretDB/ferretdb"
)

// Server is a MongoDB-wire server running in this process: FerretDB v1
// with its SQLite backend (one file per database under a directory),
// behind a proxy that makes its writes atomic (see wireProxy). Clients
// must connect through URI, never to FerretDB directly.
//
// Performance: FerretDB decodes and rewrites a whole document on every
// update, so a write costs in proportion to its document's size (an
// execution's output chunks included: batch output before AppendOutput).
// A filter other than an _id decodes the whole collection, so the store
// reads by _id through lookups it keeps (see package mongo): its reads cost
// the same at any size of the data. So the embedded server suits
// development and small deployments (one SQLite file, writes one at a
// time); point the store at MongoDB for more.
type Server struct {
	ferret context.CancelFunc
	done   chan struct{} // closed when FerretDB's Run returns
	proxy  *wireProxy
	uri    string
}

// newMu serialises ferretdb.New, which writes a package variable.
var newMu sync.Mutex

// Option configures Start.
type Option func(*startConfig)

type startConfig struct {
	addr string
}

// WithListenAddr makes the server listen on addr (host:port) instead of a
// free port of 127.0.0.1, e.g. so that a worker process can reach it;
// URI then names the address listened on. There is no authentication:
// keep it on a private network.
func WithListenAddr(addr string) Option {
	return func(c *startConfig) { c.addr = addr }
}

// Start starts a server that keeps its files under dir (created
// if needed); data survives a restart with the same dir. ctx bounds the
// start only: the server runs until Close, so that its owner can stop it
// after the code that uses it.
func Start(ctx context.Context, dir string, logger *slog.Logger, opts ...Option) (*Server, error) {
	cfg := startConfig{addr: "127.0.0.1:0"}
	for _, o := range opts {
		o(&cfg)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("embedded mongo: %w", err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("embedded mongo: %w", err)
	}
	if err := ensureIDIndexes(ctx, abs); err != nil {
		return nil, fmt.Errorf("embedded mongo: %w", err)
	}

	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return nil, fmt.Errorf("embedded mongo: %w", err)
	}
	newMu.Lock()
	f, err := ferretdb.New(&ferretdb.Config{
		// Only the proxy talks to FerretDB.
		Listener: ferretdb.ListenerConfig{TCP: "127.0.0.1:0"},
		Handler:  "sqlite",
		// WAL with synchronous=NORMAL (SQLite's advice for WAL) instead of
		// FULL: a commit is not flushed to the disk on its own, so a
		// killed process loses nothing (its commits are in the OS's cache)
		// and an OS crash or power cut can lose the last moments, as with
		// MongoDB's default write concern; consistent either way. A run
		// makes several commits, each an fsync under FULL.
		SQLiteURL: (&url.URL{Scheme: "file", Opaque: filepath.ToSlash(abs) + "/", RawQuery: "_pragma=synchronous(NORMAL)"}).String(),
		Logger:    quiet(logger.With("component", "ferretdb")),
	})
	newMu.Unlock()
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("embedded mongo: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e := &Server{
		ferret: cancel,
		done:   make(chan struct{}),
		uri:    "mongodb://" + ln.Addr().String() + "/",
	}
	go func() {
		defer close(e.done)
		if err := f.Run(runCtx); err != nil {
			logger.Error("embedded mongo stopped", "err", err)
		}
	}()
	backend, err := url.Parse(f.MongoDBURI())
	if err != nil {
		cancel()
		<-e.done
		ln.Close()
		return nil, fmt.Errorf("embedded mongo: %w", err)
	}
	e.proxy = startWireProxy(ln, backend.Host, abs, logger)
	logger.DebugContext(ctx, "embedded mongo started", "uri", e.uri, "dir", abs)
	return e, nil
}

// URI is the connection string of the server.
func (e *Server) URI() string { return e.uri }

// Close stops the server and waits until it has. It drops the connections
// of clients still connected (their operations then fail), so stop those
// first; it does not wait for them.
func (e *Server) Close() error {
	e.proxy.close()
	// With the proxy's connections gone FerretDB stops at once; otherwise
	// it would give them about 3 s.
	e.ferret()
	<-e.done
	return nil
}

// quiet returns a logger that drops FerretDB's records below ERROR: it
// logs every connection, and every unknown command (endSessions) as a
// warning.
func quiet(l *slog.Logger) *slog.Logger {
	return slog.New(levelHandler{min: slog.LevelError, Handler: l.Handler()})
}

type levelHandler struct {
	min slog.Level
	slog.Handler
}

func (h levelHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h levelHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return levelHandler{min: h.min, Handler: h.Handler.WithAttrs(a)}
}

func (h levelHandler) WithGroup(name string) slog.Handler {
	return levelHandler{min: h.min, Handler: h.Handler.WithGroup(name)}
}
