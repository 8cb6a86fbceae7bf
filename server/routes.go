package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/codecrafter/codecrafter"
)

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/graphql", s.withCORS(s.graphQLRoute(s.withAuth(s.graphQLHandler()))))
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	if s.cfg.GraphiQL {
		mux.HandleFunc("GET /graphiql", graphiQLPage)
		mux.Handle("GET /assets/", graphiQLAssets())
	}
	registerWebApp(mux, s.deps.WebApp)
	return s.withRequest(mux)
}

// MetricsHandler serves GET /metrics (Deps.Gatherer, in Prometheus's
// text format) and GET /healthz. It belongs on a listener of its own,
// not the public API port: metrics reveal traffic and internals.
func (s *Server) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.deps.Gatherer, promhttp.HandlerOpts{
		ErrorLog: slogPrinter{s.log}, Timeout: s.cfg.RequestTimeout,
	}))
	mux.HandleFunc("GET /healthz", healthz)
	return mux
}

// graphQLRoute checks what gqlgen would answer without our error shape
// (methods, content types, oversized bodies, bad upgrades), records the
// transport for transportGuard and bounds HTTP requests in time.
func (s *Server) graphQLRoute(gql http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store") // responses carry tokens
		if r.Header.Get("Upgrade") != "" {
			if r.Method != http.MethodGet || !websocket.IsWebSocketUpgrade(r) {
				writeError(w, r, http.StatusBadRequest, codecrafter.EINVALID, "expected a WebSocket upgrade")
				return
			}
			s.serveWebsocket(gql, w, r)
			return
		}
		var via string
		switch r.Method {
		case http.MethodGet:
			if err := checkGETParams(r); err != nil {
				writeError(w, r, http.StatusBadRequest, codecrafter.EINVALID, err.Error())
				return
			}
			via = transportGET
		case http.MethodPost:
			mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if mt != "application/json" {
				writeError(w, r, http.StatusUnsupportedMediaType, codecrafter.EINVALID, "Content-Type must be application/json")
				return
			}
			if !s.readBody(w, r) {
				return
			}
			via = transportPOST
		case http.MethodOptions:
		default:
			w.Header().Set("Allow", "GET, POST, OPTIONS")
			writeError(w, r, http.StatusMethodNotAllowed, codecrafter.EINVALID, "use POST, or GET for queries")
			return
		}
		ctx := context.WithValue(r.Context(), transportKey{}, via)
		if s.cfg.RequestTimeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, s.cfg.RequestTimeout)
			defer cancel()
		}
		gql.ServeHTTP(w, r.WithContext(ctx))
	})
}

// readBody reads the body within MaxBodyBytes (413 beyond) and puts it
// back for gqlgen.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) bool {
	limit := s.cfg.MaxBodyBytes
	if limit <= 0 {
		return true
	}
	tooLarge := func() bool {
		writeError(w, r, http.StatusRequestEntityTooLarge, codecrafter.EINVALID,
			fmt.Sprintf("request body too large: the limit is %d bytes", limit))
		return false
	}
	if r.ContentLength > limit {
		return tooLarge()
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if errors.As(err, new(*http.MaxBytesError)) {
			return tooLarge()
		}
		writeError(w, r, http.StatusBadRequest, codecrafter.EINVALID, "could not read the request body")
		return false
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return true
}

// checkGETParams refuses what gqlgen's GET transport would answer
// without an error code: an unparsable query string or JSON parameters.
func checkGETParams(r *http.Request) error {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return errors.New("malformed query string")
	}
	for _, p := range []string{"variables", "extensions"} {
		if v := q.Get(p); v != "" && !json.Valid([]byte(v)) {
			return fmt.Errorf("the %s parameter is not valid JSON", p)
		}
	}
	return nil
}
