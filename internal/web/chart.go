package web

import (
	"fmt"
	"html/template"
	"math"
	"strconv"
	"strings"
	"time"
)

// A chart is one plot of the metrics history, rendered on the server as
// inline SVG: no script, no external library, and colours from the
// stylesheet (classes), so dark mode follows the page's.
type chart struct {
	ID, Title string
	Unit      unit
	// From is the first point's time; Step the time between points.
	From  time.Time
	Step  time.Duration
	Span  time.Duration // how far back the x axis reaches, for its labels
	Lines []chartLine
}

// chartLine is one series of a chart: one value per point, nil where
// there is none (the line breaks there).
type chartLine struct {
	Name   string
	Class  string // chart-line-<Class>: its colour
	Values []*float64
	Area   bool // fill below the line
}

// unit formats a chart's values.
type unit int

const (
	unitRate    unit = iota // per second
	unitPercent             // a share, 0…1
	unitSeconds
	unitCores
	unitBytes
)

// minTop is the least the y axis reaches, so a quiet series lies flat
// at the bottom rather than filling the chart with noise.
func (u unit) minTop() float64 {
	switch u {
	case unitPercent:
		return 0.05
	case unitSeconds:
		return 0.01
	case unitCores:
		return 0.1
	case unitBytes:
		return 1 << 20
	}
	return 1
}

// scale is the divisor and suffix values of u up to top are shown in.
func (u unit) scale(top float64) (float64, string) {
	switch u {
	case unitPercent:
		return 0.01, "%"
	case unitSeconds:
		if top < 1 {
			return 0.001, " ms"
		}
		return 1, " s"
	case unitBytes:
		div, suffix := 1.0, " B"
		for _, s := range []string{" KiB", " MiB", " GiB", " TiB"} {
			if top < div*1024 {
				break
			}
			div, suffix = div*1024, s
		}
		return div, suffix
	case unitRate:
		if top >= 10000 {
			return 1000, "k"
		}
	}
	return 1, ""
}

// format renders v for people, in the scale fitting v itself.
func (u unit) format(v float64) string {
	div, suffix := u.scale(math.Abs(v))
	s := trimNumber(v / div)
	switch u {
	case unitRate:
		return s + suffix + "/s"
	case unitCores:
		return s + " CPU"
	}
	return s + suffix
}

