package cluster

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

func TestCRC16(t *testing.T) {
	// The XMODEM check value, and the example of the cluster specification.
	if got := crc16([]byte("123456789")); got != 0x31C3 {
		t.Fatalf("crc16(123456789) = %#x, want 0x31c3", got)
	}
}

func TestSlot(t *testing.T) {
	tests := []struct {
		key  string
		want int
	}{
		{"", 0},
		{"foo", 12182},
		{"bar", 5061},
		{"{user1000}.following", SlotString("user1000")},
		{"{user1000}.followers", SlotString("user1000")},
		{"foo{}{bar}", SlotString("foo{}{bar}")}, // empty first tag: the whole key
		{"foo{{bar}}zap", SlotString("{bar")},    // the first '{' and the first '}' after it
		{"foo{bar}{zap}", SlotString("bar")},
		{"{", SlotString("{")},
		{"}{", SlotString("}{")},
		{"a{b", SlotString("a{b")},
		{"{a}", SlotString("a")},
	}
	for _, tt := range tests {
		if got := Slot([]byte(tt.key)); got != tt.want {
			t.Errorf("Slot(%q) = %d, want %d", tt.key, got, tt.want)
		}
		if got := SlotString(tt.key); got != tt.want {
			t.Errorf("SlotString(%q) = %d, want %d", tt.key, got, tt.want)
		}
	}
}

// refSlot is the cluster specification's keyHashSlot, its C loops
// written out, with a bit-by-bit CRC16.
func refSlot(key []byte) int {
	s, e := 0, 0
	for s = 0; s < len(key); s++ {
		if key[s] == '{' {
			break
		}
	}
	if s < len(key) {
		for e = s + 1; e < len(key); e++ {
			if key[e] == '}' {
				break
			}
		}
		if e < len(key) && e != s+1 {
			key = key[s+1 : e]
		}
	}
	var crc uint16
	for _, c := range key {
		crc ^= uint16(c) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc % SlotCount)
}

func FuzzSlot(f *testing.F) {
	for _, s := range []string{"", "foo", "{user}.x", "a{}b{c}", "{{}}", "\x00{\xff}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, key []byte) {
		want := refSlot(key)
		if got := Slot(key); got != want {
			t.Fatalf("Slot(%q) = %d, reference %d", key, got, want)
		}
		if got := SlotString(string(key)); got != want {
			t.Fatalf("SlotString(%q) = %d, reference %d", key, got, want)
		}
	})
}

// randomKeys returns keys of every kind: binary, hash tags in every
// position, empty tags, unbalanced braces.
func randomKeys(n int) [][]byte {
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("ab{}\x00\xff\r\n :")
	keys := make([][]byte, n)
	for i := range keys {
		k := make([]byte, r.IntN(24))
		for j := range k {
			if r.IntN(3) == 0 {
				k[j] = alphabet[r.IntN(len(alphabet))]
			} else {
				k[j] = byte(r.IntN(256))
			}
		}
		keys[i] = k
	}
	return keys
}

// TestSlotAgainstRedis compares Slot with CLUSTER KEYSLOT of a real node.
func TestSlotAgainstRedis(t *testing.T) {
	rdb := anyNode(t)
	keys := randomKeys(5000)
	pipe := rdb.Pipeline()
	for _, k := range keys {
		pipe.ClusterKeySlot(bg(), string(k))
	}
	cmds, err := pipe.Exec(bg())
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range cmds {
		want, err := c.(interface{ Result() (int64, error) }).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := Slot(keys[i]); got != int(want) {
			t.Fatalf("Slot(%q) = %d, CLUSTER KEYSLOT says %d", keys[i], got, want)
		}
	}
}

func TestSameSlot(t *testing.T) {
	args := [][]byte{[]byte("MGET"), []byte("{a}1"), []byte("{a}2"), []byte("b")}
	if s, ok := SameSlot(args, []int{1, 2}); !ok || s != SlotString("a") {
		t.Errorf("SameSlot of one tag = %d, %t", s, ok)
	}
	if _, ok := SameSlot(args, []int{1, 3}); ok {
		t.Error("SameSlot of two slots is true")
	}
	if s, ok := SameSlot(args, nil); !ok || s != -1 {
		t.Errorf("SameSlot of no keys = %d, %t", s, ok)
	}
}

func TestSlotAllocs(t *testing.T) {
	key := []byte("{user1000}.following")
	if n := testing.AllocsPerRun(100, func() { _ = Slot(key) }); n != 0 {
		t.Errorf("Slot allocates %v times", n)
	}
}

func BenchmarkSlot(b *testing.B) {
	for _, bc := range []struct{ name, key string }{
		{"short", "user:1000"},
		{"tag", "{user1000}.following"},
		{"64B", string(bytes.Repeat([]byte("k"), 64))},
	} {
		key := []byte(bc.key)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(key)))
			for b.Loop() {
				_ = Slot(key)
			}
		})
	}
}
