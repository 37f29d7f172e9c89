package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"
)

// demoEvent is one generated record: its Kafka key, JSON value and time.
type demoEvent struct {
	key   []byte
	value []byte
	time  time.Time
	// malformed events are expected to become dead letters.
	malformed bool
}

// generator makes the demo's mixed, realistic stream: card transactions
// from DE, FR, US, IN and BR (pii and financial columns) and clinical
// events from DE, FR and US (phi columns), with about 0.5% malformed
// records. The same seed gives the same stream.
type generator struct {
	rng   *rand.Rand
	start time.Time
	step  time.Duration
	n     int
}

func newGenerator(seed uint64, total int) *generator {
	if total < 1 {
		total = 1
	}
	start := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	return &generator{
		rng:   rand.New(rand.NewPCG(seed, seed^0x5eed)),
		start: start,
		step:  24 * time.Hour / time.Duration(total),
	}
}

var (
	cardCountries = []weighted{{"DE", 22}, {"FR", 14}, {"US", 40}, {"IN", 12}, {"BR", 12}}
	clinCountries = []weighted{{"DE", 40}, {"FR", 20}, {"US", 40}}
	currencies    = map[string]string{"DE": "EUR", "FR": "EUR", "US": "USD", "IN": "INR", "BR": "BRL"}
	mccs          = []int{4111, 4511, 5411, 5541, 5812, 5912, 5999, 6011, 7011, 7995}
)

type weighted struct {
	v string
	w int
}

func pick(rng *rand.Rand, ws []weighted) string {
	total := 0
	for _, w := range ws {
		total += w.w
	}
	x := rng.IntN(total)
	for _, w := range ws {
		if x < w.w {
			return w.v
		}
		x -= w.w
	}
	return ws[len(ws)-1].v
}

func (g *generator) next() demoEvent {
	i := g.n
	g.n++
	ts := g.start.Add(time.Duration(i) * g.step)
	id := strconv.Itoa(i)
	if g.rng.IntN(1000) < 5 {
		return g.malformed(id, ts)
	}
	var b []byte
	var key string
	if g.rng.IntN(100) < 75 {
		c := pick(g.rng, cardCountries)
		key = fmt.Sprintf("u-%s-%05d", c, g.rng.IntN(20000))
		amount := math.Round(math.Exp(3.6+1.1*g.rng.NormFloat64())*100) / 100
		b = fmt.Appendf(nil, `{"event_id":"c-%s","kind":"card","country":%q,"ts":%q,"user_id":%q,"amount":%s,"currency":%q,"merchant":{"mcc":%d,"country":%q}}`,
			id, c, ts.Format(time.RFC3339Nano), key, strconv.FormatFloat(amount, 'f', 2, 64), currencies[c], mccs[g.rng.IntN(len(mccs))], c)
	} else {
		c := pick(g.rng, clinCountries)
		key = fmt.Sprintf("p-%s-%05d", c, g.rng.IntN(5000))
		hr := optional(g.rng, 75+12*g.rng.NormFloat64(), 10)
		glu := optional(g.rng, 105+25*g.rng.NormFloat64(), 30)
		b = fmt.Appendf(nil, `{"event_id":"h-%s","kind":"clinical","country":%q,"ts":%q,"patient_id":%q,"heart_rate":%s,"lab_glucose":%s}`,
			id, c, ts.Format(time.RFC3339Nano), key, hr, glu)
	}
	return demoEvent{key: []byte(key), value: b, time: ts}
}

// optional renders v with one decimal, or null pctNull percent of the time.
func optional(rng *rand.Rand, v float64, pctNull int) string {
	if rng.IntN(100) < pctNull {
		return "null"
	}
	return strconv.FormatFloat(math.Round(v*10)/10, 'f', 1, 64)
}

// malformed returns one of the ways real producers get records wrong.
func (g *generator) malformed(id string, ts time.Time) demoEvent {
	var b string
	switch g.rng.IntN(4) {
	case 0: // truncated in flight
		b = fmt.Sprintf(`{"event_id":"c-%s","kind":"card","country":"DE","ts":"%s","amount":12`, id, ts.Format(time.RFC3339))
	case 1: // a locale-formatted number
		b = fmt.Sprintf(`{"event_id":"c-%s","kind":"card","country":"FR","ts":"%s","user_id":"u-FR-1","amount":"12,50"}`, id, ts.Format(time.RFC3339))
	case 2: // the residency attribute is missing
		b = fmt.Sprintf(`{"event_id":"h-%s","kind":"clinical","ts":"%s","patient_id":"p-DE-7","heart_rate":80}`, id, ts.Format(time.RFC3339))
	default: // not a timestamp
		b = fmt.Sprintf(`{"event_id":"c-%s","kind":"card","country":"US","ts":"yesterday","user_id":"u-US-1","amount":3.5}`, id)
	}
	return demoEvent{key: []byte("bad-" + id), value: []byte(b), time: ts, malformed: true}
}
