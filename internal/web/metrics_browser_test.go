package web

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/slipwayhq/slipway/internal/build/buildtest"
	"github.com/slipwayhq/slipway/internal/deploy"
)

// TestBrowserMetrics drives Chromium through the plots and the build
// steps: a build's steps appear and complete while it runs; the project's
// and the deployment's plots over an hour, a day and a week, the range
// switched in place; on a phone and in dark mode. The screenshots
// (metrics-*.png, in the test's artifact directory and in
// /tmp/slipway-screens/) are for looking at.
func TestBrowserMetrics(t *testing.T) {
	builder := buildtest.New()
	builder.LineDelay = 20 * time.Millisecond
	builder.Output = []string{
		"#2 [1/3] FROM docker.io/library/python:3.12-slim", "#2 CACHED",
		"#3 [2/3] COPY . /app", "#3 DONE 0.2s",
		"#4 [3/3] RUN pip install -r requirements.txt",
	}
	for i := 0; i < 10; i++ {
		builder.Output = append(builder.Output, fmt.Sprintf("#4 Collecting package-%d", i))
	}
	builder.Output = append(builder.Output, "#4 DONE 3.1s", "#5 exporting to image", "#5 pushing layers 0.3s done", "#5 DONE 0.3s")
	e := newTestEnv(t, envOptions{builder: builder})
	b := newBrowser(t, e)

	b.open("/login")
	b.do("signing in",
		chromedp.SendKeys(chromedp.CSS("#secret"), testToken),
		chromedp.Click(chromedp.CSS(`form[action="/login"] button[type=submit]`)),
	)
	b.wait("the projects page shows", `location.pathname === "/"`)
	e.project("shop")

	// A build held after its output: its steps show, the last one still
	// running, then all done once it completes.
	d := e.deploy("shop", deploy.CreateRequest{Promote: true, Branch: "main", Message: "Add the checkout"}, "BLOCK")
	b.open("/deployments/" + d.ID)
	b.wait("the steps show while building", `!!document.querySelector('#build-steps li[data-step="5"].bstep-done') && !!document.querySelector('#build-steps li[data-step="1"].bstep-running') && !!document.querySelector('#build-steps li[data-step="2"].bstep-cached')`)
	if got := eval[string](b, `document.querySelector("#build-steps-count").textContent`); got != "4 of 5 done" {
		t.Errorf("while building the count says %q, want 4 of 5 done", got)
	}
	b.shot("metrics-build-steps")
	builder.Release()
	b.wait("every step is done", `document.querySelector("#build-steps-count").textContent === "5 of 5 done"`)
	e.waitStatus(d.ID, deploy.Running)

	seedHistory(t, e.st, d, time.Now())
	checkPlots := func(what string) {
		t.Helper()
		b.wait(what+": five plots", `document.querySelectorAll("#metrics svg.chart").length === 5 && document.querySelectorAll("#metrics path.chart-line").length >= 6`)
	}
	b.open("/projects/shop")
	checkPlots("the project's hour")
	b.shot("metrics-project-hour")
	eval[bool](b, `window.__sameDocument = true`)
	for _, rg := range []string{"day", "week"} {
		b.do("switching to "+rg, chromedp.Click(chromedp.CSS(`#metrics .range-tabs a[data-range="`+rg+`"]`)))
		b.wait("the "+rg+" shows in place", fmt.Sprintf(`document.querySelector('#metrics').getAttribute("data-range") === %q && location.search.includes("range=%s") && window.__sameDocument === true`, rg, rg))
		checkPlots("the project's " + rg)
		b.shotOf("metrics-project-"+rg, "#metrics")
	}
	b.open("/deployments/" + d.ID + "?range=day")
	checkPlots("the deployment's day")
	b.shot("metrics-deployment-day")

	// A phone: nothing wider than the screen, plots one above another.
	b.do("emulating a phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)))
	b.open("/projects/shop")
	checkPlots("the project on a phone")
	if w := eval[int](b, `document.documentElement.scrollWidth`); w > 390 {
		t.Errorf("the project page with plots is %d px wide on a 390 px phone", w)
	}
	if n := eval[int](b, `new Set([].map.call(document.querySelectorAll("#metrics .chart-card"), function (c) { return c.getBoundingClientRect().left })).size`); n != 1 {
		t.Errorf("the plots stand in %d columns on a phone, want 1", n)
	}
	if h := eval[float64](b, `document.querySelector("#chart-requests svg").getBoundingClientRect().height`); h < 120 {
		t.Errorf("a plot is %v px high on a phone: too small to read", h)
	}
	b.shot("metrics-phone-page")
	b.shotOf("metrics-phone", "#metrics")

	// Dark mode: the plots take the page's dark colours.
	dctx, cancel := context.WithTimeout(b.ctx, step)
	defer cancel()
	if _, err := chromedp.Call(dctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}}); err != nil {
		t.Fatalf("emulating dark mode: %v", err)
	}
	b.open("/projects/shop?range=day")
	checkPlots("the project in dark mode on a phone")
	b.shotOf("metrics-phone-dark", "#metrics")
	b.do("back to a laptop screen", chromedp.EmulateViewport(1280, 900))
	b.open("/deployments/" + d.ID)
	checkPlots("the deployment in dark mode")
	if bg := eval[string](b, `getComputedStyle(document.querySelector("#chart-requests")).backgroundColor`); bg != "rgb(22, 27, 34)" {
		t.Errorf("a plot's card is %s in dark mode, want the dark card colour", bg)
	}
	if fill := eval[string](b, `getComputedStyle(document.querySelector("#chart-requests .chart-labels text")).fill`); fill != "rgb(154, 164, 176)" {
		t.Errorf("axis labels are %s in dark mode, want the dark muted colour", fill)
	}
	b.shot("metrics-deployment-dark")
}

// shotOf saves a screenshot of the element sel as name.png.
func (b *browser) shotOf(name, sel string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, step)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.Screenshot(chromedp.CSS(sel)))
	if err != nil {
		b.t.Errorf("screenshot of %s: %v", sel, err)
		return
	}
	for _, d := range b.dirs {
		if err := os.WriteFile(filepath.Join(d, name+".png"), png, 0o644); err != nil {
			b.t.Errorf("saving screenshot: %v", err)
		}
	}
}
