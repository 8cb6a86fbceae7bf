package sandbox

import (
	"testing"
	"time"
)

// TestDemand checks the pool sizing rules on a fake clock.
func TestDemand(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }

	t.Run("unused languages stay at the floor", func(t *testing.T) {
		if n := newDemand(0, 16, time.Minute).target(t0); n != 0 {
			t.Errorf("unused, floor 0: target %d", n)
		}
		if n := newDemand(2, 16, time.Minute).target(t0); n != 2 {
			t.Errorf("unused, floor 2: target %d", n)
		}
	})

	t.Run("one run now and then keeps one warm, then none", func(t *testing.T) {
		d := newDemand(0, 16, 10*time.Minute)
		for i := range 5 {
			d.arrive(at(time.Duration(i) * 30 * time.Second))
			if n := d.target(at(time.Duration(i)*30*time.Second + time.Second)); n != 1 {
				t.Fatalf("run every 30 s, after run %d: target %d, want 1", i, n)
			}
		}
		last := 4 * 30 * time.Second
		if n := d.target(at(last + 10*time.Minute - time.Second)); n != 1 {
			t.Errorf("just before the idle time: target %d, want 1", n)
		}
		if n := d.target(at(last + 10*time.Minute)); n != 0 {
			t.Errorf("idle for 10 min: target %d, want 0 (shrunk)", n)
		}
	})

	t.Run("back-to-back runs grow it to what arrives while one box starts", func(t *testing.T) {
		d := newDemand(0, 16, 10*time.Minute)
		d.started(300 * time.Millisecond)
		var now time.Time
		for i := range 100 { // one every 100 ms for 10 s
			now = at(time.Duration(i) * 100 * time.Millisecond)
			d.arrive(now)
		}
		// ~10 arrive a second: the last second's burst, above the
		// steady need of 2 x rate x start time.
		if n := d.target(now); n < 4 || n > 11 {
			t.Errorf("10 runs/s: target %d, want 4..11", n)
		}
	})

	t.Run("a burst is remembered for minutes, then forgotten", func(t *testing.T) {
		d := newDemand(0, 64, 10*time.Minute)
		for range 30 {
			d.arrive(t0)
		}
		if n := d.target(at(time.Second)); n != 30 {
			t.Errorf("after a burst of 30: target %d, want 30", n)
		}
		d.arrive(at(2 * time.Minute)) // still in use, so not idle
		if n := d.target(at(2 * time.Minute)); n < 14 || n > 16 {
			t.Errorf("one half-life later: target %d, want ~15", n)
		}
		d.arrive(at(9 * time.Minute))
		if n := d.target(at(9 * time.Minute)); n != 1 {
			t.Errorf("long after the burst: target %d, want 1", n)
		}
	})

	t.Run("bounds", func(t *testing.T) {
		d := newDemand(1, 8, time.Minute)
		for range 100 {
			d.arrive(t0)
		}
		if n := d.target(t0); n != 8 {
			t.Errorf("burst of 100, max 8: target %d", n)
		}
		if n := d.target(at(time.Hour)); n != 1 {
			t.Errorf("idle, floor 1: target %d", n)
		}
	})

	t.Run("slower starts need more ahead", func(t *testing.T) {
		fast, slow := newDemand(0, 64, time.Minute), newDemand(0, 64, time.Minute)
		for range 20 {
			fast.started(100 * time.Millisecond)
			slow.started(3 * time.Second)
		}
		var now time.Time
		for i := range 300 { // 5 a second for a minute
			now = at(time.Duration(i) * 200 * time.Millisecond)
			fast.arrive(now)
			slow.arrive(now)
		}
		if f, s := fast.target(now), slow.target(now); s <= f || s < 25 {
			t.Errorf("5 runs/s: target %d with 100 ms starts, %d with 3 s starts; want the slow one larger, >= 25", f, s)
		}
	})
}

// TestReserveBox checks the memory budget bounds the pools' boxes.
func TestReserveBox(t *testing.T) {
	d := &Docker{cfg: Config{PoolMemoryMB: 3*poolBoxMB + 1}}
	for i := range 3 {
		if !d.reserveBox() {
			t.Fatalf("box %d refused within the budget", i+1)
		}
	}
	if d.reserveBox() {
		t.Fatal("a fourth box passed a budget of three")
	}
	d.poolBoxes.Add(-1)
	if !d.reserveBox() {
		t.Fatal("a freed place was not reused")
	}
}
