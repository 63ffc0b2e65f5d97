package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Error is a bad setting. Its text is one line that names the setting the
// way the operator gave it (flag, environment variable or file line) and
// says what is wrong; it never contains a password.
type Error struct {
	Key    string // the setting's YAML key; "" when the error is not about one setting
	Origin string // "--listen", "EXPROXY_LISTEN", "exproxy.yaml line 3", "default"
	Msg    string
}

func (e *Error) Error() string {
	switch {
	case e.Key == "":
		return e.Origin + ": " + e.Msg
	case strings.HasPrefix(e.Origin, "-") || strings.HasPrefix(e.Origin, "EXPROXY_"):
		return "invalid " + e.Origin + ": " + e.Msg
	case e.Origin == "" || e.Origin == "default":
		return "invalid " + e.Key + ": " + e.Msg
	}
	return "invalid " + e.Key + " (" + e.Origin + "): " + e.Msg
}

func (c *Config) settingError(key, msg string) *Error {
	return &Error{Key: key, Origin: c.Origin(key), Msg: msg}
}

// Flags records the settings given on a command line, in order, so that
// Load can apply them last, above the file and the environment.
type Flags struct {
	// ConfigPath is the value of --config ("" when not given).
	ConfigPath string
	given      []given
}

type given struct {
	s     Setting
	value string
}

type flagValue struct {
	f *Flags
	s Setting
}

func (v *flagValue) String() string { return "" }

func (v *flagValue) Set(x string) error {
	v.f.given = append(v.f.given, given{v.s, x})
	return nil
}

// IsBoolFlag lets "--contention-abort-events" stand for "=true".
func (v *flagValue) IsBoolFlag() bool { return v.s.Type == "bool" }

// RegisterFlags defines --config and one flag per setting on fs. The values
// are only recorded here; Load parses them, so that a bad value is reported
// like any other bad setting.
func RegisterFlags(fs *flag.FlagSet) *Flags {
	f := &Flags{}
	fs.StringVar(&f.ConfigPath, "config", "", "YAML configuration file (env "+ConfigEnv+")")
	for _, s := range settings {
		if s.Flag == "" {
			continue
		}
		fs.Var(&flagValue{f, s}, s.Flag, s.Usage)
	}
	return f
}

// Load builds the configuration from, in increasing precedence: the
// defaults, the YAML file (flags.ConfigPath, else $EXPROXY_CONFIG), the
// environment variables and the flags; then validates it. getenv is
// os.LookupEnv outside tests; flags may be nil.
func Load(flags *Flags, getenv func(string) (string, bool)) (*Config, error) {
	if flags == nil {
		flags = &Flags{}
	}
	if getenv == nil {
		getenv = func(string) (string, bool) { return "", false }
	}
	c := Default()
	path := flags.ConfigPath
	if path == "" {
		path, _ = getenv(ConfigEnv)
	}
	if path != "" {
		if err := c.LoadFile(path); err != nil {
			return nil, err
		}
	}
	for _, s := range settings {
		if s.Env == "" {
			continue
		}
		if v, ok := getenv(s.Env); ok {
			if err := c.apply(s, v, s.Env); err != nil {
				return nil, err
			}
		}
	}
	for _, g := range flags.given {
		if err := c.apply(g.s, g.value, "--"+g.s.Flag); err != nil {
			return nil, err
		}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Config) apply(s Setting, v, origin string) error {
	c.setOrigin(s.Key, origin)
	if err := s.set(c, v); err != nil {
		msg := err.Error()
		if s.Secret {
			msg = "bad value"
		}
		return c.settingError(s.Key, msg)
	}
	return nil
}

// LoadFile applies the settings in a YAML file on top of c. Keys that are
// not settings are errors, so a typo cannot silently leave a default in
// force.
func (c *Config) LoadFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return &Error{Origin: "config file", Msg: fmt.Errorf("cannot read: %w", err).Error()}
	}
	return c.loadYAML(path, data)
}

func (c *Config) loadYAML(name string, data []byte) error {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file changes nothing
		}
		return &Error{Origin: "config file " + name, Msg: oneLine(err.Error())}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil
	}
	if root.Kind != yaml.MappingNode {
		return &Error{Origin: fmt.Sprintf("config file %s line %d", name, root.Line), Msg: "expected a mapping of settings"}
	}
	return c.walk(name, "", root)
}

