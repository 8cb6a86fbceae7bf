package batch_test

import (
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/codecrafter/codecrafter/batch"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Requests that come while a write is in flight go in the next one, in
// order, at most max at a time; keys are independent; drained queues
// leave no goroutine (goleak).
func TestGroupsWhileAWriteIsInFlight(t *testing.T) {
	release, writing := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var batches [][]int
	var keys []string
	done := make(chan int, 100)
	g := batch.New(3, func(key string, b []int) {
		if b[0] == 0 {
			close(writing)
			<-release // the first write is in flight while the rest arrive
		}
		mu.Lock()
		batches, keys = append(batches, append([]int(nil), b...)), append(keys, key)
		mu.Unlock()
		for _, r := range b {
			done <- r
		}
	})
	g.Add("a", 0)
	<-writing
	for i := 1; i <= 7; i++ {
		g.Add("a", i)
	}
	if n := g.Waiting("a"); n != 7 {
		t.Fatalf("%d waiting behind the write in flight, want 7", n)
	}
	g.Add("b", 100) // another key does not wait for a's write
	select {
	case r := <-done:
		if r != 100 {
			t.Fatalf("got %d first, want b's 100", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("b waited for a")
	}
	close(release)
	for range 8 {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("not all committed")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	want := [][]int{{100}, {0}, {1, 2, 3}, {4, 5, 6}, {7}}
	if len(batches) != len(want) {
		t.Fatalf("batches %v, want %v", batches, want)
	}
	for i := range want {
		if len(batches[i]) != len(want[i]) {
			t.Fatalf("batches %v, want %v", batches, want)
		}
		for j := range want[i] {
			if batches[i][j] != want[i][j] {
				t.Fatalf("batches %v, want %v", batches, want)
			}
		}
	}
	if g.Waiting("a") != 0 {
		t.Fatal("requests left")
	}
}

// Many writers at once: every request is committed exactly once.
func TestEveryRequestOnce(t *testing.T) {
	var mu sync.Mutex
	seen := map[int]int{}
	var wg sync.WaitGroup
	g := batch.New(8, func(_ string, b []int) {
		mu.Lock()
		for _, r := range b {
			seen[r]++
		}
		mu.Unlock()
		wg.Add(-len(b))
	})
	wg.Add(1000)
	for w := range 10 {
		go func() {
			for i := range 100 {
				g.Add("k", w*100+i)
			}
		}()
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	for i := range 1000 {
		if seen[i] != 1 {
			t.Fatalf("request %d committed %d times", i, seen[i])
		}
	}
}
