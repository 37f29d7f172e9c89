package flight

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/sluice-dev/sluice/gpuexec"
)

var onprem = gpuexec.Location{Name: "fra", Kind: "onprem", Site: "fra-1", Jurisdiction: "DE"}

// testRecord is n rows of an amount (float64, every 7th null), a count
// (int32), a category and a user (strings), and a note column no plan
// reads.
func testRecord(t testing.TB, mem memory.Allocator, n int) arrow.RecordBatch {
	t.Helper()
	amount := array.NewFloat64Builder(mem)
	count := array.NewInt32Builder(mem)
	cat := array.NewStringBuilder(mem)
	user := array.NewStringBuilder(mem)
	note := array.NewStringBuilder(mem)
	cats := []string{"grocery", "travel", "fuel", "online", "atm"}
	for i := range n {
		if i%7 == 0 {
			amount.AppendNull()
		} else {
			amount.Append(float64(i%5000)*1.25 - 3)
		}
		count.Append(int32(i % 97))
		cat.Append(cats[i%len(cats)])
		user.Append(fmt.Sprintf("user-%d", i%10007))
		note.Append(strings.Repeat("x", i%13))
	}
	bs := []array.Builder{amount, count, cat, user, note}
	cols := make([]arrow.Array, len(bs))
	for i, b := range bs {
		cols[i] = b.NewArray()
		b.Release()
	}
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "amount", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "count", Type: arrow.PrimitiveTypes.Int32},
		{Name: "category", Type: arrow.BinaryTypes.String},
		{Name: "user", Type: arrow.BinaryTypes.String},
		{Name: "note", Type: arrow.BinaryTypes.String},
	}, nil)
	rec := array.NewRecordBatch(schema, cols, int64(n))
	for _, c := range cols {
		c.Release()
	}
	return rec
}

func testPlan() *gpuexec.Plan {
	return &gpuexec.Plan{
		Passthrough: []string{"user"},
		Steps: []gpuexec.Step{
			{Output: "amount_log", Input: "amount", Ops: []gpuexec.Op{{Kind: gpuexec.OpFillMissing}, {Kind: gpuexec.OpClip, Min: 0, Max: 5000}, {Kind: gpuexec.OpLog1p}}},
			{Output: "amount_z", Input: "amount", Ops: []gpuexec.Op{{Kind: gpuexec.OpStandardize, Mean: 3000, Std: 1800}}},
			{Output: "amount_bucket", Input: "amount", Ops: []gpuexec.Op{{Kind: gpuexec.OpBucketize, Boundaries: []float64{10, 100, 1000}}}},
			{Output: "count_mm", Input: "count", Ops: []gpuexec.Op{{Kind: gpuexec.OpMinMax, Min: 0, Max: 96}}},
			{Output: "category_id", Input: "category", Ops: []gpuexec.Op{{Kind: gpuexec.OpCategorify, Vocabulary: []string{"grocery", "travel", "fuel"}}}},
			{Output: "user_bucket", Input: "user", Ops: []gpuexec.Op{{Kind: gpuexec.OpHashBucket, Buckets: 1000}}},
		},
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// serve starts a server for exec on a loopback port and returns its
// address; it is shut down when the test ends.
func serve(t *testing.T, exec gpuexec.Executor, opts ServerOptions) (string, *Server) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quiet()
	}
	srv, err := NewServer(exec, opts)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return lis.Addr().String(), srv
}

