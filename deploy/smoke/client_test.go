//go:build stack

package smoke_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

const replicaHeader = "X-Codecrafter-Replica"

// gqlError is a GraphQL error with its extensions.code.
type gqlError struct {
	Message    string `json:"message"`
	Extensions struct {
		Code string `json:"code"`
	} `json:"extensions"`
}

type gqlResponse struct {
	Data   json.RawMessage `json:"data"`
	Errors []gqlError      `json:"errors"`
}

func (r gqlResponse) err() error {
	if len(r.Errors) > 0 {
		return fmt.Errorf("%s: %s", r.Errors[0].Extensions.Code, r.Errors[0].Message)
	}
	return nil
}

// post sends one operation over HTTP through the balancer and returns the
// replica that answered.
func post(ctx context.Context, base, token, query string, vars map[string]any, out any) (string, error) {
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, err := http.NewRequestWithContext(ctx, "POST", base+"/graphql", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	replica := res.Header.Get(replicaHeader)
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return replica, err
	}
	var r gqlResponse
	if err := json.Unmarshal(b, &r); err != nil {
		return replica, fmt.Errorf("HTTP %d: %.200s", res.StatusCode, b)
	}
	if err := r.err(); err != nil {
		return replica, err
	}
	if out != nil {
		return replica, json.Unmarshal(r.Data, out)
	}
	return replica, nil
}

// wsClient speaks graphql-transport-ws on one socket.
type wsClient struct {
	Replica string // who accepted the upgrade
	conn    *websocket.Conn

	wmu  sync.Mutex // gorilla: one writer at a time
	mu   sync.Mutex
	ops  map[string]chan wsMsg
	next int
	done chan struct{} // closed when the socket is gone
	err  error         // why, once done is closed
}

type wsMsg struct {
	Type    string          `json:"type"`
	ID      string          `json:"id,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// dialWS opens a socket through the balancer, authenticated with token.
func dialWS(ctx context.Context, base, token string) (*wsClient, error) {
	d := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}, HandshakeTimeout: 10 * time.Second}
	conn, res, err := d.DialContext(ctx, "ws"+strings.TrimPrefix(base, "http")+"/graphql", nil)
	if err != nil {
		return nil, err
	}
	c := &wsClient{Replica: res.Header.Get(replicaHeader), conn: conn, ops: map[string]chan wsMsg{}, done: make(chan struct{})}
	init, _ := json.Marshal(map[string]string{"authorization": "Bearer " + token})
	if err := c.send(wsMsg{Type: "connection_init", Payload: init}); err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var ack wsMsg
	if err := conn.ReadJSON(&ack); err != nil || ack.Type != "connection_ack" {
		conn.Close()
		return nil, fmt.Errorf("connection_init: got %q, %v", ack.Type, err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	go c.read()
	return c, nil
}

// dialReplica opens sockets through the balancer until one lands on the
// wanted replica (the balancer has no stickiness and no per-replica route:
// each new connection goes round robin).
func dialReplica(ctx context.Context, base, token, want string) (*wsClient, error) {
	for try := 1; try <= 20; try++ {
		c, err := dialWS(ctx, base, token)
		if err != nil {
			return nil, err
		}
		if c.Replica == want {
			return c, nil
		}
		c.Close()
	}
	return nil, fmt.Errorf("20 sockets through the balancer, none on %s", want)
}

func (c *wsClient) send(m wsMsg) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return c.conn.WriteJSON(m)
}

func (c *wsClient) read() {
	var err error
	for {
		var m wsMsg
		if err = c.conn.ReadJSON(&m); err != nil {
			break
		}
		switch m.Type {
		case "ping":
			_ = c.send(wsMsg{Type: "pong"})
		case "next", "error", "complete":
			c.mu.Lock()
			ch := c.ops[m.ID]
			if m.Type != "next" {
				delete(c.ops, m.ID)
			}
			c.mu.Unlock()
			if ch != nil {
				ch <- m // buffered; a test that stops reading fails on its own timeout
				if m.Type != "next" {
					close(ch)
				}
			}
		}
	}
	c.mu.Lock()
	c.err = err
	for id, ch := range c.ops {
		close(ch)
		delete(c.ops, id)
	}
	c.mu.Unlock()
	close(c.done)
}

// subscribe starts an operation; its messages ("next", then "error" or
// "complete") come on the channel, closed when the operation or the
// socket ends.
func (c *wsClient) subscribe(query string, vars map[string]any) (<-chan wsMsg, error) {
	c.mu.Lock()
	c.next++
	id := fmt.Sprint(c.next)
	ch := make(chan wsMsg, 4096)
	c.ops[id] = ch
	c.mu.Unlock()
	payload, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err := c.send(wsMsg{Type: "subscribe", ID: id, Payload: payload}); err != nil {
		return nil, err
	}
	return ch, nil
}

// do runs a query or mutation over the socket (on this replica).
func (c *wsClient) do(ctx context.Context, query string, vars map[string]any, out any) error {
	ch, err := c.subscribe(query, vars)
	if err != nil {
		return err
	}
	for {
		select {
		case m, ok := <-ch:
			if !ok {
				return errors.New("socket closed before the answer")
			}
			switch m.Type {
			case "next":
				var r gqlResponse
				if err := json.Unmarshal(m.Payload, &r); err != nil {
					return err
				}
				if err := r.err(); err != nil {
					return err
				}
				if out != nil {
					return json.Unmarshal(r.Data, out)
				}
				return nil
			case "error":
				return fmt.Errorf("error: %s", m.Payload)
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (c *wsClient) Close() { c.conn.Close(); <-c.done }

// event decodes one "next" payload's data field into out.
func event(m wsMsg, field string, out any) error {
	switch m.Type {
	case "next":
	case "":
		return errors.New("subscription ended (socket closed)")
	default:
		return fmt.Errorf("%s: %s", m.Type, m.Payload)
	}
	var r gqlResponse
	if err := json.Unmarshal(m.Payload, &r); err != nil {
		return err
	}
	if err := r.err(); err != nil {
		return err
	}
	var data map[string]json.RawMessage
	if err := json.Unmarshal(r.Data, &data); err != nil {
		return err
	}
	return json.Unmarshal(data[field], out)
}
