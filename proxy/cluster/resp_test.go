package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strconv"
)

// decodeRESP decodes one RESP2/RESP3 reply into the values go-redis's Do
// returns ([]any, map[any]any, string, int64, nil, ...), so parsers can
// be fuzzed with bytes. Only for tests: no limits beyond the input's size.
func decodeRESP(b []byte) (any, []byte, error) {
	line, rest, ok := bytes.Cut(b, []byte("\r\n"))
	if !ok || len(line) == 0 {
		return nil, nil, errors.New("no line")
	}
	body := string(line[1:])
	switch line[0] {
	case '+':
		return body, rest, nil
	case '-':
		return errors.New(body), rest, nil
	case ':':
		n, err := strconv.ParseInt(body, 10, 64)
		return n, rest, err
	case '_':
		return nil, rest, nil
	case '#':
		return body == "t", rest, nil
	case ',':
		f, err := strconv.ParseFloat(body, 64)
		return f, rest, err
	case '$', '=':
		n, err := strconv.Atoi(body)
		if err != nil {
			return nil, nil, err
		}
		if n < 0 {
			return nil, rest, nil
		}
		if len(rest) < n+2 {
			return nil, nil, errors.New("short bulk")
		}
		s := string(rest[:n])
		if line[0] == '=' && len(s) >= 4 {
			s = s[4:]
		}
		return s, rest[n+2:], nil
	case '*', '~', '>', '%':
		n, err := strconv.Atoi(body)
		if err != nil {
			return nil, nil, err
		}
		if n < 0 {
			return nil, rest, nil
		}
		if n > len(rest) {
			return nil, nil, errors.New("count beyond input")
		}
		if line[0] == '%' {
			m := map[any]any{}
			for range n {
				var k, v any
				if k, rest, err = decodeRESP(rest); err != nil {
					return nil, nil, err
				}
				if v, rest, err = decodeRESP(rest); err != nil {
					return nil, nil, err
				}
				switch k.(type) {
				case string, int64, bool, float64, nil:
					m[k] = v
				default:
					return nil, nil, errors.New("unhashable map key")
				}
			}
			return m, rest, nil
		}
		a := make([]any, n)
		for i := range a {
			if a[i], rest, err = decodeRESP(rest); err != nil {
				return nil, nil, err
			}
		}
		return a, rest, nil
	}
	return nil, nil, fmt.Errorf("type %q", line[0])
}

// encodeRESP is the inverse for building seeds: strings as bulk strings,
// maps as RESP3 maps (keys sorted, so seeds are stable).
func encodeRESP(v any) []byte {
	var b bytes.Buffer
	var enc func(v any)
	enc = func(v any) {
		switch x := v.(type) {
		case nil:
			b.WriteString("_\r\n")
		case string:
			fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(x), x)
		case int:
			fmt.Fprintf(&b, ":%d\r\n", x)
		case int64:
			fmt.Fprintf(&b, ":%d\r\n", x)
		case []any:
			fmt.Fprintf(&b, "*%d\r\n", len(x))
			for _, e := range x {
				enc(e)
			}
		case map[any]any:
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k.(string))
			}
			sort.Strings(keys)
			fmt.Fprintf(&b, "%%%d\r\n", len(x))
			for _, k := range keys {
				enc(k)
				enc(x[k])
			}
		default:
			panic(fmt.Sprintf("encodeRESP: %T", v))
		}
	}
	enc(v)
	return b.Bytes()
}
