package cluster

import "fmt"

// Replies are read as go-redis's Do decodes them: arrays as []any, RESP3
// maps as map[any]any and RESP2 maps as flat key/value arrays, integers as
// int64, strings as string, null as nil. Topology and COMMAND replies come
// in both protocols, so every reader here takes both.

func array(v any) ([]any, bool) {
	a, ok := v.([]any)
	return a, ok
}

// pairs calls fn for each key/value of a map reply, in either protocol.
func pairs(v any, fn func(k string, v any) error) error {
	switch m := v.(type) {
	case []any:
		if len(m)%2 != 0 {
			return fmt.Errorf("map of %d elements (odd)", len(m))
		}
		for i := 0; i < len(m); i += 2 {
			k, ok := m[i].(string)
			if !ok {
				return fmt.Errorf("map key %T, want a string", m[i])
			}
			if err := fn(k, m[i+1]); err != nil {
				return err
			}
		}
		return nil
	case map[any]any:
		for k, v := range m {
			ks, ok := k.(string)
			if !ok {
				return fmt.Errorf("map key %T, want a string", k)
			}
			if err := fn(ks, v); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("%T, want a map", v)
}

func str(v any) (string, bool) {
	s, ok := v.(string)
	return s, ok
}

func integer(v any) (int64, bool) {
	n, ok := v.(int64)
	return n, ok
}

// stringArray reads an array (or set) of strings.
func stringArray(v any) ([]string, bool) {
	a, ok := array(v)
	if !ok {
		return nil, false
	}
	out := make([]string, len(a))
	for i, x := range a {
		if out[i], ok = str(x); !ok {
			return nil, false
		}
	}
	return out, true
}
