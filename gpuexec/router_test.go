package gpuexec

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
)

// fakeExec is an executor whose health the test sets.
type fakeExec struct {
	id      string
	loc     Location
	healthy error
	hang    bool // Healthy blocks until ctx ends
}

func (f *fakeExec) ID() string         { return f.id }
func (f *fakeExec) Kind() string       { return "cpu" }
func (f *fakeExec) Location() Location { return f.loc }
func (f *fakeExec) Healthy(ctx context.Context) error {
	if f.hang {
		<-ctx.Done()
		return ctx.Err()
	}
	return f.healthy
}
func (f *fakeExec) Execute(context.Context, *Plan, arrow.RecordBatch) (arrow.RecordBatch, error) {
	return nil, errors.New("not used")
}

func TestRouterPick(t *testing.T) {
	down := errors.New("device lost")
	exec := func(id, kind, jur string) *fakeExec {
		return &fakeExec{id: id, loc: Location{Name: id, Kind: kind, Jurisdiction: jur}}
	}
	tests := []struct {
		name    string
		execs   []*fakeExec
		data    string
		allowed []string
		down    []string // ids whose Healthy fails
		want    string   // picked id; "" when an error is expected
		wantErr error
	}{
		{
			name:    "same jurisdiction onprem first",
			execs:   []*fakeExec{exec("aws-us", "cloud", "US"), exec("aws-de", "cloud", "DE"), exec("dc-us", "onprem", "US"), exec("dc-de", "onprem", "DE")},
			data:    "DE",
			allowed: []string{"aws-us", "aws-de", "dc-us", "dc-de"},
			want:    "dc-de",
		},
		{
			name:    "jurisdiction outranks onprem",
			execs:   []*fakeExec{exec("dc-us", "onprem", "US"), exec("aws-de", "cloud", "DE")},
			data:    "DE",
			allowed: []string{"dc-us", "aws-de"},
			want:    "aws-de",
		},
		{
			name:    "jurisdiction compared case-insensitively",
			execs:   []*fakeExec{exec("dc-us", "onprem", "US"), exec("aws-de", "cloud", "DE")},
			data:    "de",
			allowed: []string{"dc-us", "aws-de"},
			want:    "aws-de",
		},
		{
			name:    "onprem before cloud abroad",
			execs:   []*fakeExec{exec("aws-us", "cloud", "US"), exec("dc-us", "onprem", "US")},
			data:    "DE",
			allowed: []string{"aws-us", "dc-us"},
			want:    "dc-us",
		},
		{
			name:    "ties keep the given order",
			execs:   []*fakeExec{exec("dc-fra-2", "onprem", "DE"), exec("dc-fra-1", "onprem", "DE")},
			data:    "DE",
			allowed: []string{"dc-fra-1", "dc-fra-2"},
			want:    "dc-fra-2",
		},
		{
			name:    "unhealthy best falls back",
			execs:   []*fakeExec{exec("dc-de", "onprem", "DE"), exec("aws-de", "cloud", "DE")},
			data:    "DE",
			allowed: []string{"dc-de", "aws-de"},
			down:    []string{"dc-de"},
			want:    "aws-de",
		},
		{
			name:    "never a disallowed executor",
			execs:   []*fakeExec{exec("dc-de", "onprem", "DE"), exec("aws-us", "cloud", "US")},
			data:    "DE",
			allowed: []string{"aws-us"},
			want:    "aws-us",
		},
		{
			name:    "only allowed one unhealthy",
			execs:   []*fakeExec{exec("dc-de", "onprem", "DE"), exec("aws-us", "cloud", "US")},
			data:    "DE",
			allowed: []string{"dc-de"},
			down:    []string{"dc-de"},
			wantErr: ErrUnavailable,
		},
		{
			name:    "allowed id unknown",
			execs:   []*fakeExec{exec("dc-de", "onprem", "DE")},
			data:    "DE",
			allowed: []string{"gcp-eu"},
			wantErr: ErrUnavailable,
		},
		{
			name:    "none allowed",
			execs:   []*fakeExec{exec("dc-de", "onprem", "DE")},
			data:    "DE",
			allowed: nil,
			wantErr: ErrNoneAllowed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var execs []Executor
			for _, e := range tt.execs {
				if slices.Contains(tt.down, e.id) {
					e.healthy = down
				}
				execs = append(execs, e)
			}
			r := NewRouter(execs, RouterOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			got, err := r.Pick(context.Background(), tt.data, tt.allowed)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || got != nil {
					t.Fatalf("Pick = %v, %v; want nil, %v", got, err, tt.wantErr)
				}
				if tt.wantErr == ErrNoneAllowed && errors.Is(err, ErrUnavailable) {
					t.Error("an empty allow list must not look retryable")
				}
				return
			}
			if err != nil {
				t.Fatalf("Pick: %v", err)
			}
			if got.ID() != tt.want {
				t.Errorf("picked %s, want %s", got.ID(), tt.want)
			}
		})
	}
}

func TestRouterHealthTimeout(t *testing.T) {
	hung := &fakeExec{id: "remote-de", loc: Location{Kind: "onprem", Jurisdiction: "DE"}, hang: true}
	spare := &fakeExec{id: "aws-de", loc: Location{Kind: "cloud", Jurisdiction: "DE"}}
	r := NewRouter([]Executor{hung, spare}, RouterOptions{HealthTimeout: 20 * time.Millisecond})
	start := time.Now()
	got, err := r.Pick(context.Background(), "DE", []string{"remote-de", "aws-de"})
	if err != nil || got.ID() != "aws-de" {
		t.Fatalf("Pick = %v, %v; want aws-de", got, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Pick took %s with a hung executor", d)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.Pick(ctx, "DE", []string{"aws-de"}); !errors.Is(err, context.Canceled) {
		t.Errorf("Pick with cancelled ctx = %v, want context.Canceled", err)
	}
}

func TestRouterLookup(t *testing.T) {
	a := &fakeExec{id: "a"}
	b := &fakeExec{id: "b"}
	dup := &fakeExec{id: "a", loc: Location{Name: "dup"}}
	r := NewRouter([]Executor{a, nil, b, dup}, RouterOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	execs := r.Executors()
	if len(execs) != 2 || execs[0] != a || execs[1] != b {
		t.Fatalf("Executors = %v, want [a b]", execs)
	}
	execs[0] = nil // a copy: the router is unaffected
	if got, ok := r.Get("a"); !ok || got != a {
		t.Errorf("Get(a) = %v, %v; want the first executor called a", got, ok)
	}
	if _, ok := r.Get("zzz"); ok {
		t.Error("Get(zzz) found something")
	}
	if r.Executors()[0] != a {
		t.Error("Executors returned the router's own slice")
	}
}

// TestRouterWithCPU routes to a real CPU executor and back off it once it
// is closed.
func TestRouterWithCPU(t *testing.T) {
	cpu := NewCPU("cpu-fra", Location{Kind: "onprem", Jurisdiction: "DE"}, CPUOptions{Workers: 1})
	r := NewRouter([]Executor{cpu}, RouterOptions{})
	if got, err := r.Pick(context.Background(), "DE", []string{"cpu-fra"}); err != nil || got != Executor(cpu) {
		t.Fatalf("Pick = %v, %v", got, err)
	}
	cpu.Close()
	if _, err := r.Pick(context.Background(), "DE", []string{"cpu-fra"}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Pick after Close = %v, want ErrUnavailable", err)
	}
}
