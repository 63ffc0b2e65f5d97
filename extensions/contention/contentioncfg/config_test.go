package contentioncfg

import (
	"errors"
	"testing"
	"time"
)

// TestValidate: each setting's first problem is reported with its key and
// the words config shows the operator (config/config_test.go checks them
// as the operator sees them, with the setting's origin).
func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*Config)
		key     string // "" when valid
		message string
	}{
		{"defaults", func(*Config) {}, "", ""},
		{"threshold 0 logs by activity", func(c *Config) { c.Threshold = 0 }, "", ""},
		{"tiny window", func(c *Config) { c.Window = time.Millisecond }, "contention.window", "must be at least 100ms, got 1ms"},
		{"no top", func(c *Config) { c.Top = 0 }, "contention.top", "must be at least 1, got 0"},
		{"negative threshold", func(c *Config) { c.Threshold = -1 }, "contention.threshold", "must not be negative, got -1"},
		{"no keys", func(c *Config) { c.MaxKeys = 0 }, "contention.max-keys", "must be at least 1, got 0"},
		{"no patterns", func(c *Config) { c.MaxPatterns = -3 }, "contention.max-patterns", "must be at least 1, got -3"},
		{"no clients", func(c *Config) { c.MaxClients = 0 }, "contention.max-clients", "must be at least 1, got 0"},
		{"sample rate above 1", func(c *Config) { c.AbortSampleRate = 2 }, "contention.abort-sample-rate", "must be greater than 0 and at most 1, got 2"},
		{"sample rate 0", func(c *Config) { c.AbortSampleRate = 0 }, "contention.abort-sample-rate", "must be greater than 0 and at most 1, got 0"},
		{"rate limit 0", func(c *Config) { c.AbortRateLimit = 0 }, "contention.abort-rate-limit", "must be greater than 0, got 0"},
		{"bad regexp", func(c *Config) { c.Patterns = []PatternRule{{Match: "a", Pattern: "a"}, {Match: "(", Pattern: "x"}} },
			"contention.patterns", "rule 2: match \"(\" does not compile: error parsing regexp: missing closing ): `(`"},
		{"empty match", func(c *Config) { c.Patterns = []PatternRule{{Pattern: "x"}} }, "contention.patterns", `rule 1: match "" does not compile`},
		{"empty pattern", func(c *Config) { c.Patterns = []PatternRule{{Match: "x"}} }, "contention.patterns", "rule 1: pattern is empty"},
		{"the first problem wins", func(c *Config) { c.Top, c.MaxKeys = 0, 0 }, "contention.top", "must be at least 1, got 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.edit(&c)
			err := c.Validate()
			if tt.key == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var se *SettingError
			if !errors.As(err, &se) {
				t.Fatalf("Validate() = %v (%T), want a *SettingError", err, err)
			}
			if key, msg := se.Setting(); key != tt.key || msg != tt.message {
				t.Errorf("Validate() = %q, %q; want %q, %q", key, msg, tt.key, tt.message)
			}
		})
	}
	if err := (Config{}).Validate(); err == nil {
		t.Error("the zero Config validated: a tracker would tick every 0s")
	}
}

func TestPatternRuleValid(t *testing.T) {
	for _, r := range []struct {
		rule PatternRule
		ok   bool
	}{
		{PatternRule{Match: `^user:(\d+)`, Pattern: "user:$1"}, true},
		{PatternRule{Match: "(", Pattern: "x"}, false},
		{PatternRule{Match: "", Pattern: "x"}, false},
		{PatternRule{Match: "x", Pattern: ""}, false},
	} {
		if got := r.rule.Valid(); got != r.ok {
			t.Errorf("%+v.Valid() = %v, want %v", r.rule, got, r.ok)
		}
	}
}
