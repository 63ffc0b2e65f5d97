package main

import (
	"net/http"
	"os"
	"sort"
	"strings"

	"github.com/exproxy/exproxy/config"
)

// masked replaces a credential wherever the process shows its settings.
const masked = "xxxxx"

// redactArgs returns a copy of a command line with every credential
// masked: the values of secret flags (--upstream-password, --admin-token,
// with "=" or as the next argument), the password of any URL, and, in case
// a credential arrived in a form the first two miss, every literal
// occurrence of the given secrets.
func redactArgs(args, secrets []string) []string {
	secretFlag := map[string]bool{}
	for _, s := range config.Settings() {
		if s.Secret && s.Flag != "" {
			secretFlag[s.Flag] = true
		}
	}
	out := make([]string, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" || a == "--" {
			out[i] = config.RedactURL(a)
			continue
		}
		dashes := 1
		if strings.HasPrefix(a, "--") {
			dashes = 2
		}
		name, val, hasVal := strings.Cut(a[dashes:], "=")
		switch {
		case secretFlag[name] && hasVal:
			out[i] = a[:dashes] + name + "=" + masked
		case secretFlag[name]:
			out[i] = a
			if i+1 < len(args) {
				i++
				out[i] = masked
			}
		case hasVal:
			out[i] = a[:dashes] + name + "=" + config.RedactURL(val)
		default:
			out[i] = a
		}
	}
	// Longest first, so that a secret containing another is masked whole.
	lits := append([]string(nil), secrets...)
	sort.Slice(lits, func(i, j int) bool { return len(lits[i]) > len(lits[j]) })
	for i := range out {
		for _, s := range lits {
			if s != "" {
				out[i] = strings.ReplaceAll(out[i], s, masked)
			}
		}
	}
	return out
}

// cmdlineHandler replaces net/http/pprof's Cmdline, which serves os.Args as
// they are, passwords included: the same format (arguments separated by
// NUL), credentials masked.
func cmdlineHandler(secrets []string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte(strings.Join(redactArgs(os.Args, secrets), "\x00")))
	}
}
