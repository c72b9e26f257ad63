package lambda

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/cdcflow/cdcflow/internal/config"
)

// Open resolves the sink URL (from Secrets Manager when c.SinkSecret is
// set), opens the sink and returns a Handler over it. Errors never hold the
// URL or the secret's value.
func Open(ctx context.Context, c Config, log *slog.Logger) (*Handler, error) {
	if c.SinkSecret != "" {
		u, err := secretURL(ctx, c.SinkSecret)
		if err != nil {
			return nil, err
		}
		if err := checkSinkURL(u); err != nil {
			return nil, fmt.Errorf("secret %s: %w", c.SinkSecret, err)
		}
		c.SinkURL = config.SecretURL(u)
	}
	s, err := OpenSink(ctx, c, log)
	if err != nil {
		return nil, err
	}
	h, err := New(s, Options{
		Decode:      decodeOptions(c),
		MaxAttempts: c.MaxAttempts,
		Logger:      log,
	})
	if err != nil {
		_ = s.Close(ctx)
		return nil, err
	}
	return h, nil
}

// secretURL reads a sink URL from Secrets Manager with the function's
// credentials (secretsmanager:GetSecretValue on that one secret).
func secretURL(ctx context.Context, id string) (string, error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return "", fmt.Errorf("%s: load AWS configuration: %w", EnvSinkSecret, err)
	}
	out, err := secretsmanager.NewFromConfig(cfg).GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: &id})
	if err != nil {
		return "", fmt.Errorf("%s: get secret value of %s: %w", EnvSinkSecret, id, err)
	}
	if out.SecretString == nil {
		return "", fmt.Errorf("%s: secret %s holds binary data, not a URL string", EnvSinkSecret, id)
	}
	u, err := ParseSecret(*out.SecretString)
	if err != nil {
		return "", fmt.Errorf("%s: secret %s: %w", EnvSinkSecret, id, err)
	}
	return u, nil
}

// rdsSecret is the JSON shape of an RDS-managed or Secrets Manager
// database secret.
type rdsSecret struct {
	URL      string          `json:"url"`
	Engine   string          `json:"engine"`
	Host     string          `json:"host"`
	Port     json.RawMessage `json:"port"`
	Username string          `json:"username"`
	Password string          `json:"password"`
	DBName   string          `json:"dbname"`
}

// ParseSecret returns the sink URL a secret string holds: the URL itself,
// a JSON object with "url", or an RDS database secret (engine postgres,
// host, port, username, password, dbname), which becomes a postgres:// URL
// with sslmode=require. Errors never quote the secret.
func ParseSecret(s string) (string, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "{") {
		return s, nil
	}
	var r rdsSecret
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		return "", errors.New("secret is neither a URL nor a JSON object")
	}
	if r.URL != "" {
		return r.URL, nil
	}
	if r.Engine != "" && !strings.HasPrefix(r.Engine, "postgres") {
		return "", fmt.Errorf("secret engine %q is not postgres", r.Engine)
	}
	if r.Host == "" || r.Username == "" {
		return "", errors.New(`secret JSON needs "url", or "host" and "username" (an RDS database secret)`)
	}
	port := "5432"
	if len(r.Port) > 0 {
		var n int
		var str string
		switch {
		case json.Unmarshal(r.Port, &n) == nil && n > 0:
			port = strconv.Itoa(n)
		case json.Unmarshal(r.Port, &str) == nil && str != "":
			port = str
		default:
			return "", errors.New(`secret "port" is not a port number`)
		}
	}
	u := url.URL{Scheme: "postgres", User: url.UserPassword(r.Username, r.Password), Host: net.JoinHostPort(r.Host, port),
		Path: "/" + r.DBName, RawQuery: "sslmode=require"}
	return u.String(), nil
}