// walk applies one mapping of the file; prefix is the section's key path.
func (c *Config) walk(name, prefix string, m *yaml.Node) error {
	seen := make(map[string]bool)
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		key := prefix + k.Value
		where := fmt.Sprintf("%s line %d", name, k.Line)
		if seen[key] {
			return &Error{Origin: "config file " + where, Msg: fmt.Sprintf("setting %q given twice", key)}
		}
		seen[key] = true
		if key == "contention.patterns" {
			c.setOrigin(key, where)
			if err := c.loadPatterns(name, v); err != nil {
				return err
			}
			continue
		}
		if s, ok := Lookup(key); ok {
			if v.Kind != yaml.ScalarNode {
				c.setOrigin(key, where)
				return c.settingError(key, "expected a single value")
			}
			val := v.Value
			if v.Tag == "!!null" {
				val = ""
			}
			if err := c.apply(s, val, where); err != nil {
				return err
			}
			continue
		}
		if isSection(key) {
			if v.Kind != yaml.MappingNode {
				return &Error{Origin: "config file " + where, Msg: fmt.Sprintf("%q is a section: expected a mapping", key)}
			}
			if err := c.walk(name, key+".", v); err != nil {
				return err
			}
			continue
		}
		return &Error{Origin: "config file " + where, Msg: fmt.Sprintf("unknown setting %q%s", key, suggest(key))}
	}
	return nil
}

func (c *Config) loadPatterns(name string, v *yaml.Node) error {
	c.Contention.Patterns = nil
	if v.Tag == "!!null" {
		return nil
	}
	if v.Kind != yaml.SequenceNode {
		return c.settingError("contention.patterns", "expected a list of {match, pattern}")
	}
	for _, item := range v.Content {
		where := fmt.Sprintf("config file %s line %d", name, item.Line)
		if item.Kind != yaml.MappingNode {
			return &Error{Origin: where, Msg: "contention.patterns: expected {match: REGEX, pattern: NAME}"}
		}
		var r PatternRule
		for i := 0; i+1 < len(item.Content); i += 2 {
			k, val := item.Content[i], item.Content[i+1]
			if val.Kind != yaml.ScalarNode {
				return &Error{Origin: where, Msg: fmt.Sprintf("contention.patterns: %s: expected a single value", k.Value)}
			}
			switch k.Value {
			case "match":
				r.Match = val.Value
			case "pattern":
				r.Pattern = val.Value
			default:
				return &Error{Origin: where, Msg: fmt.Sprintf("contention.patterns: unknown field %q (use match and pattern)", k.Value)}
			}
		}
		c.Contention.Patterns = append(c.Contention.Patterns, r)
	}
	return nil
}

func isSection(key string) bool {
	for _, s := range settings {
		if strings.HasPrefix(s.Key, key+".") {
			return true
		}
	}
	return false
}

// suggest names the setting a misspelt or misplaced key probably meant.
func suggest(key string) string {
	last := key[strings.LastIndex(key, ".")+1:]
	var hits []string
	for _, s := range settings {
		if s.Key == key {
			continue
		}
		if strings.HasSuffix(s.Key, "."+last) || s.Key == last || s.Flag == last {
			hits = append(hits, s.Key)
		}
	}
	if len(hits) == 0 {
		return ""
	}
	sort.Strings(hits)
	return fmt.Sprintf(" (did you mean %s?)", strings.Join(hits, " or "))
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// WriteFlagUsage writes one entry per flag: its name, value syntax, meaning,
// default and environment variable. It is the flag part of --help.
func WriteFlagUsage(w io.Writer) {
	fmt.Fprintf(w, "  --config FILE\n        YAML configuration file (env %s)\n", ConfigEnv)
	for _, s := range settings {
		if s.Flag == "" {
			continue
		}
		arg := " " + strings.ToUpper(s.Type)
		if s.Type == "bool" {
			arg = "[=BOOL]"
		}
		def := s.Default()
		if s.Secret || def == "" {
			def = "none"
		} else {
			def = strconvQuote(def)
		}
		fmt.Fprintf(w, "  --%s%s\n        %s (default %s; env %s)\n", s.Flag, arg, s.Usage, def, s.Env)
	}
}

// strconvQuote quotes a default only when it needs it, so "10s" reads as 10s.
func strconvQuote(s string) string {
	if strings.ContainsAny(s, " \"'") {
		return fmt.Sprintf("%q", s)
	}
	return s
}
