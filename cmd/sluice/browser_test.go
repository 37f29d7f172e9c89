package main

import (
	"bytes"
	"context"
	"fmt"
	"html"
	"image"
	"image/png"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/lineage"
	"github.com/sluice-dev/sluice/storage/fs"
)

// chromium returns the headless browser the page test drives: Debian's
// chromium package (.ci/run installs it). Without it the test skips,
// except in CI, where a missing browser is a broken setup.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed; CI must install it (apt-get install -y chromium)")
	}
	t.Skip("chromium is not installed (apt-get install -y chromium); skipping the browser test")
	return ""
}

// runChromium loads url in a fresh headless profile with extra flags and
// returns what it printed on stdout.
func runChromium(t *testing.T, bin, target string, extra ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--hide-scrollbars", "--force-device-scale-factor=1",
		"--user-data-dir=" + t.TempDir(), "--window-size=1280,1600", "--virtual-time-budget=20000"}
	args = append(append(args, extra...), target)
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", extra, err, stderr.String())
	}
	return stdout.Bytes()
}

// TestAuditorPageInChromium serves the demo's lineage, opens the auditor's
// page in headless Chromium with a record pre-filled in the URL fragment,
// and checks from the rendered DOM and a screenshot that the graph, the
// decisions, the report table and chart and the verify status show the
// real lineage.
func TestAuditorPageInChromium(t *testing.T) {
	bin := chromium(t)
	dir := demoTrail(t, 2000)
	st, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	srv := httptest.NewServer(newHTTPServer(httpOptions{Store: st, AdminTokens: []string{testAdmin}, AuditorTokens: []string{testAuditor}}))
	defer srv.Close()

	// A record that went to an executor under a labelled rule: the page
	// must show that executor, the rule and the policy revision.
	evs, err := lineage.ReadAll(ctx, st, lineagePrefix)
	if err != nil {
		t.Fatal(err)
	}
	var ev *lineage.Event
	var rule string
	for i, e := range evs {
		f := e.Run.Facets
		if f.Outcome.Kind != lineage.OutcomeFeatures || f.Executor == nil || f.ResidencyDecision == nil {
			continue
		}
		for _, d := range f.ResidencyDecision.Decisions {
			if d.Allow && d.Executor == f.Executor.ID && len(d.Rules) > 0 {
				ev, rule = &evs[i], d.Rules[0]
			}
		}
	}
	if ev == nil {
		t.Fatal("the demo lineage has no feature event decided under a rule label")
	}
	f := ev.Run.Facets
	ko := f.KafkaOffsets
	offset := ko.Ranges[0][0]
	revision := f.ResidencyDecision.Decisions[0].Revision
	rep, err := lineage.Report(ctx, st, lineagePrefix)
	if err != nil {
		t.Fatal(err)
	}
	frag := url.Values{"topic": {ko.Topic}, "partition": {fmt.Sprint(ko.Partition)}, "offset": {fmt.Sprint(offset)}, "token": {testAuditor}}
	page := srv.URL + "/#" + frag.Encode()

	dom := string(runChromium(t, bin, page, "--dump-dom"))
	if !strings.Contains(dom, `data-loaded="report trace verify"`) {
		t.Fatalf("the page did not finish loading trace, report and verify:\n%.3000s", dom)
	}
	graph := between(dom, `class="lineage-graph"`, "</svg>")
	for _, want := range []string{
		"executor " + f.Executor.ID,
		"rules: " + rule,
		fmt.Sprintf("record %s/%d@%d", ko.Topic, ko.Partition, offset),
		filepath.Base(ev.Outputs[0].OutputFacets.Object.Key),
	} {
		if !strings.Contains(graph, html.EscapeString(want)) {
			t.Errorf("graph lacks %q", want)
		}
	}
	nodes := regexp.MustCompile(`<g class="node" data-kind="(\w+)"`).FindAllStringSubmatch(graph, -1)
	kinds := map[string]int{}
	for _, n := range nodes {
		kinds[n[1]]++
	}
	if kinds["source"] != 1 || kinds["decision"] == 0 || kinds["executor"] != 1 || kinds["object"] != len(ev.Outputs) {
		t.Errorf("graph nodes by kind %v: want 1 source, decisions, 1 executor, %d objects", kinds, len(ev.Outputs))
	}
	if n := strings.Count(graph, `class="edge`); n < len(nodes)-1 {
		t.Errorf("graph has %d edges for %d nodes", n, len(nodes))
	}
	decisions := between(dom, `class="decisions"`, "</table>")
	if !strings.Contains(decisions, html.EscapeString(revision)) || !strings.Contains(decisions, html.EscapeString(rule)) {
		t.Errorf("decision table lacks the policy revision %s or the rule %q", revision, rule)
	}
	table := between(dom, `id="report-table"`, "</table>")
	for _, r := range rep.Rows {
		if !strings.Contains(table, fmt.Sprintf(`<td class="num">%d</td>`, r.Rows)) {
			t.Errorf("report table lacks the row %+v", r)
		}
	}
	if bars := strings.Count(between(dom, `class="report-chart"`, "</svg>"), `class="bar"`); bars != len(rep.Rows) {
		t.Errorf("report chart has %d bars, want %d", bars, len(rep.Rows))
	}
	res, err := lineage.Residency(ctx, st, lineagePrefix, lineage.Window{})
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf(`<strong id="violations">%d of %d feature rows</strong>`, res.ViolationRows, res.ProcessedRows); !strings.Contains(dom, want) {
		t.Errorf("the page lacks the residency verdict %s", want)
	}
	if !strings.Contains(dom, "lineage verified") || !strings.Contains(dom, fmt.Sprintf("%d events", len(evs))) {
		t.Errorf("verify status missing or wrong")
	}

	// Without a token the page loads but shows no lineage.
	anon := string(runChromium(t, bin, srv.URL+"/#topic=events&partition=0&offset=0", "--dump-dom"))
	if !strings.Contains(anon, "Enter an API token") || strings.Contains(anon, `class="lineage-graph"`) {
		t.Errorf("without a token the page shows lineage or no prompt")
	}

	// The screenshot shows the graph and the chart, not a blank page.
	shot := filepath.Join(t.TempDir(), "page.png")
	runChromium(t, bin, page, "--screenshot="+shot)
	if d := os.Getenv("SLUICE_SCREENSHOT_DIR"); d != "" {
		data, _ := os.ReadFile(shot)
		_ = os.WriteFile(filepath.Join(d, "auditor-page.png"), data, 0o644)
	}
	img := readPNG(t, shot)
	if b := img.Bounds(); b.Dx() != 1280 || b.Dy() != 1600 {
		t.Errorf("screenshot is %v, want 1280x1600", b)
	}
	counts := colourCounts(img, map[string][3]uint8{
		"executor node":  {0xeb, 0xf8, 0xff},
		"object node":    {0xfa, 0xf5, 0xff},
		"features bar":   {0x31, 0x82, 0xce},
		"quarantine bar": {0xdd, 0x6b, 0x20},
		"white":          {0xff, 0xff, 0xff},
	})
	for _, k := range []string{"executor node", "object node", "features bar", "quarantine bar"} {
		if counts[k] < 500 {
			t.Errorf("screenshot has %d pixels of the %s colour; the graph or chart did not render", counts[k], k)
		}
	}
	total := img.Bounds().Dx() * img.Bounds().Dy()
	if counts["white"] > total*97/100 {
		t.Errorf("screenshot is %d%% white: a blank page", counts["white"]*100/total)
	}
}

// between returns s from the first from to the next to after it ("" when
// from is absent).
func between(s, from, to string) string {
	i := strings.Index(s, from)
	if i < 0 {
		return ""
	}
	s = s[i:]
	if j := strings.Index(s, to); j >= 0 {
		return s[:j]
	}
	return s
}

func readPNG(t *testing.T, path string) image.Image {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	img, err := png.Decode(fh)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// colourCounts counts the pixels within 3 per channel of each colour.
func colourCounts(img image.Image, colours map[string][3]uint8) map[string]int {
	out := map[string]int{}
	names := make([]string, 0, len(colours))
	for n := range colours {
		names = append(names, n)
	}
	slices.Sort(names)
	near := func(a uint32, b uint8) bool {
		d := int(a>>8) - int(b)
		return d >= -3 && d <= 3
	}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			for _, n := range names {
				c := colours[n]
				if near(r, c[0]) && near(g, c[1]) && near(bl, c[2]) {
					out[n]++
					break
				}
			}
		}
	}
	return out
}
