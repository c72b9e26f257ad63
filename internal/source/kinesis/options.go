package kinesis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/source"
)

// Start policies for shards without a stored checkpoint.
const (
	StartTrimHorizon = "trim_horizon" // the oldest retained record (the default)
	StartLatest      = "latest"       // only records put after the source starts
	StartAtTimestamp = "at_timestamp" // records that arrived at or after Options.Timestamp
)

// Defaults used when an Options field is zero.
const (
	DefaultMaxInFlight      = 4
	DefaultMaxBatchRecords  = 10000 // also the GetRecords limit per call (the API maximum)
	DefaultPollInterval     = time.Second
	DefaultDiscoverInterval = 30 * time.Second
	DefaultBackoffBase      = 100 * time.Millisecond
	DefaultBackoffMax       = 10 * time.Second
	DefaultCallTimeout      = 30 * time.Second
)

// Options configures a Source. Stream is required; zero values take the
// Default values.
type Options struct {
	Stream   string // stream name, or its ARN (positions then use the name part)
	Region   string // "" means the AWS default chain (AWS_REGION, profile)
	Endpoint string // http(s) URL overriding the service endpoint (kinesalite, LocalStack)

	// Start is where a shard begins when the sink has no checkpoint for it:
	// StartTrimHorizon (the default when empty), StartLatest or
	// StartAtTimestamp (with Timestamp). It applies to the shards that exist
	// when the source starts; shards created later (by a reshard) are always
	// read from their first record.
	Start     string
	Timestamp time.Time // for StartAtTimestamp

	// Static credentials; when AccessKeyID is empty the AWS default chain is
	// used (environment, profile, web identity, instance role).
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string

	// Checkpoints returns the positions the sink stored for a stream; the
	// sink is the source of truth for where shards start. It is called when
	// the source starts and whenever it finds new shards. When nil, the
	// checkpoints given to Resume are used.
	Checkpoints func(ctx context.Context, stream string) ([]change.Checkpoint, error)

	MaxInFlight      int           // batches read but not acknowledged; Read blocks at this many
	MaxBatchRecords  int           // records per Read (whole GetRecords responses are never split)
	PollInterval     time.Duration // wait before polling a shard again after an empty response
	DiscoverInterval time.Duration // how often ListShards looks for new shards
	BackoffBase      time.Duration // first retry delay after throttling or a transient error
	BackoffMax       time.Duration // cap of the exponential retry delay
	CallTimeout      time.Duration // deadline of one API call

	// Leases, when set, shares the stream's shards among the sources (in
	// one or several daemons) with the same lease table: each reads only
	// the shards whose lease it holds. Owner names this source in the table
	// and must be unique among them (host name and process id, say). nil
	// means this source reads every shard. Close releases the leases held
	// and then closes Leases when it has a Close(context.Context) error
	// method.
	Leases   Leaser
	Owner    string
	LeaseTTL time.Duration // a lease not renewed for this long may be taken by another owner

	Logger *slog.Logger // nil means slog.Default()
}

