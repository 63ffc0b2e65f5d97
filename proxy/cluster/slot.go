package cluster

import (
	"bytes"
	"strings"
)

// SlotCount is the number of hash slots in Redis Cluster.
const SlotCount = 16384

// crc16tab is CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0,
// no reflection, no final XOR), the checksum Redis Cluster hashes keys
// with.
var crc16tab = func() (t [256]uint16) {
	for i := range t {
		crc := uint16(i) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
		t[i] = crc
	}
	return t
}()

func crc16[K string | []byte](b K) uint16 {
	var crc uint16
	for i := 0; i < len(b); i++ {
		crc = crc<<8 ^ crc16tab[byte(crc>>8)^b[i]]
	}
	return crc
}

// Slot returns the hash slot of key exactly as Redis Cluster computes it
// (keyHashSlot): if the key has a '{' followed later by a '}' with at
// least one byte between them, only the bytes between the first '{' and
// the first '}' after it are hashed; otherwise the whole key is. So
// "{user1000}.following" and "{user1000}.followers" share a slot, while
// "{}x" and "x{" hash whole.
func Slot(key []byte) int {
	// IndexByte, not a loop: it scans a long key many bytes at a time.
	if s := bytes.IndexByte(key, '{'); s >= 0 {
		if e := bytes.IndexByte(key[s+1:], '}'); e > 0 {
			key = key[s+1 : s+1+e]
		}
	}
	return int(crc16(key) & (SlotCount - 1))
}

// SlotString is Slot for a string key.
func SlotString(key string) int {
	if s := strings.IndexByte(key, '{'); s >= 0 {
		if e := strings.IndexByte(key[s+1:], '}'); e > 0 {
			key = key[s+1 : s+1+e]
		}
	}
	return int(crc16(key) & (SlotCount - 1))
}

// SameSlot returns the slot of the keys at positions keys of args, and
// false when they do not all hash to one slot: where Redis Cluster replies
// ErrCrossSlot. With no keys it returns -1, true.
func SameSlot(args [][]byte, keys []int) (slot int, ok bool) {
	slot = -1
	for _, p := range keys {
		s := Slot(args[p])
		if slot >= 0 && s != slot {
			return slot, false
		}
		slot = s
	}
	return slot, true
}
