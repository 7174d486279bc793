package server

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/api"
	"github.com/slipwayhq/slipway/internal/notify"
)

// An app that never becomes healthy, deployed through BuildKit and runc:
// its project's webhook (a stand-in receiver) is told it failed, signed,
// and its log drain (a stand-in syslog server) gets what it printed.
func TestFailedDeploymentNotifiesAndDrains(t *testing.T) {
	h := startServer(t)
	type delivery struct {
		header http.Header
		body   []byte
	}
	got := make(chan delivery, 10)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- delivery{r.Header.Clone(), b}
	}))
	defer recv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	msgs := make(chan string, 1000)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					n, err := r.ReadString(' ')
					if err != nil {
						return
					}
					size, _ := strconv.Atoi(strings.TrimSpace(n))
					b := make([]byte, size)
					if _, err := io.ReadFull(r, b); err != nil {
						return
					}
					msgs <- string(b)
				}
			}()
		}
	}()

	h.call("POST", "/api/v1/projects", api.CreateProjectRequest{Name: "notified"}, nil)
	if code := h.call("PATCH", "/api/v1/projects/notified/settings", map[string]string{"deployWindow": "5s"}, nil); code != 200 {
		t.Fatalf("settings: %d", code)
	}
	var hook api.Webhook
	if code := h.call("POST", "/api/v1/projects/notified/notifications", api.CreateWebhookRequest{URL: recv.URL + "/hook"}, &hook); code != 201 {
		t.Fatalf("adding a webhook: %d", code)
	}
	var dr api.LogDrain
	if code := h.call("POST", "/api/v1/projects/notified/drains", api.CreateLogDrainRequest{URL: "syslog://" + ln.Addr().String()}, &dr); code != 201 {
		t.Fatalf("adding a drain: %d", code)
	}

	d := h.wait(h.upload("notified", app(t, map[string]string{
		"Dockerfile": "FROM golang:1.23\nCMD [\"sh\", \"-c\", \"echo starting up; echo trouble >&2; sleep 3600\"]\n",
	}), "").ID)
	if d.Status != "FAILED" {
		t.Fatalf("deployment %s: %s", d.ID, d.Status)
	}

	var dl delivery
	select {
	case dl = <-got:
	case <-time.After(30 * time.Second):
		t.Fatal("no notification arrived")
	}
	if !notify.Verify([]byte(hook.Secret), dl.body, dl.header.Get(notify.SignatureHeader)) {
		t.Errorf("the signature does not verify")
	}
	var p notify.Payload
	if err := json.Unmarshal(dl.body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Event != notify.DeploymentFailed || p.Project != "notified" || p.Environment != "production" || p.Deployment == nil ||
		p.Deployment.ID != d.ID || p.Deployment.Status != "FAILED" || p.Reason != d.FailureReason || p.Reason == "" ||
		!strings.HasPrefix(p.Deployment.URL, "http://"+d.ID+".slipway.localhost") {
		t.Errorf("payload %s", dl.body)
	}
	// The sender records the delivery once the receiver's response is
	// back, which can be after the receiver has handed the body over.
	var ds []api.WebhookDelivery
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		ds = nil
		h.call("GET", "/api/v1/projects/notified/notifications/"+hook.ID+"/deliveries", nil, &ds)
		if len(ds) != 1 || ds[0].State != "pending" || time.Now().After(end) {
			break
		}
	}
	if len(ds) != 1 || ds[0].Event != notify.DeploymentFailed || ds[0].State != "delivered" {
		t.Errorf("delivery log %+v", ds)
	}

	want := map[string]string{"stdout": "starting up", "stderr": "trouble"}
	deadline := time.After(30 * time.Second)
	for len(want) > 0 {
		select {
		case m := <-msgs:
			for stream, text := range want {
				if strings.HasSuffix(m, "] "+text) && strings.Contains(m, " notified ") && strings.Contains(m, " "+stream+" [slipway@32473 deployment=\""+d.ID+"\"") {
					delete(want, stream)
				}
			}
		case <-deadline:
			t.Fatalf("the drain did not get %v; runtime log:\n%s", want, h.runtimeLog(d.ID))
		}
	}
	var drains []api.LogDrain
	h.call("GET", "/api/v1/projects/notified/drains", nil, &drains)
	if len(drains) != 1 || drains[0].Sent < 2 || drains[0].Dropped != 0 {
		t.Errorf("drains %+v", drains)
	}
}
