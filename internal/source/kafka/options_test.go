package kafka

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/cdcflow/cdcflow/internal/change"
)

func TestOptionsValidation(t *testing.T) {
	good := func() Options { return Options{Brokers: []string{"localhost:9092"}, Topics: []string{"t"}, Group: "g"} }
	tests := []struct {
		name   string
		modify func(*Options)
		want   string
	}{
		{"no brokers", func(o *Options) { o.Brokers = nil }, "brokers: at least one broker"},
		{"empty broker", func(o *Options) { o.Brokers = []string{" "} }, "brokers[0]: empty"},
		{"no topics", func(o *Options) { o.Topics = nil }, "exactly one of topics, topic_regex must be set"},
		{"both topics and regex", func(o *Options) { o.TopicRegex = "^a" }, "(found both)"},
		{"bad regex", func(o *Options) { o.Topics, o.TopicRegex = nil, "(" }, "topic_regex:"},
		{"no group", func(o *Options) { o.Group = "" }, "group: must be set"},
		{"bad start", func(o *Options) { o.Start = "oldest" }, `start: "oldest" is not earliest or latest`},
		{"negative in flight", func(o *Options) { o.MaxInFlight = -1 }, "max_in_flight: must not be negative"},
		{"negative batch", func(o *Options) { o.MaxBatchRecords = -1 }, "max_batch_records: must not be negative"},
		{"negative revoke wait", func(o *Options) { o.RevokeWait = -time.Second }, "revoke_wait: must not be negative"},
		{"unknown mechanism", func(o *Options) { o.SASL = SASL{Mechanism: "gssapi", Username: "u", Password: "p"} }, `unknown mechanism "gssapi"`},
		{"scram without password", func(o *Options) { o.SASL = SASL{Mechanism: MechanismSCRAMSHA512, Username: "u"} }, "needs username and password"},
		{"token outside msk", func(o *Options) {
			o.SASL = SASL{Mechanism: MechanismPlain, Username: "u", Password: "p", SessionToken: "x"}
		}, "session token only applies"},
		{"msk half keys", func(o *Options) { o.SASL = SASL{Mechanism: MechanismMSKIAM, Username: "AKID"} }, "together, or neither"},
		{"credentials without mechanism", func(o *Options) { o.SASL = SASL{Password: "p"} }, "mechanism is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := good()
			tt.modify(&o)
			s, err := New(context.Background(), o)
			if err == nil {
				_ = s.Close(context.Background())
				t.Fatalf("New accepted %s", tt.name)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
	o := good()
	if err := o.setDefaults(); err != nil {
		t.Fatal(err)
	}
	if o.Start != StartEarliest || o.MaxInFlight != DefaultMaxInFlight || o.MaxBatchRecords != DefaultMaxBatchRecords || o.RevokeWait != DefaultRevokeWait {
		t.Fatalf("defaults not applied: %+v", o)
	}
}

func TestStartFor(t *testing.T) {
	pos := func(off string) change.Position { return change.Position{Source: "t", Partition: "0", Offset: off} }
	none := kgo.NewOffset().AtStart() // what the client passes when the group has no commit
	tests := []struct {
		name    string
		cp      *change.Checkpoint
		fetched kgo.Offset
		policy  string
		at      int64
		origin  string
		err     string
	}{
		{"after applied", &change.Checkpoint{Applied: pos("41")}, none, StartEarliest, 42, originCheckpoint, ""},
		{"checkpoint beats group commit", &change.Checkpoint{Applied: pos("41")}, kgo.NewOffset().At(100), StartEarliest, 42, originCheckpoint, ""},
		{"held resumes", &change.Checkpoint{Applied: pos("41"), Held: true, Resume: pos("7")}, none, StartEarliest, 7, originHeld, ""},
		{"partial envelope re-read", &change.Checkpoint{Applied: change.Position{Offset: "41", Index: 2, Indexed: true}}, none, StartEarliest, 41, originPartial, ""},
		{"group commit", nil, kgo.NewOffset().At(13), StartLatest, 13, originGroup, ""},
		{"earliest", nil, none, StartEarliest, -1, StartEarliest, ""},
		{"latest", nil, none, StartLatest, -1, StartLatest, ""},
		{"bad applied", &change.Checkpoint{Source: "t", Partition: "0", Applied: pos("x1")}, none, StartEarliest, 0, "", `checkpoint t[0]: applied offset: "x1" is not a Kafka offset`},
		{"negative resume", &change.Checkpoint{Source: "t", Partition: "0", Held: true, Resume: pos("-3")}, none, StartEarliest, 0, "", "resume offset"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := startFor(tt.cp, tt.fetched, tt.policy)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if st.at != tt.at || st.origin != tt.origin {
				t.Fatalf("start %d (%s), want %d (%s)", st.at, st.origin, tt.at, tt.origin)
			}
			if tt.at >= 0 && st.offset.EpochOffset().Offset != tt.at {
				t.Fatalf("client offset %v, want %d", st.offset, tt.at)
			}
		})
	}
}

const (
	secretPassword = "pw-Zq81-never-shown"
	secretToken    = "tok-Yx42-never-shown"
)

// syncBuffer is a bytes.Buffer safe for the client's logging goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestSecretsNotPrinted(t *testing.T) {
	o := Options{Brokers: []string{"b:9092"}, Topics: []string{"t"}, Group: "g",
		SASL: SASL{Mechanism: MechanismMSKIAM, Username: "AKIDEXAMPLE", Password: secretPassword, SessionToken: secretToken}}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("config", "sasl", o.SASL)
	for _, out := range []string{fmt.Sprint(o), fmt.Sprintf("%+v", o), fmt.Sprintf("%#v", o), fmt.Sprintf("%v", o.SASL), logs.String()} {
		if strings.Contains(out, secretPassword) || strings.Contains(out, secretToken) {
			t.Fatalf("secret printed: %s", out)
		}
		if !strings.Contains(out, "AKIDEXAMPLE") {
			t.Fatalf("username missing from %s", out)
		}
	}
}

// TestSASL authenticates against a broker that requires SASL, with the
// right and a wrong password; no secret reaches the error or the logs.
func TestSASL(t *testing.T) {
	const topic = "secure"
	tests := []struct {
		mechanism string
		kfake     string
	}{
		{MechanismPlain, "PLAIN"},
		{MechanismSCRAMSHA256, "SCRAM-SHA-256"},
		{MechanismSCRAMSHA512, "SCRAM-SHA-512"},
	}
	for _, tt := range tests {
		t.Run(tt.mechanism, func(t *testing.T) {
			admin := scram.Auth{User: "admin", Pass: "admin-pw"}.AsSha256Mechanism()
			k := newCluster(t, []kgo.Opt{kgo.SASL(admin)}, kfake.EnableSASL(), kfake.SeedTopics(1, topic),
				kfake.Superuser("SCRAM-SHA-256", "admin", "admin-pw"),
				kfake.Superuser(tt.kfake, "cdc", secretPassword))
			k.produce(t, topic, 0, 0, 3, 0)

			var logs syncBuffer
			opts := k.options("g-sasl", topic)
			opts.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			opts.SASL = SASL{Mechanism: tt.mechanism, Username: "cdc", Password: secretPassword}
			s := open(t, opts)
			readAll(t, s, 3)

			bad := opts
			bad.SASL.Password = secretPassword + "-wrong"
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if s, err := New(ctx, bad); err == nil {
				_ = s.Close(ctx)
				t.Fatal("New accepted a wrong password")
			} else if strings.Contains(err.Error(), secretPassword) {
				t.Fatalf("error shows the password: %v", err)
			}
			if strings.Contains(logs.String(), secretPassword) {
				t.Fatal("logs show the password")
			}
		})
	}
}

// TestMSKIAM checks the MSK IAM credentials: static keys as given, the AWS
// default chain otherwise; and that a failed connection shows no secret.
func TestMSKIAM(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDFROMENV")
	t.Setenv("AWS_SECRET_ACCESS_KEY", secretPassword)
	t.Setenv("AWS_SESSION_TOKEN", secretToken)
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	tests := []struct {
		name        string
		sasl        SASL
		wantKey     string
		wantSecret  string
		wantSession string
	}{
		{"static keys", SASL{Mechanism: MechanismMSKIAM, Username: "AKIDSTATIC", Password: "static-secret", SessionToken: "static-token"}, "AKIDSTATIC", "static-secret", "static-token"},
		{"default chain", SASL{Mechanism: MechanismMSKIAM}, "AKIDFROMENV", secretPassword, secretToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fn, err := tt.sasl.mskAuth(ctx)
			if err != nil {
				t.Fatal(err)
			}
			a, err := fn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if a.AccessKey != tt.wantKey || a.SecretKey != tt.wantSecret || a.SessionToken != tt.wantSession {
				t.Fatalf("credentials %s/%s, want %s", a.AccessKey, mask(a.SecretKey), tt.wantKey)
			}
			m, err := tt.sasl.mechanism(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if m.Name() != "AWS_MSK_IAM" {
				t.Fatalf("mechanism %s", m.Name())
			}
		})
	}

	// kfake speaks neither TLS nor MSK IAM: the connection fails, and the
	// error must not show the secret.
	k := newCluster(t, nil, kfake.SeedTopics(1, "t"))
	opts := k.options("g-msk", "t")
	opts.SASL = SASL{Mechanism: MechanismMSKIAM, Username: "AKIDSTATIC", Password: secretPassword, SessionToken: secretToken}
	cctx, ccancel := context.WithTimeout(context.Background(), time.Second)
	defer ccancel()
	if s, err := New(cctx, opts); err == nil {
		_ = s.Close(cctx)
		t.Fatal("New connected with MSK IAM to a plaintext broker")
	} else if strings.Contains(err.Error(), secretPassword) || strings.Contains(err.Error(), secretToken) {
		t.Fatalf("error shows a secret: %v", err)
	}
}