func (o *Options) setDefaults() error {
	switch {
	case o.Stream == "":
		return errors.New("kinesis options: stream: must be set")
	case o.MaxInFlight < 0:
		return fmt.Errorf("kinesis options: max_in_flight: must not be negative, got %d", o.MaxInFlight)
	case o.MaxBatchRecords < 0:
		return fmt.Errorf("kinesis options: max_batch_records: must not be negative, got %d", o.MaxBatchRecords)
	case o.PollInterval < 0, o.DiscoverInterval < 0, o.BackoffBase < 0, o.BackoffMax < 0, o.CallTimeout < 0:
		return errors.New("kinesis options: intervals and timeouts must not be negative")
	case o.Leases != nil && o.Owner == "":
		return errors.New("kinesis options: owner: must be set with leases")
	case o.LeaseTTL < 0:
		return fmt.Errorf("kinesis options: lease_ttl: must not be negative, got %s", o.LeaseTTL)
	case o.AccessKeyID != "" && o.SecretAccessKey == "":
		return errors.New("kinesis options: secret_access_key: must be set with access_key_id")
	}
	if strings.HasPrefix(o.Stream, "arn:") && streamName(o.Stream) == "" {
		return fmt.Errorf("kinesis options: stream: %q is not a Kinesis stream ARN (arn:...:stream/NAME)", o.Stream)
	}
	if o.Endpoint != "" {
		u, err := url.Parse(o.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("kinesis options: endpoint: %q is not an http:// or https:// URL", o.Endpoint)
		}
	}
	switch o.Start {
	case "":
		o.Start = StartTrimHorizon
	case StartTrimHorizon, StartLatest:
		if !o.Timestamp.IsZero() {
			return fmt.Errorf("kinesis options: timestamp: only valid with start %s", StartAtTimestamp)
		}
	case StartAtTimestamp:
		if o.Timestamp.IsZero() {
			return fmt.Errorf("kinesis options: timestamp: must be set when start is %s", StartAtTimestamp)
		}
	default:
		return fmt.Errorf("kinesis options: start: %q is not %s, %s or %s", o.Start, StartTrimHorizon, StartLatest, StartAtTimestamp)
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.MaxBatchRecords == 0 {
		o.MaxBatchRecords = DefaultMaxBatchRecords
	}
	if o.PollInterval == 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.DiscoverInterval == 0 {
		o.DiscoverInterval = DefaultDiscoverInterval
	}
	if o.BackoffBase == 0 {
		o.BackoffBase = DefaultBackoffBase
	}
	if o.BackoffMax == 0 {
		o.BackoffMax = DefaultBackoffMax
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = DefaultLeaseTTL
	}
	if o.CallTimeout == 0 {
		o.CallTimeout = DefaultCallTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

// streamName returns the stream name of a name or a stream ARN
// (arn:aws:kinesis:REGION:ACCOUNT:stream/NAME); "" for a malformed ARN.
func streamName(s string) string {
	if !strings.HasPrefix(s, "arn:") {
		return s
	}
	_, name, ok := strings.Cut(s, ":stream/")
	if !ok || name == "" || strings.Contains(name, "/") {
		return ""
	}
	return name
}

// newClient builds the Kinesis client. The SDK's own retries are off: every
// call is retried by the source, with its backoff, so throttling of one
// shard never blocks another and never exhausts a shared retry quota.
func (o *Options) newClient(ctx context.Context) (*kinesis.Client, error) {
	var lo []func(*config.LoadOptions) error
	if o.Region != "" {
		lo = append(lo, config.WithRegion(o.Region))
	}
	if o.AccessKeyID != "" {
		lo = append(lo, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(o.AccessKeyID, o.SecretAccessKey, o.SessionToken)))
	}
	cfg, err := config.LoadDefaultConfig(ctx, lo...)
	if err != nil {
		return nil, fmt.Errorf("load aws config: %w", err)
	}
	if cfg.Region == "" {
		return nil, errors.New("kinesis options: region: not set and not found in the AWS environment (AWS_REGION or profile)")
	}
	return kinesis.NewFromConfig(cfg, func(ko *kinesis.Options) {
		if o.Endpoint != "" {
			ko.BaseEndpoint = aws.String(o.Endpoint)
		}
		ko.Retryer = aws.NopRetryer{}
	}), nil
}

// Format prints o with the secret key and session token redacted, whatever
// the verb, so logging the options never leaks them.
func (o Options) Format(f fmt.State, verb rune) {
	type plain Options
	p := plain(o)
	if p.SecretAccessKey != "" {
		p.SecretAccessKey = "***"
	}
	if p.SessionToken != "" {
		p.SessionToken = "***"
	}
	fmt.Fprintf(f, fmt.FormatString(f, verb), p)
}

// MaxInFlight implements source.Bounded: Read blocks while this many
// batches are unacknowledged.
func (s *Source) MaxInFlight() int { return s.opts.MaxInFlight }

var _ source.Bounded = (*Source)(nil)