func client(t *testing.T, addr string, opts ClientOptions) *Client {
	t.Helper()
	if opts.ID == "" {
		opts.ID = "dc-fra"
		opts.Location = onprem
	}
	c, err := NewClient(addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func allowed(ids ...string) context.Context {
	return gpuexec.WithDecision(context.Background(), gpuexec.RouteDecision{IDs: []string{"dec-1"}, Allowed: ids, Revision: "rev-1"})
}

// TestExecuteMatchesLocal runs the plan remotely and locally on the same
// batch, at sizes that fit one message and that need slicing both ways.
func TestExecuteMatchesLocal(t *testing.T) {
	cpu := gpuexec.NewCPU("dc-fra", onprem, gpuexec.CPUOptions{})
	const limit = 256 << 10 // slices of 64 KiB
	addr, _ := serve(t, cpu, ServerOptions{Token: "s3cret", MaxMessageBytes: limit})
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	c := client(t, addr, ClientOptions{ID: "dc-fra", Location: onprem, Token: "s3cret", MaxMessageBytes: limit, Allocator: mem})
	if err := c.Healthy(context.Background()); err != nil {
		t.Fatalf("Healthy: %v", err)
	}
	local := gpuexec.NewCPU("local", onprem, gpuexec.CPUOptions{})
	for _, n := range []int{0, 1, 1000, 50_000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			rec := testRecord(t, mem, n)
			defer rec.Release()
			want, err := local.Execute(context.Background(), testPlan(), rec)
			if err != nil {
				t.Fatal(err)
			}
			defer want.Release()
			got, err := c.Execute(allowed("dc-fra", "aws-us"), testPlan(), rec)
			if err != nil {
				t.Fatalf("Execute: %v", err)
			}
			defer got.Release()
			if !got.Schema().Equal(want.Schema()) {
				t.Fatalf("schema:\n%s\nwant\n%s", got.Schema(), want.Schema())
			}
			if !array.RecordEqual(got, want) {
				t.Errorf("remote result differs from local")
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	cpu := gpuexec.NewCPU("dc-fra", onprem, gpuexec.CPUOptions{})
	addr, _ := serve(t, cpu, ServerOptions{Token: "s3cret"})
	rec := testRecord(t, memory.DefaultAllocator, 100)
	defer rec.Release()

	tests := []struct {
		name    string
		ctx     context.Context
		token   string
		plan    *gpuexec.Plan
		wantErr error
		wantMsg string
	}{
		{"decision allows another executor", allowed("aws-us"), "s3cret", testPlan(), ErrRefused, "not executor \"dc-fra\""},
		{"no decision", context.Background(), "s3cret", testPlan(), ErrRefused, "no routing decision"},
		{"wrong token", allowed("dc-fra"), "guess", testPlan(), ErrUnauthenticated, "bearer token"},
		{"no token", allowed("dc-fra"), "", testPlan(), ErrUnauthenticated, "bearer token"},
		{"invalid plan", allowed("dc-fra"), "s3cret", &gpuexec.Plan{Steps: []gpuexec.Step{{Output: "y", Input: "nope", Ops: []gpuexec.Op{{Kind: gpuexec.OpLog1p}}}}}, gpuexec.ErrInvalidPlan, "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := client(t, addr, ClientOptions{Token: tt.token})
			out, err := c.Execute(tt.ctx, tt.plan, rec)
			if out != nil {
				out.Release()
			}
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("Execute = %v; want %v mentioning %q", err, tt.wantErr, tt.wantMsg)
			}
			if errors.Is(err, gpuexec.ErrUnavailable) {
				t.Error("a refusal must not look retryable")
			}
		})
	}
	if err := client(t, addr, ClientOptions{Token: "guess"}).Healthy(context.Background()); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("Healthy with a wrong token = %v", err)
	}
}

func TestHealthy(t *testing.T) {
	cpu := gpuexec.NewCPU("dc-fra", onprem, gpuexec.CPUOptions{})
	addr, srv := serve(t, cpu, ServerOptions{})
	if err := client(t, addr, ClientOptions{}).Healthy(context.Background()); err != nil {
		t.Fatalf("Healthy: %v", err)
	}
	// The address serves another executor than the one configured.
	wrong := client(t, addr, ClientOptions{ID: "aws-us", Location: gpuexec.Location{Kind: "cloud", Jurisdiction: "US"}})
	if err := wrong.Healthy(context.Background()); err == nil || !strings.Contains(err.Error(), `configured as "aws-us"`) {
		t.Errorf("Healthy of a mislabelled executor = %v", err)
	}
	cloudLabel := client(t, addr, ClientOptions{ID: "dc-fra", Location: gpuexec.Location{Kind: "cloud", Jurisdiction: "DE"}})
	if err := cloudLabel.Healthy(context.Background()); err == nil {
		t.Error("Healthy accepted a location kind the server does not have")
	}
	// A closed executor is unavailable, and so is a stopped server.
	cpu.Close()
	if err := client(t, addr, ClientOptions{}).Healthy(context.Background()); !errors.Is(err, gpuexec.ErrUnavailable) {
		t.Errorf("Healthy of a closed executor = %v, want ErrUnavailable", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	c := client(t, addr, ClientOptions{})
	if err := c.Healthy(context.Background()); !errors.Is(err, gpuexec.ErrUnavailable) {
		t.Errorf("Healthy of a stopped server = %v, want ErrUnavailable", err)
	}
	rec := testRecord(t, memory.DefaultAllocator, 10)
	defer rec.Release()
	if _, err := c.Execute(allowed("dc-fra"), testPlan(), rec); !errors.Is(err, gpuexec.ErrUnavailable) {
		t.Errorf("Execute on a stopped server = %v, want ErrUnavailable", err)
	}
}

func TestTLS(t *testing.T) {
	serverTLS, clientTLS := selfSigned(t)
	cpu := gpuexec.NewCPU("dc-fra", onprem, gpuexec.CPUOptions{})
	addr, _ := serve(t, cpu, ServerOptions{Token: "s3cret", TLS: serverTLS})
	rec := testRecord(t, memory.DefaultAllocator, 100)
	defer rec.Release()

	c := client(t, addr, ClientOptions{ID: "dc-fra", Location: onprem, Token: "s3cret", TLS: clientTLS})
	out, err := c.Execute(allowed("dc-fra"), testPlan(), rec)
	if err != nil {
		t.Fatalf("Execute over TLS: %v", err)
	}
	out.Release()
	plain := client(t, addr, ClientOptions{Token: "s3cret"})
	if err := plain.Healthy(context.Background()); err == nil {
		t.Error("a plaintext client reached a TLS server")
	}
}

// selfSigned returns a server config with a fresh certificate for
// 127.0.0.1 and a client config that trusts only it.
func selfSigned(t *testing.T) (*tls.Config, *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "sluice-executor"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12},
		&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// TestInjectErrors checks the resilience-testing switch: the share of
// exchanges it fails end in an error the pipeline retries elsewhere (not
// a refusal, not an invalid plan) that says it was injected, and health
// probes still pass, so the executor looks flaky rather than gone.
func TestInjectErrors(t *testing.T) {
	rec := testRecord(t, memory.DefaultAllocator, 100)
	defer rec.Release()
	const calls = 200
	tests := []struct {
		name     string
		rate     float64
		min, max int // failed calls out of calls
	}{
		{"off", 0, 0, 0},
		{"always", 1, calls, calls},
		{"some", 0.3, calls / 10, calls / 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cpu := gpuexec.NewCPU("dc-fra", onprem, gpuexec.CPUOptions{})
			addr, _ := serve(t, cpu, ServerOptions{InjectErrorRate: tt.rate, InjectSeed: 42})
			c := client(t, addr, ClientOptions{})
			failed := 0
			for range calls {
				out, err := c.Execute(allowed("dc-fra"), testPlan(), rec)
				if err == nil {
					out.Release()
					continue
				}
				failed++
				for _, permanent := range []error{gpuexec.ErrInvalidPlan, ErrRefused, ErrUnauthenticated} {
					if errors.Is(err, permanent) {
						t.Fatalf("injected error %v matches %v; the pipeline would not route the batch again", err, permanent)
					}
				}
				if !strings.Contains(err.Error(), "Internal") || !strings.Contains(err.Error(), "injected on purpose") {
					t.Fatalf("Execute = %v; want an Internal error saying it was injected", err)
				}
			}
			if failed < tt.min || failed > tt.max {
				t.Errorf("%d of %d calls failed at rate %v; want %d to %d", failed, calls, tt.rate, tt.min, tt.max)
			}
			if err := c.Healthy(context.Background()); err != nil {
				t.Errorf("Healthy with errors injected: %v", err)
			}
		})
	}
	t.Run("refusal first", func(t *testing.T) {
		cpu := gpuexec.NewCPU("dc-fra", onprem, gpuexec.CPUOptions{})
		addr, _ := serve(t, cpu, ServerOptions{InjectErrorRate: 1})
		_, err := client(t, addr, ClientOptions{}).Execute(allowed("aws-us"), testPlan(), rec)
		if !errors.Is(err, ErrRefused) {
			t.Errorf("misrouted batch with errors injected: %v; want ErrRefused", err)
		}
	})
	for _, rate := range []float64{-0.1, 1.5, math.NaN()} {
		if _, err := NewServer(gpuexec.NewCPU("dc-fra", onprem, gpuexec.CPUOptions{}), ServerOptions{InjectErrorRate: rate}); err == nil {
			t.Errorf("NewServer accepted InjectErrorRate %v", rate)
		}
	}
}
