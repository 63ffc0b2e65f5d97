package config

import (
	"net"
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
		"redis+cluster://u:secret@h1:7000,h2:7001/0", "rediss+cluster://:secret@[::1]:1,[::1]:2?db=0",
		"redis+cluster://u:secret@h1:1,,h2", "redis+cluster://u:secret@h1:1/2",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		up, err := ParseUpstream(s)
		redacted := RedactURL(s)
		if err == nil && up.Cluster {
			// A cluster has its seeds, the first as Addr, each once,
			// each host:port; and only database 0.
			if len(up.Seeds) == 0 || up.Addr != up.Seeds[0] || up.DB != 0 {
				t.Fatalf("ParseUpstream(%q) = %+v", s, up)
			}
			seen := map[string]bool{}
			for _, a := range up.Seeds {
				if _, _, err := net.SplitHostPort(a); err != nil || seen[a] {
					t.Fatalf("ParseUpstream(%q): seed %q (%v, repeated %t)", s, a, err, seen[a])
				}
				seen[a] = true
			}
		}
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
		for _, a := range up.Seeds {
			if strings.Contains(a, pw) {
				t.Errorf("seed %q shows the password", a)
			}
		}
	})
}
