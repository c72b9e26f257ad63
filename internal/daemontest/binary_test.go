package daemontest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cdcflow/cdcflow/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// cdcflowBinary returns the path of the cdcflow binary built from this
// source tree, building it on first use.
func cdcflowBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() { binPath, buildErr = build() })
	if buildErr != nil {
		t.Fatalf("build cdcflow: %v", buildErr)
	}
	return binPath
}

// moduleRoot finds the directory holding go.mod above the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// sourceHash hashes the non-test Go files of the module's packages the
// binary is built from (all of the module's when `go list` fails), go.mod
// and go.sum. Reading them through the os package also tells `go test`
// which files the result depends on, so a cached pass is not reused after
// the daemon's sources change.
func sourceHash(root, goTool string) (string, error) {
	var files []string
	add := func(dir string, recursive bool) error {
		return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			name := d.Name()
			if d.IsDir() {
				if path != dir && (!recursive || strings.HasPrefix(name, ".") || name == "testdata") {
					return filepath.SkipDir
				}
				return nil
			}
			if strings.HasSuffix(name, ".go") && !strings.HasSuffix(name, "_test.go") {
				files = append(files, path)
			}
			return nil
		})
	}
	cmd := exec.Command(goTool, "list", "-deps", "-f", "{{if not .Standard}}{{.Dir}}{{end}}", "./cmd/cdcflow")
	cmd.Dir = root
	if out, err := cmd.Output(); err == nil {
		for _, dir := range strings.Fields(string(out)) {
			if strings.HasPrefix(dir, root+string(filepath.Separator)) {
				if err := add(dir, false); err != nil {
					return "", err
				}
			}
		}
	} else if err := add(root, true); err != nil {
		return "", err
	}
	files = append(files, filepath.Join(root, "go.mod"), filepath.Join(root, "go.sum"))
	sort.Strings(files)
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		rel, _ := filepath.Rel(root, f)
		fmt.Fprintf(h, "%s\x00%d\x00", rel, len(b))
		h.Write(b)
	}
	fmt.Fprintf(h, "%s/%s/%s", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return hex.EncodeToString(h.Sum(nil))[:20], nil
}

// build compiles ./cmd/cdcflow into <tmp>/cdcflow-daemontest/<hash>/cdcflow
// unless that binary exists, and removes the binaries of other source trees
// unused for 20 minutes (each is about 100MB).
func build() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	hash, err := sourceHash(root, goTool)
	if err != nil {
		return "", fmt.Errorf("hash sources: %w", err)
	}
	cache := filepath.Join(os.TempDir(), "cdcflow-daemontest")
	dir := filepath.Join(cache, hash)
	bin := filepath.Join(dir, "cdcflow")
	if old, err := os.ReadDir(cache); err == nil {
		for _, e := range old {
			if info, err := e.Info(); err == nil && e.Name() != hash && time.Since(info.ModTime()) > 20*time.Minute {
				os.RemoveAll(filepath.Join(cache, e.Name()))
			}
		}
	}
	if _, err := os.Stat(bin); err == nil {
		now := time.Now()
		_ = os.Chtimes(dir, now, now) // in use: not removed by another tree's build
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp := bin + fmt.Sprintf(".tmp%d", os.Getpid())
	cmd := exec.Command(goTool, "build", "-o", tmp, "./cmd/cdcflow")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("go build ./cmd/cdcflow: %v\n%s", err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	return bin, nil
}
