package secrets

import "testing"

func TestHint(t *testing.T) {
	for raw, want := range map[string]string{
		"https://hooks.slack.com/services/T0/B0/XYZsecret1234": "https://hooks.slack.com/…1234",
		"https://user:pw@logs.example.com/in":                  "https://…@logs.example.com/…",
		"https://example.com":                                  "https://example.com",
		"https://example.com/":                                 "https://example.com",
		"syslog+tls://logs.example.com:6514":                   "syslog+tls://logs.example.com:6514",
		"not a url":                                            "…",
	} {
		if got := Hint(raw); got != want {
			t.Errorf("Hint(%q) = %q, want %q", raw, got, want)
		}
	}
}
