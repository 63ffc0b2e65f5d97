package config

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzParseUpstream checks that no input makes the upstream parser panic,
// and that neither its errors nor the redacted form show a password.
func FuzzParseUpstream(f *testing.F) {
	for _, s := range []string{
		"127.0.0.1:6379", "redis://u:secret@h:1/2", "rediss://:secret@[::1]:6380?db=3",
		"unix://u:secret@/run/r.sock?db=1", "/run/redis.sock", "redis://u:sec ret@h:1", "redis://%zz",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		up, err := ParseUpstream(s)
		redacted := RedactURL(s)
		u, perr := url.Parse(s)
		if perr != nil || u.User == nil {
			return
		}
		pw, ok := u.User.Password()
		// Short passwords can appear elsewhere in the text by chance.
		if !ok || len(pw) < 6 || strings.Count(s, pw) != 1 {
			return
		}
		if err != nil && strings.Contains(err.Error(), pw) {
			t.Errorf("error shows the password: %v", err)
		}
		if strings.Contains(redacted, pw) {
			t.Errorf("RedactURL(%q) = %q shows the password", s, redacted)
		}
		if err == nil && strings.Contains(up.String(), pw) {
			t.Errorf("String() shows the password: %s", up)
		}
	})
}
