package api

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/slipwayhq/slipway/internal/build/plan"
)

// TestDetectedOfReadsEveryFact keeps DetectedOf in step with the plan's
// JSON document: every fact a plan can hold comes through.
func TestDetectedOfReadsEveryFact(t *testing.T) {
	p := plan.Plan{Provider: "node", Root: "apps/web", DetectedStartCommand: "npm start", StartCommand: "node x", Warnings: []string{"w"}}
	facts := reflect.ValueOf(&p.Facts).Elem()
	for i := 0; i < facts.NumField(); i++ {
		name := facts.Type().Field(i).Name
		facts.Field(i).Set(reflect.ValueOf(&plan.Fact{Value: name, File: "f", Line: i + 1, Reason: "r"}))
	}
	b, _ := json.Marshal(p)
	d := DetectedOf(string(b))
	if d == nil || d.Provider != "node" || d.Root != "apps/web" || d.StartCommand != "npm start" || len(d.Warnings) != 1 {
		t.Fatalf("%+v", d)
	}
	got := reflect.ValueOf(d).Elem()
	for i := 0; i < facts.NumField(); i++ {
		name := facts.Type().Field(i).Name
		f, ok := got.FieldByName(name).Interface().(*Fact)
		if !ok || f == nil || f.Value != name || f.Line != i+1 {
			t.Errorf("fact %s: %+v", name, f)
		}
	}
	if DetectedOf("") != nil || DetectedOf("{") != nil {
		t.Error("no plan, yet facts")
	}
}
