package sim

import (
	"bytes"
	_ "embed"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Pool is the set of simulated executors: owned sites and cloud regions.
type Pool struct {
	OnPrem []Site   `yaml:"onprem" json:"onprem"`
	Cloud  []Region `yaml:"cloud" json:"cloud"`
}

// Site is an owned GPU site: a fixed number of GPUs, paid for whether they
// work or not.
type Site struct {
	ID             string   `yaml:"id" json:"id"`
	Name           string   `yaml:"name" json:"name"`
	Site           string   `yaml:"site" json:"site"`
	Jurisdiction   string   `yaml:"jurisdiction" json:"jurisdiction"`
	Certifications []string `yaml:"certifications" json:"certifications,omitempty"`
	// GPUs is how many batches the site runs at once.
	GPUs int `yaml:"gpus" json:"gpus"`
	// RowsPerSecond is one GPU's throughput on the pipeline's plan.
	RowsPerSecond float64 `yaml:"rows_per_second" json:"rows_per_second"`
	// PricePerHour is the amortized price of one GPU-hour, in USD.
	PricePerHour float64 `yaml:"price_per_hour" json:"price_per_hour"`
}

// Region is a cloud region whose GPU instances start on demand (after
// ScaleUp) and stop after IdleTimeout without work; each is billed from
// its start to its stop.
type Region struct {
	ID             string   `yaml:"id" json:"id"`
	Provider       string   `yaml:"provider" json:"provider"`
	Region         string   `yaml:"region" json:"region"`
	Jurisdiction   string   `yaml:"jurisdiction" json:"jurisdiction"`
	Certifications []string `yaml:"certifications" json:"certifications,omitempty"`
	// MaxGPUs bounds the instances running at once.
	MaxGPUs       int     `yaml:"max_gpus" json:"max_gpus"`
	RowsPerSecond float64 `yaml:"rows_per_second" json:"rows_per_second"`
	// PricePerHour is the on-demand price of one GPU-hour, in USD.
	PricePerHour float64  `yaml:"price_per_hour" json:"price_per_hour"`
	ScaleUp      Duration `yaml:"scale_up" json:"scale_up"`
	IdleTimeout  Duration `yaml:"idle_timeout" json:"idle_timeout"`
	// EgressPerGB is charged, in USD, on the bytes that leave the region:
	// every batch's results, and its input too when the region is outside
	// the data's coarse region (policy.Region).
	EgressPerGB float64 `yaml:"egress_per_gb" json:"egress_per_gb"`
}

// Duration is a time.Duration written as "90s" in YAML.
type Duration time.Duration

// UnmarshalYAML reads a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration as "1m30s".
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

//go:embed pool.yaml
var defaultPoolYAML []byte

// DefaultPool returns the pool in testdata/simulate/pool.yaml: on-prem
// sized to cover the built-in day's base load.
func DefaultPool() Pool {
	p, err := ParsePool(defaultPoolYAML)
	if err != nil {
		panic(err)
	}
	return p
}

// LoadPool reads a pool YAML file.
func LoadPool(path string) (Pool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Pool{}, err
	}
	p, err := ParsePool(b)
	if err != nil {
		return Pool{}, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// ParsePool parses and checks a pool. Unknown fields are errors.
func ParsePool(b []byte) (Pool, error) {
	var p Pool
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil && !errors.Is(err, io.EOF) {
		return Pool{}, fmt.Errorf("sim: pool: %w", err)
	}
	return p, p.check()
}

func (p Pool) check() error {
	seen := map[string]bool{}
	id := func(s string) error {
		if s == "" {
			return errors.New("sim: pool: an executor has no id")
		}
		if seen[s] {
			return fmt.Errorf("sim: pool: executor id %q repeats", s)
		}
		seen[s] = true
		return nil
	}
	for _, s := range p.OnPrem {
		if err := id(s.ID); err != nil {
			return err
		}
		if s.GPUs <= 0 || s.RowsPerSecond <= 0 || s.PricePerHour < 0 || s.Jurisdiction == "" {
			return fmt.Errorf("sim: pool: site %s needs gpus > 0, rows_per_second > 0, price_per_hour >= 0 and a jurisdiction", s.ID)
		}
	}
	for _, r := range p.Cloud {
		if err := id(r.ID); err != nil {
			return err
		}
		if r.MaxGPUs <= 0 || r.RowsPerSecond <= 0 || r.PricePerHour < 0 || r.Jurisdiction == "" || r.ScaleUp < 0 || r.IdleTimeout < 0 || r.EgressPerGB < 0 {
			return fmt.Errorf("sim: pool: region %s needs max_gpus > 0, rows_per_second > 0, non-negative prices and delays, and a jurisdiction", r.ID)
		}
	}
	if len(seen) == 0 {
		return errors.New("sim: pool: no executors")
	}
	return nil
}

// Point is one point of an arrival profile: from At on, records arrive at
// RecordsPerS (linearly interpolated to the next point).
type Point struct {
	At          time.Duration `json:"at"`
	RecordsPerS float64       `json:"records_per_s"`
}

// Profile is an arrival rate over time, as points sorted by At. Past the
// last point the rate stays at the last value.
type Profile []Point

// Rate returns records/s at t.
func (p Profile) Rate(t time.Duration) float64 {
	if len(p) == 0 {
		return 0
	}
	if t <= p[0].At {
		return p[0].RecordsPerS
	}
	for i := 1; i < len(p); i++ {
		if t < p[i].At {
			a, b := p[i-1], p[i]
			f := float64(t-a.At) / float64(b.At-a.At)
			return a.RecordsPerS + f*(b.RecordsPerS-a.RecordsPerS)
		}
	}
	return p[len(p)-1].RecordsPerS
}

// BurstyWeekday is the built-in profile: a night floor at 75% of the
// working-hours level, a morning ramp, a lunch dip, a 30-minute launch
// spike at 14:00 at 2.6 times the working-hours level, and an evening
// ramp down. The working-hours level is 1.1M records/s.
func BurstyWeekday() Profile {
	const peak = 1.1e6
	h := func(x float64) time.Duration { return time.Duration(x * float64(time.Hour)) }
	pts := []struct{ h, f float64 }{
		{0, 0.75}, {6, 0.75}, {9, 1.0}, {12, 1.0}, {12.5, 0.9}, {13.5, 1.0},
		{13.95, 1.0}, {14, 2.6}, {14.5, 2.6}, {14.55, 1.0},
		{17, 1.0}, {21, 0.8}, {24, 0.75},
	}
	p := make(Profile, len(pts))
	for i, x := range pts {
		p[i] = Point{At: h(x.h), RecordsPerS: x.f * peak}
	}
	return p
}

// LoadProfile reads a CSV trace of time,records_per_s: time is seconds
// from the start or a Go duration ("1h30m"); a header row is skipped.
func LoadProfile(path string) (Profile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var p Profile
	for i, row := range rows {
		if len(row) < 2 {
			return nil, fmt.Errorf("%s:%d: want time,records_per_s", path, i+1)
		}
		at, err1 := parseAt(strings.TrimSpace(row[0]))
		rate, err2 := strconv.ParseFloat(strings.TrimSpace(row[1]), 64)
		if err1 != nil || err2 != nil {
			if i == 0 {
				continue // header
			}
			return nil, fmt.Errorf("%s:%d: want time,records_per_s: %v", path, i+1, errors.Join(err1, err2))
		}
		if rate < 0 || (len(p) > 0 && at <= p[len(p)-1].At) {
			return nil, fmt.Errorf("%s:%d: times must increase and rates be >= 0", path, i+1)
		}
		p = append(p, Point{At: at, RecordsPerS: rate})
	}
	if len(p) == 0 {
		return nil, fmt.Errorf("%s: no points", path)
	}
	return p, nil
}

func parseAt(s string) (time.Duration, error) {
	if v, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Duration(v * float64(time.Second)), nil
	}
	return time.ParseDuration(s)
}

// Stream is one kind of data in the arrival mix.
type Stream struct {
	Jurisdiction string `json:"jurisdiction"`
	// Class is "card" (pan: pii, amount: financial) or "clinical"
	// (diagnosis: phi).
	Class  string  `json:"class"`
	Weight float64 `json:"weight"`
}

// DefaultMix is the built-in mix of jurisdictions and data classes.
func DefaultMix() []Stream {
	return []Stream{
		{"DE", "card", 0.28}, {"FR", "card", 0.14}, {"US", "card", 0.30},
		{"IN", "card", 0.05}, {"BR", "card", 0.04},
		{"US", "clinical", 0.12}, {"DE", "clinical", 0.07},
	}
}
