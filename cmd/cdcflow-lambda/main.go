// Command cdcflow-lambda is cdcflow as an AWS Lambda function (custom
// runtime provided.al2023): it applies Kinesis, MSK and DynamoDB Streams
// events to a PostgreSQL or DuckDB sink and answers with a partial batch
// response. Build it as the runtime's bootstrap:
//
//	GOOS=linux GOARCH=amd64 CGO_ENABLED=1 go build -tags lambda.norpc -o bootstrap ./cmd/cdcflow-lambda
//
// Configuration comes from CDCFLOW_* environment variables (docs/lambda.md).
// A bad configuration or an unreachable sink is reported to the Runtime
// API's init error endpoint and the process exits 1.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	awslambda "github.com/aws/aws-lambda-go/lambda"

	"github.com/cdcflow/cdcflow/internal/lambda"
)

func main() {
	h, err := initHandler(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "cdcflow-lambda: init:", err)
		if api := os.Getenv("AWS_LAMBDA_RUNTIME_API"); api != "" {
			if rerr := lambda.ReportInitError(context.Background(), api, err); rerr != nil {
				fmt.Fprintln(os.Stderr, "cdcflow-lambda:", rerr)
			}
		}
		os.Exit(1)
	}
	awslambda.Start(h.Handle)
}

// initHandler reads the configuration and opens the sink, once per container.
func initHandler(ctx context.Context) (*lambda.Handler, error) {
	cfg, err := lambda.ConfigFromEnv(os.Getenv)
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	h, err := lambda.Open(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	log.Info("cdcflow-lambda ready", "sink", cfg.SinkURL.String(), "format", cfg.Format)
	return h, nil
}
