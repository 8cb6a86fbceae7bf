package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter/server"
)

// The fan-out bench re-executes its own binary as children; under go test
// that is the test binary, which then runs the command instead of tests.
func init() {
	if os.Getenv("CODECRAFTER_BENCH_AS_MAIN") == "1" {
		main()
		os.Exit(0)
	}
}

// TestBenchFanout runs the bench at a tiny size: both the serve child and
// the raw broadcast deliver every message to every socket, once.
func TestBenchFanout(t *testing.T) {
	t.Setenv("CODECRAFTER_BENCH_AS_MAIN", "1") // for the children only
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var log bytes.Buffer
	res, err := runFanout(ctx, exe, fanoutOpts{
		Subscribers: 20, Users: 2, Rates: []float64{5}, Duration: 2 * time.Second,
		Payload: 100, Idle: 100 * time.Millisecond, Targets: "raw,platform",
	}, &log)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	for _, tr := range []*targetResult{res.Raw, res.Platform} {
		if tr == nil || len(tr.Rounds) != 1 {
			t.Fatalf("results: %+v", res)
		}
		r := tr.Rounds[0]
		if r.Sent != 10 || r.SendErrors != 0 || r.Expected != 200 || r.Delivered != 200 || r.Lost != 0 || r.Dups != 0 || r.P99 <= 0 {
			t.Errorf("%s: %+v\n%s", tr.Name, r, log.String())
		}
		if tr.RSSAfter <= 0 || tr.RSSBefore <= 0 {
			t.Errorf("%s: RSS %d, %d", tr.Name, tr.RSSBefore, tr.RSSAfter)
		}
	}
	var out bytes.Buffer
	res.print(&out)
	for _, want := range []string{"raw ", "platform ", "per socket", "platform/raw"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

// The bench lifts the connect rate of its serve child with this flag.
func TestWSConnectsPerMinuteFlag(t *testing.T) {
	parse := func(args ...string) (config, error) {
		var c config
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		c.bind(fs)
		if err := fs.Parse(args); err != nil {
			return c, err
		}
		return c, c.validate("serve")
	}
	if c, err := parse(); err != nil || c.WSConnectsPerMin != server.DefaultWebSocketConnectsPerMinute {
		t.Errorf("default: %d, %v", c.WSConnectsPerMin, err)
	}
	if c, err := parse("-ws-connects-per-minute", "100000"); err != nil || c.WSConnectsPerMin != 100000 {
		t.Errorf("set: %d, %v", c.WSConnectsPerMin, err)
	}
	if _, err := parse("-ws-connects-per-minute", "0"); err == nil || !strings.Contains(err.Error(), "ws-connects-per-minute") {
		t.Errorf("0: %v", err)
	}
}