// trimNumber shows x with at most 3 significant digits (more for large
// whole numbers) and no trailing zeros.
func trimNumber(x float64) string {
	if x == 0 {
		return "0"
	}
	a := math.Abs(x)
	prec := 0
	switch {
	case a < 0.01:
		prec = 4
	case a < 0.1:
		prec = 3
	case a < 1:
		prec = 2
	case a < 10:
		prec = 2
	case a < 100:
		prec = 1
	}
	s := strconv.FormatFloat(x, 'f', prec, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// niceStep is a round step (1, 2, 2.5 or 5 times a power of ten) near x.
func niceStep(x float64) float64 {
	if x <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if x <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// The chart's geometry, in viewBox units. Text scales with the chart,
// which keeps its aspect ratio: about 10 px text on a phone.
const (
	chartW, chartH         = 360.0, 172.0
	padLeft, padRight      = 50.0, 10.0
	padTop, padBottom      = 10.0, 24.0
	plotW, plotH           = chartW - padLeft - padRight, chartH - padTop - padBottom
	plotBottom, plotRight  = padTop + plotH, padLeft + plotW
	chartTicks             = 4 // horizontal grid lines above zero, at most
	chartLabelY            = chartH - 7
	chartFontSize          = "11"
	chartDot               = "2.2"
	chartEmptyText         = "No data yet"
	chartEmptyTextFontSize = "12"
)

// SVG renders the chart. Values are plotted between zero and a round top
// above the highest; points are spread evenly from From to the last.
func (c chart) SVG() template.HTML {
	var b strings.Builder
	n := 0
	top, has := 0.0, false
	for _, l := range c.Lines {
		n = max(n, len(l.Values))
		for _, v := range l.Values {
			if v != nil && !math.IsNaN(*v) && !math.IsInf(*v, 0) {
				top = max(top, *v)
				has = true
			}
		}
	}
	top = max(top, c.Unit.minTop())
	div, _ := c.Unit.scale(top)
	step := niceStep(top / div / chartTicks)
	ticks := int(math.Ceil(top / div / step))
	top = float64(ticks) * step * div

	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 %g %g" role="img" aria-labelledby="%s-t">`, chartW, chartH, c.ID)
	fmt.Fprintf(&b, `<title id="%s-t">%s</title>`, c.ID, template.HTMLEscapeString(c.describe()))
	// y: grid lines and labels.
	b.WriteString(`<g class="chart-grid">`)
	for i := 0; i <= ticks; i++ {
		y := plotBottom - plotH*float64(i)/float64(ticks)
		cls := ""
		if i == 0 {
			cls = ` class="chart-axis"`
		}
		fmt.Fprintf(&b, `<line%s x1="%g" y1="%s" x2="%g" y2="%s"/>`, cls, padLeft, f1(y), plotRight, f1(y))
	}
	b.WriteString(`</g><g class="chart-labels" font-size="` + chartFontSize + `">`)
	for i := 0; i <= ticks; i++ {
		y := plotBottom - plotH*float64(i)/float64(ticks)
		v := float64(i) * step
		_, suffix := c.Unit.scale(top)
		label := "0"
		if i > 0 {
			label = trimNumber(v) + strings.TrimSpace(suffix)
		}
		fmt.Fprintf(&b, `<text x="%g" y="%s" text-anchor="end" dominant-baseline="middle">%s</text>`, padLeft-6, f1(y), template.HTMLEscapeString(label))
	}
	// x: labels at round offsets from now.
	for _, l := range c.xLabels() {
		anchor := "middle"
		switch {
		case l.x <= padLeft+1:
			anchor = "start"
		case l.x >= plotRight-1:
			anchor = "end"
		}
		fmt.Fprintf(&b, `<text x="%s" y="%g" text-anchor="%s">%s</text>`, f1(l.x), chartLabelY, anchor, template.HTMLEscapeString(l.text))
	}
	b.WriteString(`</g>`)
	if !has {
		fmt.Fprintf(&b, `<text class="chart-empty" x="%g" y="%g" text-anchor="middle" font-size="%s">%s</text>`,
			padLeft+plotW/2, padTop+plotH/2, chartEmptyTextFontSize, chartEmptyText)
		b.WriteString(`</svg>`)
		return template.HTML(b.String())
	}
	x := func(i int) float64 {
		if n <= 1 {
			return padLeft + plotW
		}
		return padLeft + plotW*float64(i)/float64(n-1)
	}
	y := func(v float64) float64 { return plotBottom - plotH*min(max(v, 0), top)/top }
	for _, l := range c.Lines {
		for _, seg := range segments(l.Values) {
			if len(seg) == 1 {
				i := seg[0]
				fmt.Fprintf(&b, `<circle class="chart-dot chart-line-%s" cx="%s" cy="%s" r="%s"/>`, l.Class, f1(x(i)), f1(y(*l.Values[i])), chartDot)
				continue
			}
			var d strings.Builder
			for k, i := range seg {
				cmd := "L"
				if k == 0 {
					cmd = "M"
				}
				fmt.Fprintf(&d, "%s%s %s", cmd, f1(x(i)), f1(y(*l.Values[i])))
			}
			if l.Area {
				fmt.Fprintf(&b, `<path class="chart-area chart-line-%s" d="%sL%s %sL%s %sZ"/>`, l.Class, d.String(),
					f1(x(seg[len(seg)-1])), f1(plotBottom), f1(x(seg[0])), f1(plotBottom))
			}
			fmt.Fprintf(&b, `<path class="chart-line chart-line-%s" d="%s"/>`, l.Class, d.String())
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// segments splits the indexes of values into runs without a nil.
func segments(values []*float64) [][]int {
	var out [][]int
	var cur []int
	for i, v := range values {
		if v == nil || math.IsNaN(*v) || math.IsInf(*v, 0) {
			if cur != nil {
				out = append(out, cur)
				cur = nil
			}
			continue
		}
		cur = append(cur, i)
	}
	if cur != nil {
		out = append(out, cur)
	}
	return out
}

func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

type xLabel struct {
	x    float64
	text string
}

// xLabels are the x axis' labels: "now" at the right and round offsets
// before it (every 15 minutes over an hour, 6 hours over a day, a day
// over a week).
func (c chart) xLabels() []xLabel {
	span := c.Span
	if span <= 0 {
		return nil
	}
	every, unitName, unitLen := 15*time.Minute, "m", time.Minute
	switch {
	case span > 2*24*time.Hour:
		every, unitName, unitLen = 24*time.Hour, "d", 24*time.Hour
	case span > 2*time.Hour:
		every, unitName, unitLen = 6*time.Hour, "h", time.Hour
	}
	var out []xLabel
	for ago := time.Duration(0); ago <= span; ago += every {
		text := "now"
		if ago > 0 {
			text = "−" + strconv.Itoa(int(ago/unitLen)) + unitName
		}
		out = append(out, xLabel{x: plotRight - plotW*float64(ago)/float64(span), text: text})
	}
	return out
}

// describe says what the chart shows, for screen readers and as a
// tooltip.
func (c chart) describe() string {
	var parts []string
	for _, l := range c.Lines {
		last, peak, ok := lastAndPeak(l.Values)
		if !ok {
			continue
		}
		name := c.Title
		if len(c.Lines) > 1 {
			name = l.Name
		}
		parts = append(parts, fmt.Sprintf("%s latest %s, peak %s", name, c.Unit.format(last), c.Unit.format(peak)))
	}
	if len(parts) == 0 {
		return c.Title + ": no data yet"
	}
	return strings.Join(parts, "; ")
}

// lastAndPeak returns the last value and the highest of values; false
// when there is none.
func lastAndPeak(values []*float64) (last, peak float64, ok bool) {
	for _, v := range values {
		if v == nil || math.IsNaN(*v) || math.IsInf(*v, 0) {
			continue
		}
		if !ok || *v > peak {
			peak = *v
		}
		last, ok = *v, true
	}
	return last, peak, ok
}
