package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/config"
	"github.com/cdcflow/cdcflow/internal/metrics"
	"github.com/cdcflow/cdcflow/internal/pipeline"
	"github.com/cdcflow/cdcflow/internal/sink"
	"github.com/cdcflow/cdcflow/internal/sink/postgres"
	"github.com/cdcflow/cdcflow/internal/source"
	"github.com/cdcflow/cdcflow/internal/source/kafka"
	"github.com/cdcflow/cdcflow/internal/source/kinesis"
)

// kafkaOpener builds the Kafka source once the sink is open, so partition
// start offsets come from the sink's stored checkpoints.
func kafkaOpener(k *config.KafkaSource, log *slog.Logger) func(context.Context, sink.Sink) (source.Source, error) {
	return func(ctx context.Context, snk sink.Sink) (source.Source, error) {
		opts := kafka.Options{
			Brokers: k.Brokers, Topics: k.Topics, TopicRegex: k.TopicRegex, Group: k.Group,
			Start: k.Start, MaxInFlight: k.MaxInFlight, Logger: log,
		}
		if ps, ok := snk.(sink.PositionStore); ok {
			opts.Checkpoints = func(ctx context.Context, topic string) ([]change.Checkpoint, error) {
				return ps.Checkpoints(ctx, topic)
			}
		}
		if k.TLS.Enabled {
			tc, err := kafka.TLSConfig(k.TLS.CAFile, k.TLS.CertFile, k.TLS.KeyFile, k.TLS.InsecureSkipVerify)
			if err != nil {
				return nil, usageError{fmt.Errorf("source.kafka.tls: %w", err)}
			}
			opts.TLS = tc
		}
		if k.SASL != nil {
			opts.SASL = kafka.SASL{Mechanism: k.SASL.Mechanism, Username: k.SASL.Username,
				Password: k.SASL.Password.Value(), SessionToken: k.SASL.SessionToken.Value()}
		}
		src, err := kafka.New(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("source.kafka: %w", err)
		}
		return src, nil
	}
}

// health tracks whether the sink accepts batches, for /readyz: the daemon
// is ready while no apply has been failing for longer than a grace period.
type health struct {
	*metrics.Metrics
	failingSince atomic.Int64 // unix ns of the first failed attempt since the last success; 0 when fine
}

func (h *health) Retry() {
	h.failingSince.CompareAndSwap(0, time.Now().UnixNano())
	h.Metrics.Retry()
}

func (h *health) BatchApplied(b *change.Batch, res change.ApplyResult, took time.Duration, now time.Time) {
	h.failingSince.Store(0)
	h.Metrics.BatchApplied(b, res, took, now)
}

func (h *health) ready() error {
	if since := h.failingSince.Load(); since != 0 && time.Since(time.Unix(0, since)) > 10*time.Second {
		return fmt.Errorf("sink failing since %s", time.Unix(0, since).UTC().Format(time.RFC3339))
	}
	return nil
}

// kinesisOpener builds the Kinesis source once the sink is open, so shards
// resume from the sink's stored sequence numbers. With the PostgreSQL sink
// the daemons reading the stream into one schema split its shards through
// the sink's lease table (the source closes it); with DuckDB (one writer)
// this process reads every shard.
func kinesisOpener(k *config.KinesisSource, log *slog.Logger) func(context.Context, sink.Sink) (source.Source, error) {
	return func(ctx context.Context, snk sink.Sink) (source.Source, error) {
		opts := kinesis.Options{Stream: k.Stream, Region: k.Region, Endpoint: k.Endpoint, Start: k.Start,
			Timestamp: k.StartTime(), AccessKeyID: k.AccessKeyID, SecretAccessKey: k.SecretAccessKey.Value(),
			SessionToken: k.SessionToken.Value(), Logger: log}
		if ps, ok := snk.(sink.PositionStore); ok {
			opts.Checkpoints = ps.Checkpoints
		}
		var lt *postgres.LeaseTable
		if pg, ok := snk.(*postgres.Sink); ok {
			var err error
			if lt, err = pg.LeaseTable(ctx); err != nil {
				return nil, fmt.Errorf("source.kinesis: shard leases: %w", err)
			}
			opts.Leases, opts.Owner, opts.LeaseTTL = leaser{lt}, k.Owner, k.LeaseTTL.Std()
			if opts.Owner == "" {
				opts.Owner = defaultOwner()
			}
			if opts.LeaseTTL == 0 {
				opts.LeaseTTL = config.DefaultLeaseTTL
			}
			// A shard just taken starts where its previous owner stopped,
			// read without waiting for an Apply in progress.
			opts.Checkpoints = lt.Checkpoints
			log.Info("sharing kinesis shards through the sink's lease table", "owner", opts.Owner, "lease_ttl", opts.LeaseTTL)
		}
		src, err := kinesis.New(ctx, opts)
		if err != nil {
			if lt != nil {
				lt.Close(context.WithoutCancel(ctx))
			}
			return nil, fmt.Errorf("source.kinesis: %w", err)
		}
		return src, nil
	}
}

// postgresOpener opens the PostgreSQL sink the config describes.
func postgresOpener(cfg *config.Config, log *slog.Logger) func(context.Context) (sink.Sink, error) {
	p := cfg.Sink.Postgres
	tables := map[string]postgres.TableOptions{}
	for name, t := range mergedTables(cfg) {
		tables[name] = postgres.TableOptions{SoftDelete: t.SoftDelete, Columns: t.Columns}
	}
	return func(ctx context.Context) (sink.Sink, error) {
		s, err := postgres.Open(ctx, postgres.Options{URL: p.URL.Value(), Schema: p.Schema, TableNaming: p.TableNaming,
			SoftDelete: p.SoftDelete, Tables: tables, DeadLetterTable: p.DeadLetterTable, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("sink.postgres: %w", err)
		}
		return s, nil
	}
}

// flagSink opens the sink a --sink URL names; nil means DuckDB.
func flagSink(su sinkURL, logOnly bool) func(context.Context) (sink.Sink, error) {
	if su.kind != "postgres" {
		return nil
	}
	return func(ctx context.Context) (sink.Sink, error) {
		s, err := postgres.Open(ctx, postgres.Options{URL: su.url, DeadLetterTable: true, LogOnly: logOnly})
		if err != nil {
			return nil, fmt.Errorf("--sink postgres: %w", err)
		}
		return s, nil
	}
}

// serveMetrics starts the /metrics, /healthz and /readyz endpoint and hooks
// the pipeline's observer to it.
func serveMetrics(ctx context.Context, j job, cfg *pipeline.Config, src source.Source) (func(), error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	h := &health{Metrics: metrics.New(reg)}
	if l, ok := src.(interface {
		Lag() map[string]map[int32]int64
	}); ok {
		h.SetLagFunc(l.Lag)
	}
	if b, ok := src.(interface {
		Stream() string
		MillisBehind() map[string]int64
	}); ok {
		h.SetBehindFunc(func() map[string]map[string]int64 {
			return map[string]map[string]int64{b.Stream(): b.MillisBehind()}
		})
	}
	cfg.Metrics = h
	srv, err := metrics.Listen(j.metricsListen, reg, h.ready)
	if err != nil {
		return nil, fmt.Errorf("metrics.listen: %w", err)
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(sctx); err != nil {
			j.logger.Error("metrics endpoint stopped", "error", err)
		}
	}()
	j.logger.Info("serving metrics", "addr", srv.Addr().String())
	return func() { cancel(); <-done }, nil
}
