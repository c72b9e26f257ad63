package lambda

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// InitErrorType is the error type reported when the function cannot start
// (bad configuration, unreachable sink).
const InitErrorType = "Cdcflow.InitError"

// ReportInitError posts err to the Lambda Runtime API's init error endpoint
// (POST /2018-06-01/runtime/init/error) at runtimeAPI (the value of
// AWS_LAMBDA_RUNTIME_API, host:port). The caller exits afterwards. The
// message must hold no secret: callers pass errors built by this package
// and the sinks, which redact URLs.
func ReportInitError(ctx context.Context, runtimeAPI string, err error) error {
	body, merr := json.Marshal(struct {
		ErrorMessage string   `json:"errorMessage"`
		ErrorType    string   `json:"errorType"`
		StackTrace   []string `json:"stackTrace"`
	}{ErrorMessage: err.Error(), ErrorType: InitErrorType, StackTrace: []string{}})
	if merr != nil {
		return merr
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	url := "http://" + runtimeAPI + "/2018-06-01/runtime/init/error"
	req, rerr := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if rerr != nil {
		return fmt.Errorf("report init error: %w", rerr)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Lambda-Runtime-Function-Error-Type", InitErrorType)
	resp, derr := http.DefaultClient.Do(req)
	if derr != nil {
		return fmt.Errorf("report init error: %w", derr)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("report init error: runtime API answered %s", resp.Status)
	}
	return nil
}
