package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/cdcflow/cdcflow/internal/kinesistest"
	"github.com/cdcflow/cdcflow/internal/source/kinesis"
)

// childEnv, when set to a reader's name, makes the binary (or the test
// binary, through TestMain) run that reader once instead of the benchmark:
// each reader runs in a process of its own, so its CPU time is its own.
const childEnv = "KINESISBENCH_READER"

// The readers.
const (
	readerBare   = "bare"   // a GetRecords loop per shard, aws-sdk-go-v2 only
	readerSource = "source" // internal/source/kinesis: Read and ack
)

// reading is what one reader did, measured inside its process from just
// before its first call to the service until the last record was read.
type reading struct {
	Reader  string  `json:"reader"`
	Records int64   `json:"records"`
	Bytes   int64   `json:"bytes"`
	Calls   int64   `json:"calls"` // GetRecords calls (bare loop only; 0 for the source)
	Seconds float64 `json:"seconds"`
	CPU     float64 `json:"cpu_seconds"` // user+system of the reader's process over the same span
}

// childArgs are a reader process's flags.
type childArgs struct {
	endpoint, stream string
	records, bytes   int64
	cpuProfile       string
}

// childMain runs one reader and prints its reading as JSON on stdout.
func childMain(reader string, args []string, stdout, stderr io.Writer) int {
	var a childArgs
	fs := flag.NewFlagSet("kinesisbench reader", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&a.endpoint, "endpoint", "", "kinesalite URL")
	fs.StringVar(&a.stream, "stream", "", "stream name")
	fs.Int64Var(&a.records, "records", 0, "records in the stream: read until this many arrived")
	fs.Int64Var(&a.bytes, "bytes", 0, "their total size: checked at the end")
	fs.StringVar(&a.cpuProfile, "cpuprofile", "", "write a CPU profile of the read here")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if a.endpoint == "" || a.stream == "" || a.records < 1 {
		fmt.Fprintln(stderr, "kinesisbench reader: -endpoint, -stream and -records are required")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	var read func(context.Context, childArgs) (reading, error)
	switch reader {
	case readerBare:
		read = readBare
	case readerSource:
		read = readSource
	default:
		fmt.Fprintf(stderr, "kinesisbench reader: unknown reader %q (want %s or %s)\n", reader, readerBare, readerSource)
		return 2
	}
	if a.cpuProfile != "" {
		f, err := os.Create(a.cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, "kinesisbench reader:", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "kinesisbench reader:", err)
			return 1
		}
	}
	r, err := read(ctx, a)
	if a.cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	if err == nil && (r.Records != a.records || (a.bytes > 0 && r.Bytes != a.bytes)) {
		err = fmt.Errorf("read %d records of %d bytes, want %d of %d", r.Records, r.Bytes, a.records, a.bytes)
	}
	if err != nil {
		fmt.Fprintf(stderr, "kinesisbench reader %s: %v\n", reader, err)
		return 1
	}
	r.Reader = reader
	if err := json.NewEncoder(stdout).Encode(r); err != nil {
		fmt.Fprintln(stderr, "kinesisbench reader:", err)
		return 1
	}
	return 0
}

// processCPU returns this process's user+system time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// span measures wall and CPU time from its creation to done.
type span struct {
	t0   time.Time
	cpu0 time.Duration
}

func startSpan() span { return span{t0: time.Now(), cpu0: processCPU()} }

func (s span) done(r *reading) {
	r.Seconds = time.Since(s.t0).Seconds()
	r.CPU = (processCPU() - s.cpu0).Seconds()
}

// readBare is the reference: what a program that only wants the records
// does with aws-sdk-go-v2 and no cdcflow code. The client is built as any
// SDK user builds one (default config, default retryer) before timing
// starts; then ListShards, and per shard in parallel GetShardIterator
// TRIM_HORIZON and GetRecords (limit 10,000) back to back until the shard
// is caught up (an empty response) or every record has arrived.
func readBare(ctx context.Context, a childArgs) (reading, error) {
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(kinesistest.Region),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(kinesistest.AccessKeyID, kinesistest.SecretAccessKey, "")))
	if err != nil {
		return reading{}, err
	}
	cl := awskinesis.NewFromConfig(cfg, func(o *awskinesis.Options) { o.BaseEndpoint = aws.String(a.endpoint) })

	sp := startSpan()
	list, err := cl.ListShards(ctx, &awskinesis.ListShardsInput{StreamName: aws.String(a.stream)})
	if err != nil {
		return reading{}, fmt.Errorf("list shards: %w", err)
	}
	var (
		records, bytes, calls atomic.Int64
		wg                    sync.WaitGroup
		errOnce               sync.Once
		firstErr              error
	)
	for _, sh := range list.Shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			it, err := cl.GetShardIterator(ctx, &awskinesis.GetShardIteratorInput{StreamName: aws.String(a.stream),
				ShardId: sh.ShardId, ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
			if err != nil {
				errOnce.Do(func() { firstErr = fmt.Errorf("get shard iterator %s: %w", aws.ToString(sh.ShardId), err) })
				return
			}
			iter := it.ShardIterator
			for iter != nil && records.Load() < a.records {
				out, err := cl.GetRecords(ctx, &awskinesis.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(10000)})
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("get records %s: %w", aws.ToString(sh.ShardId), err) })
					return
				}
				calls.Add(1)
				if len(out.Records) == 0 {
					return // caught up
				}
				var b int64
				for i := range out.Records {
					b += int64(len(out.Records[i].Data))
				}
				bytes.Add(b)
				records.Add(int64(len(out.Records)))
				iter = out.NextShardIterator
			}
		}()
	}
	wg.Wait()
	r := reading{Records: records.Load(), Bytes: bytes.Load(), Calls: calls.Load()}
	sp.done(&r)
	return r, firstErr
}

// readSource reads the stream with the Kinesis source alone: New, then Read
// and ack(nil) at once until every record arrived; no decoding, no sink.
// Timing starts before New (which describes the stream) and ends at the
// last ack; Close is not timed.
func readSource(ctx context.Context, a childArgs) (reading, error) {
	sp := startSpan()
	src, err := kinesis.New(ctx, kinesis.Options{
		Stream: a.stream, Region: kinesistest.Region, Endpoint: a.endpoint,
		AccessKeyID: kinesistest.AccessKeyID, SecretAccessKey: kinesistest.SecretAccessKey,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return reading{}, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = src.Close(cctx)
	}()
	var r reading
	for r.Records < a.records {
		raws, ack, err := src.Read(ctx)
		if err != nil {
			return r, fmt.Errorf("read after %d records: %w", r.Records, err)
		}
		for i := range raws {
			r.Bytes += int64(len(raws[i].Data))
		}
		r.Records += int64(len(raws))
		if err := ack(ctx, nil); err != nil {
			return r, fmt.Errorf("ack: %w", err)
		}
	}
	sp.done(&r)
	if r.Records > a.records {
		return r, errors.New("read more records than the stream holds: some were delivered twice")
	}
	return r, nil
}
