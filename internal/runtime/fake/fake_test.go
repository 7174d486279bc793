package fake_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/runtime/drivertest"
	"github.com/slipwayhq/slipway/internal/runtime/fake"
)

func TestConformance(t *testing.T) {
	m := fake.NewMachine()
	drivertest.Run(t, drivertest.Harness{
		New:   func(t *testing.T) runtime.Driver { return fake.New(fake.Config{Machine: m}) },
		Image: "127.0.0.1:7300/anything@sha256:0000000000000000000000000000000000000000000000000000000000000000",
	})
}

func TestCrashIsNoticedAtOnce(t *testing.T) {
	d := fake.New(fake.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), drivertest.Timeout)
	defer cancel()
	h, err := d.Start(ctx, runtime.Spec{ID: "crashy"})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(ctx, h)
	drivertest.WaitHTTP(t, d, h, 3000)
	go d.Crash("crashy", 137)
	st, err := d.Wait(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	if st.Running || st.ExitCode != 137 || st.ExitedAt.IsZero() {
		t.Errorf("status after Crash = %+v", st)
	}
	if _, _, err := drivertest.Get(ctx, d, h, 3000, "/"); err == nil {
		t.Errorf("GET / answered after Crash")
	}
	if err := d.Crash("nobody", 1); err == nil {
		t.Errorf("Crash of an unknown instance succeeded")
	}
}

func TestNeverAnswer(t *testing.T) {
	d := fake.New(fake.Config{NeverAnswer: func(s runtime.Spec) bool { return s.ID == "mute" }})
	ctx, cancel := context.WithTimeout(context.Background(), drivertest.Timeout)
	defer cancel()
	mute, err := d.Start(ctx, runtime.Spec{ID: "mute"})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(ctx, mute)
	// The connection is accepted, but no answer comes before the deadline.
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	if _, _, err := drivertest.Get(short, d, mute, 3000, "/"); err == nil {
		t.Errorf("an instance that never answers answered")
	}
	if err := d.SetNeverAnswer("mute", false); err != nil {
		t.Fatal(err)
	}
	if code, _, err := drivertest.Get(ctx, d, mute, 3000, "/"); err != nil || code != http.StatusOK {
		t.Errorf("GET / after SetNeverAnswer(false) = %d, %v", code, err)
	}
	if err := d.SetNeverAnswer("mute", true); err != nil {
		t.Fatal(err)
	}
	short2, cancelShort2 := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort2()
	if _, _, err := drivertest.Get(short2, d, mute, 3000, "/"); err == nil {
		t.Errorf("an instance set never to answer answered")
	}
}

func TestStartError(t *testing.T) {
	d := fake.New(fake.Config{StartError: func(runtime.Spec) error { return errBoom }})
	if _, err := d.Start(context.Background(), runtime.Spec{ID: "x"}); err != errBoom {
		t.Errorf("Start = %v, want %v", err, errBoom)
	}
	if _, err := d.Inspect(context.Background(), &runtime.Handle{ID: "x"}); err == nil {
		t.Errorf("a failed Start left an instance behind")
	}
}

var errBoom = errorString("boom")

type errorString string

func (e errorString) Error() string { return string(e) }
