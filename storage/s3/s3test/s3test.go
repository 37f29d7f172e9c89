// Package s3test starts a real S3 server, the Versity S3 Gateway
// (versitygw, Apache-2.0), on loopback for tests. It is not a mock: the
// server stores objects in a temporary folder and enforces Object Lock.
//
// Install the server once with
//
//	cd /tmp && GOFLAGS=-mod=mod go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
//
// Start looks for it in $SLUICE_VERSITYGW, on PATH, then in
// $(go env GOPATH)/bin. Without it the test is skipped, or fails when the
// CI environment variable is set, so CI cannot pass by skipping.
package s3test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/storage/s3"
)

// Buckets that Start creates.
const (
	// Bucket is a plain bucket; Start's Config names it.
	Bucket = "sluice"
	// LockedBucket has Object Lock (and so versioning) enabled.
	LockedBucket = "sluice-locked"
)

// Credentials of the server's root user.
const (
	AccessKey = "sluice-test-access"
	SecretKey = "sluice-test-secret-key"
)

// Install is the command that installs the server.
const Install = "cd /tmp && GOFLAGS=-mod=mod go install github.com/versity/versitygw/cmd/versitygw@v1.8.0"

// Binary returns the path of versitygw, or "" if it is not installed.
func Binary() string {
	if p := os.Getenv("SLUICE_VERSITYGW"); p != "" {
		return p
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		out, err := exec.Command("go", "env", "GOPATH").Output()
		if err != nil {
			return ""
		}
		gopath = strings.TrimSpace(string(out))
	}
	for dir := range strings.SplitSeq(gopath, string(os.PathListSeparator)) {
		p := filepath.Join(dir, "bin", "versitygw")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p
		}
	}
	return ""
}

// Start starts a server for the test, creates Bucket and LockedBucket, and
// stops the server when the test ends. It returns the server's host:port
// and a Config for Bucket with the server's credentials; set cfg.Bucket to
// LockedBucket for Object Lock.
func Start(t testing.TB) (endpoint string, cfg s3.Config) {
	t.Helper()
	bin := Binary()
	if bin == "" {
		msg := "versitygw not found (S3 integration test); install it with: " + Install
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	var err error
	for range 3 { // a free port may be taken before the server binds it
		endpoint, err = start(t, bin)
		if err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("s3test: %v", err)
	}
	cfg = s3.Config{
		Endpoint:  endpoint,
		Bucket:    Bucket,
		Region:    "us-east-1",
		AccessKey: AccessKey,
		SecretKey: SecretKey,
		PathStyle: true,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, b := range []struct {
		name string
		lock bool
	}{{Bucket, false}, {LockedBucket, true}} {
		c := cfg
		c.Bucket = b.name
		store, err := s3.New(ctx, c)
		if err != nil {
			t.Fatalf("s3test: %v", err)
		}
		if err := store.EnsureBucket(ctx, b.lock); err != nil {
			t.Fatalf("s3test: %v", err)
		}
	}
	return endpoint, cfg
}

// lockedBuffer collects the server's output for a failure message.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func start(t testing.TB, bin string) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	l.Close()

	data, versions := t.TempDir(), t.TempDir()
	cmd := exec.Command(bin, "--access", AccessKey, "--secret", SecretKey,
		"--port", addr, "--quiet",
		"posix", "--versioning-dir", versions, data)
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}

	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err
			return "", fmt.Errorf("versitygw exited (%v): %s", err, out.String())
		default:
		}
		// Any HTTP answer (an S3 error for an unsigned request) means the
		// server is up.
		resp, err := client.Get("http://" + addr + "/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			stop()
			return "", fmt.Errorf("versitygw did not answer on %s within 20s: %s", addr, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("versitygw output:\n%s", out.String())
		}
	})
	return addr, nil
}
