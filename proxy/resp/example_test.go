package resp_test

import (
	"fmt"

	"github.com/exproxy/exproxy/proxy/resp"
)

// A read loop frames every complete command in its buffer, then keeps the
// rest for the next read.
func ExampleCommandParser_Parse() {
	var p resp.CommandParser
	buf := []byte("*2\r\n$3\r\nGET\r\n$1\r\nk\r\nSET k \"a b\"\r\n*1\r\n$4\r\nPI")
	argv := make([][]byte, 0, 8)
	for {
		n, args, inline, err := p.Parse(buf, argv)
		if err != nil {
			fmt.Println("-ERR " + err.Error()) // then close, as Redis does
			return
		}
		if n == 0 {
			fmt.Printf("partial: %q\n", buf)
			return
		}
		fmt.Printf("%q inline=%v\n", args, inline)
		buf = buf[n:]
	}
	// Output:
	// ["GET" "k"] inline=false
	// ["SET" "k" "a b"] inline=true
	// partial: "*1\r\n$4\r\nPI"
}

// The framer reports where each reply ends, however the bytes arrive; a
// bulk body is counted off in pieces, a partial line stays with the caller
// until the rest of it arrives.
func ExampleFramer_Next() {
	var f resp.Framer
	var pending []byte
	for _, read := range []string{"%1\r\n+key\r\n$10\r\n01234", "56789\r\n_\r", "\n"} {
		pending = append(pending, read...)
		for len(pending) > 0 {
			n, done, err := f.Next(pending)
			if err != nil {
				fmt.Println(err)
				return
			}
			if n == 0 {
				fmt.Printf("waiting on %q\n", pending)
				break
			}
			fmt.Printf("%d bytes of a %q value, done=%v\n", n, f.Kind(), done)
			pending = pending[n:]
		}
	}
	// Output:
	// 20 bytes of a '%' value, done=false
	// 7 bytes of a '%' value, done=true
	// waiting on "_\r"
	// 3 bytes of a '_' value, done=true
}
