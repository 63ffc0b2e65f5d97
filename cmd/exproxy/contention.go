package main

import "github.com/exproxy/exproxy/extensions/contention/report"

// runContention is `exproxy contention`: the report over the proxy's logs.
// The report package owns its flags and help, so they are documented once.
func runContention(args []string, e env) int {
	return report.Main(args, e.stdin, e.stdout, e.stderr)
}
