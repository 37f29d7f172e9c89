package sim

import (
	"fmt"
	"io"
	"math"
	"strings"
)

// Series is one line of a chart.
type Series struct {
	Name   string
	Values []float64
}

var palette = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"}

// WriteSVG writes a line chart of series over x from 0 to xMax (hours),
// each series with one value per equal step.
func WriteSVG(w io.Writer, title, yLabel string, xMax float64, series []Series) error {
	const W, H, L, R, T, B = 900.0, 420.0, 70.0, 190.0, 40.0, 50.0
	pw, ph := W-L-R, H-T-B
	yMax := 0.0
	for _, s := range series {
		for _, v := range s.Values {
			yMax = math.Max(yMax, v)
		}
	}
	if yMax <= 0 {
		yMax = 1
	}
	yMax = niceCeil(yMax)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%g" height="%g" viewBox="0 0 %g %g" font-family="sans-serif" font-size="12">`+"\n", W, H, W, H)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="%g" y="22" font-size="15">%s</text>`+"\n", L, esc(title))
	for i := 0; i <= 5; i++ {
		y := T + ph - ph*float64(i)/5
		fmt.Fprintf(&b, `<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#ddd"/><text x="%g" y="%.1f" text-anchor="end">%s</text>`+"\n",
			L, y, L+pw, y, L-6, y+4, trim(yMax*float64(i)/5))
	}
	for i := 0; i <= 6; i++ {
		x := L + pw*float64(i)/6
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%g" x2="%.1f" y2="%g" stroke="#ddd"/><text x="%.1f" y="%g" text-anchor="middle">%s</text>`+"\n",
			x, T, x, T+ph, x, T+ph+16, trim(xMax*float64(i)/6))
	}
	fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="middle">hours</text>`+"\n", L+pw/2, H-10)
	fmt.Fprintf(&b, `<text transform="translate(16 %g) rotate(-90)" text-anchor="middle">%s</text>`+"\n", T+ph/2, esc(yLabel))
	for k, s := range series {
		if len(s.Values) == 0 {
			continue
		}
		c := palette[k%len(palette)]
		var pts strings.Builder
		for i, v := range s.Values {
			x := L + pw*(float64(i)+0.5)/float64(len(s.Values))
			y := T + ph - ph*v/yMax
			fmt.Fprintf(&pts, "%.1f,%.1f ", x, y)
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`+"\n", c, strings.TrimSpace(pts.String()))
		ly := T + 14*float64(k)
		fmt.Fprintf(&b, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="%s" stroke-width="3"/><text x="%g" y="%g">%s</text>`+"\n",
			L+pw+10, ly, L+pw+28, ly, c, L+pw+32, ly+4, esc(s.Name))
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func trim(v float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".")
}

func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
