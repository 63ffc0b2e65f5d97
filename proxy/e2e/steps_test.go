package e2e

import "github.com/exproxy/exproxy/internal/proxytest"

// c is one step of a same-as-Redis script, answered by one value. Scripts
// list dozens of steps, so the name is short.
var c = proxytest.C
