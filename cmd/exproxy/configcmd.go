package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"github.com/exproxy/exproxy/config"
)

const configUsage = `Usage: exproxy config [serve flags]

Prints the configuration serve would run with, given the same flags,
environment and --config file, as YAML with the source of each value
(default, file line, EXPROXY_* variable or flag) as a comment. Passwords are
shown as xxxxx. A bad setting exits 2, as serve does.
`

// runConfig is `exproxy config`: the effective settings, for finding out
// which of file, environment and flags a value came from.
func runConfig(args []string, e env) int {
	fs := flag.NewFlagSet("exproxy config", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	flags := config.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(e.stdout, configUsage)
			return exitOK
		}
		fmt.Fprintf(e.stderr, "exproxy: %v (see exproxy config --help)\n", err)
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "exproxy: unexpected argument %q (see exproxy config --help)\n", fs.Arg(0))
		return exitUsage
	}
	cfg, err := config.Load(flags, e.lookupEnv)
	if err != nil {
		fmt.Fprintf(e.stderr, "exproxy: %v\n", err)
		return exitUsage
	}
	writeConfig(e.stdout, cfg)
	return exitOK
}

// writeConfig writes cfg as YAML in the shape of the configuration file.
func writeConfig(w io.Writer, cfg *config.Config) {
	section := ""
	for _, s := range config.Settings() {
		key, indent := s.Key, ""
		if sec, leaf, ok := strings.Cut(s.Key, "."); ok {
			if sec != section {
				fmt.Fprintf(w, "%s:\n", sec)
				section = sec
			}
			key, indent = leaf, "  "
		} else {
			section = ""
		}
		origin := cfg.Origin(s.Key)
		if s.Key == "contention.patterns" {
			if len(cfg.Contention.Patterns) == 0 {
				fmt.Fprintf(w, "%s%s: []  # %s\n", indent, key, origin)
				continue
			}
			fmt.Fprintf(w, "%s%s:  # %s\n", indent, key, origin)
			for _, r := range cfg.Contention.Patterns {
				fmt.Fprintf(w, "%s  - match: %s\n%s    pattern: %s\n", indent, yamlScalar(r.Match), indent, yamlScalar(r.Pattern))
			}
			continue
		}
		v := s.Value(cfg)
		if s.Secret && v != "" {
			// Commented out: "xxxxx" must not be read back as the password.
			fmt.Fprintf(w, "%s# %s: xxxxx  # %s\n", indent, key, origin)
			continue
		}
		fmt.Fprintf(w, "%s%s: %s  # %s\n", indent, key, yamlScalar(v), origin)
	}
}

var plainScalar = regexp.MustCompile(`^[A-Za-z0-9_./@+-][A-Za-z0-9_./:@+-]*$`)

// yamlScalar quotes what YAML would otherwise misread (empty strings,
// "yes", "#", ": ", leading symbols); a double-quoted YAML string reads
// Go's escapes back.
func yamlScalar(s string) string {
	if plainScalar.MatchString(s) && !strings.HasSuffix(s, ":") {
		return s
	}
	return strconv.Quote(s)
}
