package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/aws"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// SASL mechanisms accepted in SASL.Mechanism.
const (
	MechanismPlain       = "plain"
	MechanismSCRAMSHA256 = "scram-sha-256"
	MechanismSCRAMSHA512 = "scram-sha-512"
	MechanismMSKIAM      = "aws-msk-iam"
)

// SASL configures broker authentication. An empty Mechanism disables SASL.
//
// For MechanismMSKIAM, Username and Password are an AWS access key id and
// secret access key (SessionToken for temporary credentials); when both are
// empty, credentials come from the AWS default chain (environment, shared
// config and credentials files, web identity, ECS/EC2 roles) and are
// refreshed by it. MSK IAM always uses TLS.
//
// Password and SessionToken never appear in String, GoString, LogValue or any
// error this package returns.
type SASL struct {
	Mechanism    string
	Username     string
	Password     string
	SessionToken string
}

const redacted = "***"

func mask(s string) string {
	if s == "" {
		return ""
	}
	return redacted
}

// String renders the settings with secrets masked.
func (s SASL) String() string {
	return fmt.Sprintf("{mechanism=%s username=%s password=%s session_token=%s}",
		s.Mechanism, s.Username, mask(s.Password), mask(s.SessionToken))
}

// GoString renders the settings with secrets masked, for %#v.
func (s SASL) GoString() string {
	return fmt.Sprintf("kafka.SASL{Mechanism:%q, Username:%q, Password:%q, SessionToken:%q}",
		s.Mechanism, s.Username, mask(s.Password), mask(s.SessionToken))
}

// LogValue renders the settings for slog with secrets masked.
func (s SASL) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("mechanism", s.Mechanism),
		slog.String("username", s.Username),
		slog.String("password", mask(s.Password)),
		slog.String("session_token", mask(s.SessionToken)),
	)
}

func (s SASL) validate() error {
	switch s.Mechanism {
	case "":
		if s.Username != "" || s.Password != "" || s.SessionToken != "" {
			return errors.New("sasl: credentials set but mechanism is empty")
		}
	case MechanismPlain, MechanismSCRAMSHA256, MechanismSCRAMSHA512:
		if s.Username == "" || s.Password == "" {
			return fmt.Errorf("sasl: mechanism %s needs username and password", s.Mechanism)
		}
		if s.SessionToken != "" {
			return fmt.Errorf("sasl: session token only applies to mechanism %s", MechanismMSKIAM)
		}
	case MechanismMSKIAM:
		if (s.Username == "") != (s.Password == "") {
			return errors.New("sasl: aws-msk-iam needs username (access key id) and password (secret access key) together, or neither for the AWS default credentials")
		}
		if s.SessionToken != "" && s.Username == "" {
			return errors.New("sasl: aws-msk-iam session token requires username and password")
		}
	default:
		return fmt.Errorf("sasl: unknown mechanism %q (want %s, %s, %s or %s)", s.Mechanism,
			MechanismPlain, MechanismSCRAMSHA256, MechanismSCRAMSHA512, MechanismMSKIAM)
	}
	return nil
}

// mechanism returns the franz-go mechanism for s, or nil when SASL is off.
func (s SASL) mechanism(ctx context.Context) (sasl.Mechanism, error) {
	switch s.Mechanism {
	case "":
		return nil, nil
	case MechanismPlain:
		return plain.Auth{User: s.Username, Pass: s.Password}.AsMechanism(), nil
	case MechanismSCRAMSHA256:
		return scram.Auth{User: s.Username, Pass: s.Password}.AsSha256Mechanism(), nil
	case MechanismSCRAMSHA512:
		return scram.Auth{User: s.Username, Pass: s.Password}.AsSha512Mechanism(), nil
	case MechanismMSKIAM:
		fn, err := s.mskAuth(ctx)
		if err != nil {
			return nil, err
		}
		return aws.ManagedStreamingIAM(fn), nil
	}
	return nil, s.validate()
}

// mskAuth returns the credential function of the MSK IAM mechanism: the
// static keys, or the AWS default chain (cached and refreshed by the SDK).
func (s SASL) mskAuth(ctx context.Context) (func(context.Context) (aws.Auth, error), error) {
	if s.Username != "" {
		a := aws.Auth{AccessKey: s.Username, SecretKey: s.Password, SessionToken: s.SessionToken, UserAgent: "cdcflow"}
		return func(context.Context) (aws.Auth, error) { return a, nil }, nil
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("sasl aws-msk-iam: load AWS default config: %w", err)
	}
	if cfg.Credentials == nil {
		return nil, errors.New("sasl aws-msk-iam: the AWS default chain has no credentials provider")
	}
	return func(ctx context.Context) (aws.Auth, error) {
		c, err := cfg.Credentials.Retrieve(ctx)
		if err != nil {
			return aws.Auth{}, fmt.Errorf("sasl aws-msk-iam: retrieve AWS credentials: %w", err)
		}
		return aws.Auth{AccessKey: c.AccessKeyID, SecretKey: c.SecretAccessKey, SessionToken: c.SessionToken, UserAgent: "cdcflow"}, nil
	}, nil
}

// TLSConfig builds Options.TLS from PEM files: caFile adds the broker's CA
// (the system roots are used when it is empty), certFile and keyFile give a
// client certificate for mutual TLS. The broker name is verified unless
// insecureSkipVerify is set.
func TLSConfig(caFile, certFile, keyFile string, insecureSkipVerify bool) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: insecureSkipVerify}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("tls ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls ca_file %s: no PEM certificate found", caFile)
		}
		cfg.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("tls: cert_file and key_file must be set together")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("tls cert_file %s, key_file %s: %w", certFile, keyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// connOpts returns the client options shared by the probe and the consumer:
// seeds, TLS and SASL.
func (o *Options) connOpts(ctx context.Context) ([]kgo.Opt, error) {
	opts := []kgo.Opt{kgo.SeedBrokers(o.Brokers...), kgo.ClientID("cdcflow")}
	tlsCfg := o.TLS
	if tlsCfg == nil && o.SASL.Mechanism == MechanismMSKIAM {
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if tlsCfg != nil {
		opts = append(opts, kgo.DialTLSConfig(tlsCfg.Clone()))
	}
	m, err := o.SASL.mechanism(ctx)
	if err != nil {
		return nil, err
	}
	if m != nil {
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}
