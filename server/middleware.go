package server

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strings"
	"time"

	"github.com/felixge/httpsnoop"

	"github.com/codecrafter/codecrafter"
)

// Security headers of every response. The API's CSP forbids everything: it
// serves JSON, never documents.
const apiCSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

// maxRequestIDLen bounds an accepted incoming X-Request-ID.
const maxRequestIDLen = 64

// logger returns the server's logger with the request id of ctx.
func (s *Server) logger(ctx context.Context) *slog.Logger {
	if id := codecrafter.RequestIDFromContext(ctx); id != "" {
		return s.log.With("request_id", id)
	}
	return s.log
}

// ReplicaHeader names the replica that answered (Config.ReplicaName).
const ReplicaHeader = "X-Codecrafter-Replica"

// withRequest is the outermost middleware: request id (X-Request-ID in and
// out), client address, security headers, one access-log line and the
// HTTP metrics per request, and a last-resort recover.
func (s *Server) withRequest(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-ID")
		if !saneRequestID(id) {
			id = codecrafter.NewID()
		}
		h := w.Header()
		h.Set("X-Request-ID", id)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", apiCSP)
		if s.cfg.ReplicaName != "" {
			h.Set(ReplicaHeader, s.cfg.ReplicaName)
		}

		client := s.clientAddr(r)
		ctx := codecrafter.WithClientAddr(codecrafter.WithRequestID(r.Context(), id), client)
		r = r.WithContext(ctx)
		var rec responseRecord
		rw := rec.wrap(w)
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.logger(ctx).Error("panic serving HTTP", "panic", p, "stack", string(debug.Stack()))
				if rec.status == 0 {
					writeError(rw, r, http.StatusInternalServerError, codecrafter.EINTERNAL, "internal error")
				}
			}
			if rec.status == 0 {
				rec.status = http.StatusOK
			}
			d := time.Since(start)
			route := routeLabel(r.URL.Path)
			s.metrics.observeHTTP(route, r.Method, rec.status, d)
			level := slog.LevelInfo
			switch {
			case rec.status >= 500:
				level = slog.LevelWarn
			case route == "/healthz" || route == "/readyz":
				level = slog.LevelDebug
			}
			s.log.LogAttrs(ctx, level, "request",
				slog.String("method", r.Method), slog.String("path", r.URL.Path),
				slog.Int("status", rec.status), slog.Duration("duration", d),
				slog.Int64("bytes", rec.bytes), slog.String("client", client),
				slog.String("request_id", id))
		}()
		next.ServeHTTP(rw, r)
	})
}

// responseRecord notes what a handler answered; a hijacked (WebSocket)
// connection counts as 101.
type responseRecord struct {
	status int
	bytes  int64
}

func (rec *responseRecord) wrap(w http.ResponseWriter) http.ResponseWriter {
	return httpsnoop.Wrap(w, httpsnoop.Hooks{
		WriteHeader: func(next httpsnoop.WriteHeaderFunc) httpsnoop.WriteHeaderFunc {
			return func(code int) {
				if rec.status == 0 {
					rec.status = code
				}
				next(code)
			}
		},
		Write: func(next httpsnoop.WriteFunc) httpsnoop.WriteFunc {
			return func(b []byte) (int, error) {
				if rec.status == 0 {
					rec.status = http.StatusOK
				}
				n, err := next(b)
				rec.bytes += int64(n)
				return n, err
			}
		},
		ReadFrom: func(next httpsnoop.ReadFromFunc) httpsnoop.ReadFromFunc {
			return func(src io.Reader) (int64, error) {
				if rec.status == 0 {
					rec.status = http.StatusOK
				}
				n, err := next(src)
				rec.bytes += n
				return n, err
			}
		},
		Hijack: func(next httpsnoop.HijackFunc) httpsnoop.HijackFunc {
			return func() (net.Conn, *bufio.ReadWriter, error) {
				c, brw, err := next()
				if err == nil {
					rec.status = http.StatusSwitchingProtocols
				}
				return c, brw, err
			}
		},
	})
}

// routeLabel maps a path to its route, bounding the metric label.
func routeLabel(path string) string {
	switch {
	case path == "/graphql", path == "/", path == "/healthz", path == "/readyz", path == "/graphiql":
		return path
	case strings.HasPrefix(path, "/assets/"):
		return "/assets"
	case strings.HasPrefix(path, "/app/"):
		return "/app"
	case strings.HasPrefix(path, "/s/"), strings.HasPrefix(path, "/join/"):
		return "/app-page"
	}
	return "other"
}

// saneRequestID accepts short ids of letters, digits and -_.: only, so a
// client cannot inject anything into logs or headers.
func saneRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for _, c := range []byte(id) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == ':'
		if !ok {
			return false
		}
	}
	return true
}

// clientAddr is the caller's IP. Behind TrustedProxies proxies it is the
// address the outermost one appended to X-Forwarded-For: counted from the
// right of the hops and the connection's peer, since every hop left of
// what our proxies wrote is the client's to invent. A chain shorter than
// that (a request that bypassed the proxies) or a malformed hop gives the
// connection's peer.
func (s *Server) clientAddr(r *http.Request) string {
	peer := remoteIP(r.RemoteAddr)
	n := s.cfg.TrustedProxies
	if n <= 0 {
		return peer
	}
	var hops []string
	for _, h := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(h, ",")...)
	}
	if len(hops) < n {
		return peer
	}
	if ip, ok := parseHop(hops[len(hops)-n]); ok {
		return ip
	}
	return peer
}

// parseHop reads one X-Forwarded-For entry: an IP, possibly with a port.
func parseHop(hop string) (string, bool) {
	hop = strings.TrimSpace(hop)
	if ip, err := netip.ParseAddr(hop); err == nil {
		return ip.Unmap().String(), true
	}
	if ap, err := netip.ParseAddrPort(hop); err == nil {
		return ap.Addr().Unmap().String(), true
	}
	return "", false
}

func remoteIP(remote string) string {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return ap.Addr().Unmap().String()
	}
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return remote
	}
	return host
}
