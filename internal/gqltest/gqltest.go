// Package gqltest is a small GraphQL client for tests: HTTP operations and
// graphql-transport-ws subscriptions against a running server.
package gqltest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Client talks to one server as one caller.
type Client struct {
	URL   string // the /graphql endpoint, http://...
	Token string // access token; "" for anonymous
	HTTP  *http.Client
}

// Error is one GraphQL error.
type Error struct {
	Message    string         `json:"message"`
	Path       []any          `json:"path"`
	Extensions map[string]any `json:"extensions"`
}

// Code returns extensions.code.
func (e Error) Code() string { s, _ := e.Extensions["code"].(string); return s }

// Response is a GraphQL response.
type Response struct {
	Data   json.RawMessage `json:"data"`
	Errors []Error         `json:"errors"`
	Status int             `json:"-"`
}

// Code returns the first error's code, or "".
func (r *Response) Code() string {
	if len(r.Errors) == 0 {
		return ""
	}
	return r.Errors[0].Code()
}

// Decode unmarshals data into v.
func (r *Response) Decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Data, v); err != nil {
		t.Fatalf("decoding %s: %v", r.Data, err)
	}
}

// With returns a copy of c with another token.
func (c *Client) With(token string) *Client {
	cp := *c
	cp.Token = token
	return &cp
}

// Raw runs an operation and returns the response whatever it holds.
func (c *Client) Raw(t testing.TB, query string, vars map[string]any) *Response {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, err := http.NewRequest(http.MethodPost, c.URL, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", c.URL, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := &Response{Status: resp.StatusCode}
	if err := json.Unmarshal(raw, out); err != nil {
		t.Fatalf("response %d is not JSON: %s", resp.StatusCode, raw)
	}
	return out
}

// Do runs an operation that must succeed and decodes its data into v.
func (c *Client) Do(t testing.TB, query string, vars map[string]any, v any) {
	t.Helper()
	r := c.Raw(t, query, vars)
	if len(r.Errors) > 0 {
		t.Fatalf("unexpected errors: %+v\nquery: %s", r.Errors, query)
	}
	if v != nil {
		r.Decode(t, v)
	}
}

// Fail runs an operation that must fail with code and returns the error.
func (c *Client) Fail(t testing.TB, code, query string, vars map[string]any) Error {
	t.Helper()
	r := c.Raw(t, query, vars)
	if len(r.Errors) == 0 {
		t.Fatalf("want error %s, got data %s\nquery: %s", code, r.Data, query)
	}
	if got := r.Errors[0].Code(); got != code {
		t.Fatalf("want error code %s, got %s (%q)\nquery: %s", code, got, r.Errors[0].Message, query)
	}
	return r.Errors[0]
}

// Subscription is a graphql-transport-ws subscription.
type Subscription struct {
	conn *websocket.Conn
	msgs chan json.RawMessage
	done chan error
}

// Subscribe opens a socket, authenticates in connection_init and starts one
// subscription. It is closed at the end of the test.
func (c *Client) Subscribe(t testing.TB, query string, vars map[string]any) *Subscription {
	t.Helper()
	wsURL := "ws" + strings.TrimPrefix(c.URL, "http")
	dialer := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}, HandshakeTimeout: 5 * time.Second}
	conn, resp, err := dialer.Dial(wsURL, nil)
	if err != nil {
		t.Fatalf("dial %s: %v (%v)", wsURL, err, resp)
	}
	s := &Subscription{conn: conn, msgs: make(chan json.RawMessage, 1024), done: make(chan error, 1)}
	t.Cleanup(func() { conn.Close() })
	init := map[string]any{"type": "connection_init"}
	if c.Token != "" {
		init["payload"] = map[string]any{"authorization": "Bearer " + c.Token}
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := conn.WriteJSON(init); err != nil {
		t.Fatal(err)
	}
	var ack struct{ Type string }
	if err := conn.ReadJSON(&ack); err != nil || ack.Type != "connection_ack" {
		t.Fatalf("connection_init: got %q, %v", ack.Type, err)
	}
	conn.SetReadDeadline(time.Time{})
	if err := conn.WriteJSON(map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{"query": query, "variables": vars}}); err != nil {
		t.Fatal(err)
	}
	go s.read()
	return s
}

func (s *Subscription) read() {
	defer close(s.msgs)
	for {
		var m struct {
			Type    string          `json:"type"`
			Payload json.RawMessage `json:"payload"`
		}
		if err := s.conn.ReadJSON(&m); err != nil {
			s.done <- err
			return
		}
		switch m.Type {
		case "next":
			s.msgs <- m.Payload
		case "error":
			s.done <- fmt.Errorf("subscription error: %s", m.Payload)
			return
		case "complete":
			s.done <- nil
			return
		case "ping":
			s.conn.WriteJSON(map[string]any{"type": "pong"})
		}
	}
}

// Next waits for the next event's payload ({data, errors}).
func (s *Subscription) Next(t testing.TB, timeout time.Duration) (*Response, bool) {
	t.Helper()
	select {
	case m, ok := <-s.msgs:
		if !ok {
			return nil, false
		}
		var r Response
		if err := json.Unmarshal(m, &r); err != nil {
			t.Fatalf("event %s: %v", m, err)
		}
		return &r, true
	case <-time.After(timeout):
		t.Fatalf("no subscription event within %v", timeout)
		return nil, false
	}
}

// Live repeats act, which makes an event, until the subscription sends
// one, and returns that event: graphql-transport-ws does not acknowledge
// a subscribe, so one just sent may not be live yet, and an event made
// before it is (with nothing stored to replay) never reaches it.
func (s *Subscription) Live(t testing.TB, act func()) *Response {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		act()
		select {
		case m, ok := <-s.msgs:
			if !ok {
				t.Fatalf("subscription ended: %v", <-s.done)
			}
			var r Response
			if err := json.Unmarshal(m, &r); err != nil {
				t.Fatalf("event %s: %v", m, err)
			}
			return &r
		case <-time.After(time.Second):
		}
	}
	t.Fatal("the subscription never sent an event")
	return nil
}

// Collect reads events until the subscription completes, decoding each
// event's data with f. It fails on an error event or after timeout.
func (s *Subscription) Collect(t testing.TB, timeout time.Duration, f func(*Response)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		select {
		case m, ok := <-s.msgs:
			if !ok {
				if err := <-s.done; err != nil {
					t.Fatalf("subscription ended: %v", err)
				}
				return
			}
			var r Response
			if err := json.Unmarshal(m, &r); err != nil {
				t.Fatalf("event %s: %v", m, err)
			}
			f(&r)
		case <-ctx.Done():
			t.Fatalf("subscription did not complete within %v", timeout)
		}
	}
}

// Err waits for the subscription to end and returns why (nil: complete).
func (s *Subscription) Err(t testing.TB, timeout time.Duration) error {
	t.Helper()
	for {
		select {
		case _, ok := <-s.msgs:
			if !ok {
				return <-s.done
			}
		case <-time.After(timeout):
			t.Fatalf("subscription did not end within %v", timeout)
		}
	}
}
