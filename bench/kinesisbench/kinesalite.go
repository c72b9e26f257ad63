package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/cdcflow/cdcflow/internal/kinesistest"
)

// server is a kinesalite node process run by the benchmark.
type server struct {
	endpoint string
	cmd      *exec.Cmd
	stdin    io.Closer
	exited   chan struct{}
	stderr   *strings.Builder
}

// kinesaliteScript starts kinesalite on 127.0.0.1 and a free port, as
// internal/kinesistest does (that package needs a *testing.T): the CLI binds
// every interface and cannot pick a free port. Stream changes take 5 ms.
const kinesaliteScript = `
process.on('uncaughtException', (err) => {
  if (err && (err.code === 'ECONNRESET' || err.message === 'aborted')) return;
  console.error(err);
  process.exit(1);
});
const kinesalite = require(process.argv[1]);
const server = kinesalite({createStreamMs: 5, deleteStreamMs: 5, updateStreamMs: 5, shardLimit: 100});
server.listen(0, '127.0.0.1', () => console.log('KINESALITE_PORT ' + server.address().port));
process.stdin.on('end', () => process.exit(0)); // the benchmark went away
process.stdin.resume();
`

// startKinesalite runs kinesalite (installed by scripts/test.sh, found like
// internal/kinesistest finds it) and waits until it listens.
func startKinesalite() (*server, error) {
	dir, err := kinesistest.Dir()
	if err != nil {
		return nil, err
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, fmt.Errorf("node not found (scripts/test.sh installs it with kinesalite): %w", err)
	}
	cmd := exec.Command(node, "-e", kinesaliteScript, dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, stdin: stdin, exited: make(chan struct{}), stderr: &strings.Builder{}}
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start kinesalite: %w", err)
	}
	go func() { _ = cmd.Wait(); close(s.exited) }()
	port := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var p int
			if _, err := fmt.Sscanf(sc.Text(), "KINESALITE_PORT %d", &p); err == nil {
				port <- p
			}
		}
	}()
	select {
	case p := <-port:
		s.endpoint = fmt.Sprintf("http://127.0.0.1:%d", p)
		return s, nil
	case <-s.exited:
		return nil, fmt.Errorf("kinesalite exited before listening: %s", s.stderr.String())
	case <-time.After(60 * time.Second):
		s.stop()
		return nil, errors.New("kinesalite did not listen within 60s")
	}
}

// stop kills the server.
func (s *server) stop() {
	_ = s.stdin.Close()
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// cpu returns the CPU time (user+system) kinesalite has used so far.
func (s *server) cpu() (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(s.cmd.Process.Pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("kinesalite cpu: %w", err)
	}
	return parseStatCPU(string(b))
}

// parseStatCPU returns utime+stime (fields 14 and 15 of proc(5), in
// USER_HZ ticks of 10 ms) of a /proc/<pid>/stat text.
func parseStatCPU(s string) (time.Duration, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return 0, fmt.Errorf("parse /proc stat %.40q: no command name", s)
	}
	f := strings.Fields(s[i+2:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("parse /proc stat: %d fields after the command name, want at least 13", len(f))
	}
	var ticks int64
	for _, field := range []int{14, 15} {
		v, err := strconv.ParseInt(f[field-3], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse /proc stat field %d: %w", field, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / 100, nil
}

// client returns a Kinesis client of the server with its dummy credentials.
func client(endpoint string) *kinesis.Client {
	return kinesis.New(kinesis.Options{
		Region:       kinesistest.Region,
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider(kinesistest.AccessKeyID, kinesistest.SecretAccessKey, ""),
	})
}

// createStream creates the stream and waits until it is ACTIVE.
func createStream(ctx context.Context, cl *kinesis.Client, name string, shards int) error {
	if _, err := cl.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(name), ShardCount: aws.Int32(int32(shards))}); err != nil {
		return fmt.Errorf("create stream %s: %w", name, err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := cl.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(name)})
		if err == nil && out.StreamDescriptionSummary.StreamStatus == types.StreamStatusActive {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.Join(fmt.Errorf("stream %s not active after a minute", name), err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// putAll puts the records with PutRecords, 500 a call (the API maximum),
// partition key = the record's index (spread evenly over the shards), and
// returns how many went to each shard.
func putAll(ctx context.Context, cl *kinesis.Client, stream string, data [][]byte) (map[string]int, error) {
	perShard := map[string]int{}
	for lo := 0; lo < len(data); lo += 500 {
		hi := min(lo+500, len(data))
		entries := make([]types.PutRecordsRequestEntry, 0, hi-lo)
		for i := lo; i < hi; i++ {
			entries = append(entries, types.PutRecordsRequestEntry{Data: data[i], PartitionKey: aws.String(strconv.Itoa(i))})
		}
		out, err := cl.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String(stream), Records: entries})
		if err != nil {
			return nil, fmt.Errorf("put records %d..%d: %w", lo, hi, err)
		}
		if n := aws.ToInt32(out.FailedRecordCount); n != 0 {
			return nil, fmt.Errorf("put records %d..%d: %d failed", lo, hi, n)
		}
		for _, r := range out.Records {
			perShard[aws.ToString(r.ShardId)]++
		}
	}
	return perShard, nil
}
