package api

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

func (s *testServer) deploymentDoc(id string) Deployment {
	s.t.Helper()
	var d Deployment
	if code, b := s.do("GET", "/api/v1/deployments/"+id, token, nil); code != 200 || json.Unmarshal(b, &d) != nil {
		s.t.Fatalf("GET deployment: %d %s", code, b)
	}
	return d
}

// The deployment document says how its instances are and whether the
// project changed since it was created.
func TestDeploymentShowsHealthAndSettingsChanged(t *testing.T) {
	s := newTestServer(t, 0)
	s.do("POST", "/api/v1/projects", token, strings.NewReader(`{"name":"web"}`))
	s.do("PUT", "/api/v1/projects/web/environments/production/variables/GREETING", token, strings.NewReader(`{"value":"one"}`))
	_, b := s.do("POST", "/api/v1/projects/web/deployments", token, tarball(t))
	var d Deployment
	json.Unmarshal(b, &d)
	deadline := time.Now().Add(20 * time.Second)
	for d.Status != "RUNNING" && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		d = s.deploymentDoc(d.ID)
	}
	if d.Status != "RUNNING" || d.SettingsChanged || len(d.ChangedSettings) != 0 {
		t.Fatalf("deployed: %s, settingsChanged %v %v", d.Status, d.SettingsChanged, d.ChangedSettings)
	}
	if d.Health != "healthy" || len(d.Instances) != 1 || d.Instances[0].Health != "healthy" ||
		d.Instances[0].LastProbeAt == nil || d.Instances[0].LastProbeResult != "ok" || d.Instances[0].Status != "running" {
		t.Errorf("health: %q, instances %+v", d.Health, d.Instances)
	}

	s.do("PUT", "/api/v1/projects/web/environments/production/variables/GREETING", token, strings.NewReader(`{"value":"two"}`))
	s.do("PATCH", "/api/v1/projects/web/settings", token, strings.NewReader(`{"memoryBytes":134217728}`))
	d = s.deploymentDoc(d.ID)
	if !d.SettingsChanged || !reflect.DeepEqual(d.ChangedSettings, []string{"memoryBytes", "variables"}) {
		t.Errorf("after changing a variable and a limit: settingsChanged %v %v", d.SettingsChanged, d.ChangedSettings)
	}
}
