package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// broker is a kfake Kafka broker in this process, on 127.0.0.1, with a
// producer client.
type broker struct {
	cluster *kfake.Cluster
	addr    string
	cl      *kgo.Client
	adm     *kadm.Client
}

func startBroker(parts int32, topics ...string) (*broker, error) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(parts, topics...))
	if err != nil {
		return nil, err
	}
	b := &broker{cluster: c, addr: c.ListenAddrs()[0]}
	b.cl, err = kgo.NewClient(kgo.SeedBrokers(b.addr),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0),
		kgo.MaxBufferedRecords(100_000))
	if err != nil {
		c.Close()
		return nil, err
	}
	b.adm = kadm.NewClient(b.cl)
	return b, nil
}

func (b *broker) close() {
	b.cl.Close()
	b.cluster.Close()
}

// produceAll produces the records in order and returns the last offset of
// each partition.
func (b *broker) produceAll(ctx context.Context, topic string, recs []record) (map[int32]int64, error) {
	var (
		mu       sync.Mutex
		firstErr error
		last     = map[int32]int64{}
	)
	for _, r := range recs {
		b.cl.Produce(ctx, &kgo.Record{Topic: topic, Partition: r.part, Value: r.data}, func(r *kgo.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			if err == nil && r.Offset > last[r.Partition] {
				last[r.Partition] = r.Offset
			}
		})
	}
	if err := b.cl.Flush(ctx); err != nil {
		return nil, err
	}
	mu.Lock()
	defer mu.Unlock()
	if firstErr != nil {
		return nil, fmt.Errorf("produce to %s: %w", topic, firstErr)
	}
	return last, nil
}

// waitGroupStable waits until the consumer group is Stable with a member
// that has partitions assigned.
func (b *broker) waitGroupStable(ctx context.Context, c *child, group string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		gs, err := b.adm.DescribeGroups(ctx, group)
		if err == nil {
			if g, ok := gs[group]; ok && g.Err == nil && g.State == "Stable" {
				for _, m := range g.Members {
					if a, ok := m.Assigned.AsConsumer(); ok && len(a.Topics) > 0 {
						return nil
					}
				}
			}
		}
		if c.exited() {
			return fmt.Errorf("cdcflow exited while joining the group; see %s", c.logPath)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("group %s not stable after %s; see %s", group, timeout, c.logPath)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// runConfig is the cdcflow run configuration of a Kafka -> PostgreSQL
// pipeline. The sink URL comes from $CDCFLOW_BENCH_PG_URL so that the
// password is not written to disk.
type runConfig struct {
	brokers, topic, group, metrics string
	batch, maxInFlight             int
	batchWait                      time.Duration
}

const pgURLEnv = "CDCFLOW_BENCH_PG_URL"

func (rc runConfig) write(path string) error {
	var b strings.Builder
	inFlight := ""
	if rc.maxInFlight > 0 {
		inFlight = fmt.Sprintf(", max_in_flight: %d", rc.maxInFlight)
	}
	fmt.Fprintf(&b, "source:\n  kafka: { brokers: [%q], topics: [%q], group: %q, start: earliest%s }\n", rc.brokers, rc.topic, rc.group, inFlight)
	b.WriteString("decode: { format: dsql }\ntables:\n")
	ks := keys().Tables
	names := make([]string, 0, len(ks))
	for t := range ks {
		names = append(names, t)
	}
	sort.Strings(names)
	for _, t := range names {
		fmt.Fprintf(&b, "  %s: { key: [%s] }\n", t, strings.Join(ks[t], ", "))
	}
	fmt.Fprintf(&b, "sink:\n  postgres: { url: \"${%s}\", schema: public, dead_letter_table: true }\n", pgURLEnv)
	fmt.Fprintf(&b, "pipeline: { batch_max_events: %d, batch_max_wait: %s }\n", rc.batch, rc.batchWait)
	fmt.Fprintf(&b, "metrics: { listen: %q }\nlog: { level: info }\n", rc.metrics)
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// freeAddr returns a free 127.0.0.1:port for the metrics endpoint.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
