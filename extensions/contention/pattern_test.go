package contention

import (
	"testing"
)

func TestBuiltinPattern(t *testing.T) {
	tests := []struct{ key, want string }{
		{"order:1832:lock", "order:*:lock"},
		{"order:77:lock", "order:*:lock"},
		{"plain", "plain"},
		{"", ""},
		{"42", "*"},
		{"user:550e8400-e29b-41d4-a716-446655440000:cart", "user:*:cart"},
		{"session:9f86d081884c7d65", "session:*"},
		{"tag:deadbeef", "tag:deadbeef"}, // hex-only word without digits stays
		{"blob:abc123", "blob:abc123"},   // too short for hex
		{"user-42:profile", "user-*:profile"},
		{"job_20261122_retry", "job_*_retry"},
		{"/api/v2/items/17", "/api/v2/items/*"},
		{"cache.user.99.name", "cache.user.*.name"},
		{"{user:1001}:cart", "{user:*}:cart"},
		{"a::b", "a::b"},
		{"trailing:", "trailing:"},
		{"x:1:2:3", "x:*:*:*"},
		{"lock:3F2504E0-4F89-11D3-9A0C-0305E82C3301", "lock:*"},
		{"v1", "v1"},
	}
	p, err := NewPatterner(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		if got := p.Pattern(tc.key); got != tc.want {
			t.Errorf("Pattern(%q) = %q, want %q", tc.key, got, tc.want)
		}
	}
}

func TestPatternRules(t *testing.T) {
	p, err := NewPatterner([]PatternRule{
		{Match: `^tenant:([a-z]+):`, Pattern: "tenant:$1:*"},
		{Match: `^legacy`, Pattern: "legacy"},
		{Match: `^legacy:special`, Pattern: "never reached"},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ key, want string }{
		{"tenant:acme:order:5", "tenant:acme:*"},
		{"legacy:special:1", "legacy"}, // first match wins
		{"other:12", "other:*"},        // no rule: built-in grouping
	}
	for _, tc := range tests {
		if got := p.Pattern(tc.key); got != tc.want {
			t.Errorf("Pattern(%q) = %q, want %q", tc.key, got, tc.want)
		}
	}
	if _, err := NewPatterner([]PatternRule{{Match: "(", Pattern: "x"}}); err == nil {
		t.Error("invalid regexp accepted")
	}
}

func BenchmarkPattern(b *testing.B) {
	p, _ := NewPatterner(nil)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_ = p.Pattern("order:lock:shipping")
	}
}
