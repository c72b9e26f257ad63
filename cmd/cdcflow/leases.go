package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/cdcflow/cdcflow/internal/pipeline"
	"github.com/cdcflow/cdcflow/internal/sink/postgres"
	"github.com/cdcflow/cdcflow/internal/source/kinesis"
)

var (
	_ kinesis.Leaser        = leaser{}
	_ pipeline.LeasedSource = (*kinesis.Source)(nil)
)

// leaser adapts the PostgreSQL sink's lease table to the Kinesis source:
// postgres.Lease and kinesis.Lease have the same fields, so each converts
// to the other, and neither package imports the other.
type leaser struct{ t *postgres.LeaseTable }

func (l leaser) AcquireLease(ctx context.Context, stream, shard, owner string, ttl time.Duration) (kinesis.Lease, bool, error) {
	pl, ok, err := l.t.AcquireLease(ctx, stream, shard, owner, ttl)
	return kinesis.Lease(pl), ok, err
}

func (l leaser) RenewLease(ctx context.Context, kl kinesis.Lease, ttl time.Duration) (bool, error) {
	return l.t.RenewLease(ctx, postgres.Lease(kl), ttl)
}

func (l leaser) ReleaseLease(ctx context.Context, kl kinesis.Lease) error {
	return l.t.ReleaseLease(ctx, postgres.Lease(kl))
}

func (l leaser) FinishLease(ctx context.Context, kl kinesis.Lease) error {
	return l.t.FinishLease(ctx, postgres.Lease(kl))
}

func (l leaser) Leases(ctx context.Context, stream string) ([]kinesis.Lease, error) {
	pls, err := l.t.Leases(ctx, stream)
	out := make([]kinesis.Lease, len(pls))
	for i, pl := range pls {
		out[i] = kinesis.Lease(pl)
	}
	return out, err
}

func (l leaser) Heartbeat(ctx context.Context, stream, owner string, ttl time.Duration) error {
	return l.t.Heartbeat(ctx, stream, owner, ttl)
}

func (l leaser) Owners(ctx context.Context, stream string) ([]string, error) {
	return l.t.Owners(ctx, stream)
}

// Close closes the lease table; the Kinesis source calls it after
// releasing its leases.
func (l leaser) Close(ctx context.Context) error { return l.t.Close(ctx) }

// defaultOwner names this process in a lease table: host name and process
// id, unique among live processes.
func defaultOwner() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "cdcflow"
	}
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}
