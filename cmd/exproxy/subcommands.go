package main

import (
	"fmt"
	"io"

	"github.com/exproxy/exproxy/extensions/exstring"
)

const luaUsage = `Usage: exproxy lua

Prints the Lua function library behind the versioned-string commands, so they
can be used without the proxy:

  exproxy lua > exstring.lua
  redis-cli -x FUNCTION LOAD REPLACE < exstring.lua
  redis-cli FCALL exset_<version> 1 mykey hello   # function names: FUNCTION LIST

The library's name and every function name carry a hash of its body, so
versions never overwrite each other.
`

// runLua is `exproxy lua`.
func runLua(args []string, e env) int {
	if len(args) > 0 {
		if args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
			fmt.Fprint(e.stdout, luaUsage)
			return exitOK
		}
		fmt.Fprintf(e.stderr, "exproxy: lua takes no arguments (see exproxy lua --help)\n")
		return exitUsage
	}
	_, err := io.WriteString(e.stdout, exstring.Library())
	if err != nil {
		fmt.Fprintf(e.stderr, "exproxy: %v\n", err)
		return exitFailure
	}
	return exitOK
}
