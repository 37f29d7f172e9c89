package lineage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ErrExport is returned (wrapped) when an OpenLineage endpoint refuses an
// event or stays unreachable after the retries.
var ErrExport = errors.New("lineage: export")

// ExportConfig says where Export sends events and how.
type ExportConfig struct {
	// URL is the OpenLineage server, e.g. "http://marquez:5000".
	// Required; http or https.
	URL string
	// Endpoint is the path below URL events are POSTed to. Default
	// "api/v1/lineage" (Marquez, and the OpenLineage HTTP transport).
	Endpoint string
	// APIKey, when set, is sent as "Authorization: Bearer APIKey".
	APIKey string
	// Window selects events by eventTime. Default: all.
	Window Window
	// Client sends the requests. Default: an http.Client with a 30s
	// timeout.
	Client *http.Client
	// Retries is how often an event is sent again after a 5xx or 429
	// answer or a network error. Default 5; negative means none.
	Retries int
	// RetryMin and RetryMax bound the backoff between tries, which doubles
	// from RetryMin. Defaults 200ms and 10s.
	RetryMin, RetryMax time.Duration
}

// ExportReport counts what Export did.
type ExportReport struct {
	// Sent is the number of events the endpoint accepted (2xx).
	Sent int `json:"sent"`
	// Skipped is the number of events outside the window.
	Skipped int `json:"skipped"`
	// Retries is the number of requests sent again.
	Retries int `json:"retries"`
}

// Export POSTs every event under prefix in the window, one JSON RunEvent
// per request in Walk's order (chain by chain, chain order within each),
// to cfg.URL/cfg.Endpoint. It stops at the first event the endpoint
// refuses (4xx other than 429) or that still fails after the retries; the
// report then counts what was sent before. Sending again is safe:
// OpenLineage consumers key runs by runId and event time.
func Export(ctx context.Context, store Store, prefix string, cfg ExportConfig) (ExportReport, error) {
	var rep ExportReport
	target, err := cfg.target()
	if err != nil {
		return rep, err
	}
	client := cfg.Client
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	retries := cfg.Retries
	switch {
	case retries == 0:
		retries = 5
	case retries < 0:
		retries = 0
	}
	lo, hi := cfg.RetryMin, cfg.RetryMax
	if lo <= 0 {
		lo = 200 * time.Millisecond
	}
	if hi <= 0 {
		hi = 10 * time.Second
	}
	err = Walk(ctx, store, prefix, func(e Entry) error {
		if in, _ := cfg.Window.holds(e.Event.EventTime); !in {
			rep.Skipped++
			return nil
		}
		body, err := json.Marshal(e.Event)
		if err != nil {
			return fmt.Errorf("%w: encode event: %v", ErrExport, err)
		}
		wait := lo
		for try := 0; ; try++ {
			retry, err := post(ctx, client, target, cfg.APIKey, body)
			if err == nil {
				rep.Sent++
				return nil
			}
			at := fmt.Sprintf("event seq %s of chain %s/%s", seqOfEvent(&e.Event), e.Pipeline, e.Chain)
			if !retry || try >= retries {
				return fmt.Errorf("%w: %s: %v", ErrExport, at, err)
			}
			rep.Retries++
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
			wait = min(2*wait, hi)
		}
	})
	return rep, err
}

func (c ExportConfig) target() (string, error) {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%w: OpenLineage URL %q: want http(s)://host[:port][/path]", ErrExport, c.URL)
	}
	ep := c.Endpoint
	if ep == "" {
		ep = "api/v1/lineage"
	}
	u.Path = strings.TrimRight(u.Path, "/") + "/" + strings.TrimLeft(ep, "/")
	u.RawPath = ""
	return u.String(), nil
}

// post sends one event; retry says whether a failure may pass on a later
// try (a 5xx or 429 answer, or no answer).
func post(ctx context.Context, client *http.Client, target, apiKey string, body []byte) (retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	if apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+apiKey)
	}
	resp, err := client.Do(req)
	if err != nil {
		return ctx.Err() == nil, err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // reuse the connection
	if resp.StatusCode/100 == 2 {
		return false, nil
	}
	err = fmt.Errorf("POST %s: %s: %s", target, resp.Status, strings.TrimSpace(string(msg)))
	return resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests, err
}

func seqOfEvent(ev *Event) string {
	if c := ev.Run.Facets.Chain; c != nil {
		return strconv.FormatUint(c.Seq, 10)
	}
	return "?"
}
