package rabbitmq_test

import (
	"context"
	"testing"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/inmem"
	"github.com/codecrafter/codecrafter/internal/testenv"
)

// BenchmarkEnqueue compares Enqueue on the in-process queue and on
// RabbitMQ (persistent, confirmed), one caller at a time and with many.
func BenchmarkEnqueue(b *testing.B) {
	url := testenv.AMQPURL(b)
	opts := testOptions(b, 5)
	testenv.DeleteQueues(b, url, opts.Queue)
	for _, q := range []struct {
		name  string
		queue codecrafter.Queue
	}{
		{"inmem", inmem.NewQueue(inmem.QueueOptions{})},
		{"rabbitmq", open(b, url, opts)},
	} {
		job := codecrafter.Job{ExecutionID: codecrafter.NewID()}
		b.Run(q.name+"/serial", func(b *testing.B) {
			for b.Loop() {
				if err := q.queue.Enqueue(context.Background(), job); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(q.name+"/parallel", func(b *testing.B) {
			b.SetParallelism(16) // callers per core
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := q.queue.Enqueue(context.Background(), job); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
